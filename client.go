package weft

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/maintenance"
	"github.com/weftworks/weft/internal/tracing"
	"github.com/weftworks/weft/store"
)

// QueueConfig configures one queue a client works.
type QueueConfig struct {
	// MaxWorkers is how many of the queue's tasks run at once on this
	// client.
	MaxWorkers int
}

// Config configures a Client. A client with no Workers only enqueues and
// reads; one with Workers also runs tasks once started.
type Config struct {
	// Queues to work, with their concurrency. Default: {"default": 100}
	// when Workers are given.
	Queues map[string]QueueConfig
	// Workers by kind.
	Workers *Workers
	// NodeID names this client in leases and logs; it must be unique
	// among running clients. Default: host-pid-random.
	NodeID string
	// LeaseTTL is how long a claimed task stays leased without renewal;
	// leases are renewed every LeaseTTL/3 while handlers run. Default 30s.
	LeaseTTL time.Duration
	// PollInterval is the safety-net poll for work. Default 5s.
	PollInterval time.Duration
	// RescueInterval is how often tasks whose lease expired are rescued;
	// negative disables. Default: WEFT_LEASE_RESCUE_INTERVAL when set, else
	// LeaseTTL.
	RescueInterval time.Duration
	// Retention is how long finished tasks and their events are kept, per
	// terminal state; a negative age keeps them forever. Defaults: 24h for
	// completed, 7 days for failed and cancelled.
	Retention map[TaskState]time.Duration
	// RetentionInterval is how often finished tasks are purged; negative
	// disables. Default: WEFT_RETENTION_INTERVAL when set, else 30s.
	RetentionInterval time.Duration
	// CronInterval is how often schedules are checked for due slots;
	// negative disables. Default: WEFT_CRON_INTERVAL when set, else 1s.
	CronInterval time.Duration
	// WaitTimeoutInterval bounds how late a wait's timeout is applied
	// (timeouts due within it are applied at their time); negative
	// disables. Default: WEFT_WAIT_TIMEOUTS_INTERVAL when set, else 1s.
	WaitTimeoutInterval time.Duration
	// RollupInterval is how often the feed of events is counted into the
	// per-minute rollups the dashboard charts (store.Rollups, kept for
	// store.RollupRetention); negative disables. Default:
	// WEFT_ROLLUPS_INTERVAL when set, else none: counting reads every
	// event again (measured: 5% of SQLite's and 10% of PostgreSQL's
	// burn-down throughput), so only a deployment that shows the
	// dashboard pays for it — weft serve sets 5s.
	RollupInterval time.Duration
	// LimitsInterval is how often the maintenance leader recomputes the
	// limits' counters from the task rows and corrects any drift (there
	// is none unless something changed them outside Weft's transactions;
	// a correction is logged at warn); negative disables. Default:
	// WEFT_LIMITS_INTERVAL when set, else 10s.
	LimitsInterval time.Duration
	// SigningKeys signs and verifies waitpoint tokens: "kid:secret" pairs
	// separated by commas, secrets of at least 16 bytes; the first signs,
	// all verify, so a key is rotated by putting a new one first and
	// removing the old one once its tokens are no longer needed. Empty:
	// the deployment's own key, made on first use and kept in the
	// database, so tokens survive restarts. (weft serve reads
	// WEFT_SIGNING_KEYS.)
	SigningKeys string
	// Labels are this client's worker labels, as {"gpu": "true", "mem":
	// "64", "region": "eu"}: it claims only tasks whose requirements
	// (EnqueueOpts.Requires) they satisfy, and no task with requirements
	// when it has none. They are recorded with the node, so that a task
	// no live worker can take says so (no_matching_worker).
	Labels map[string]string
	// FailUnknownKinds makes this client claim tasks of kinds it has no
	// worker for, and fail them. By default they are left for other
	// workers.
	FailUnknownKinds bool
	// Logger for the client's diagnostics. Default slog.Default().
	Logger *slog.Logger
	// LogOutcomes logs, at info, each task this client's workers finish
	// (id, kind, queue, attempt, outcome, duration, error) and each retry
	// they schedule, after the outcome is recorded. weft serve sets it.
	LogOutcomes bool
	// TracerProvider traces enqueues and attempts (OpenTelemetry): each
	// enqueue is a span whose context is stored in its tasks' metadata,
	// and each attempt a span in that trace, carried by the handler's
	// context. Default: OpenTelemetry's global provider, which records
	// nothing until the application installs one.
	TracerProvider trace.TracerProvider
	// Now is the clock the client reads for schedule slots and retention
	// cutoffs. Default time.Now. Tests give it the store's clock (as
	// sqlite.Options.Now) to bring slots due without waiting for them.
	Now func() time.Time
}

// Client enqueues, inspects and cancels tasks, and — when it has workers
// and is started — runs them. It is safe for concurrent use and can be
// started and stopped more than once.
type Client struct {
	st     store.Store
	cfg    Config
	nodeID string
	log    *slog.Logger

	mu      sync.Mutex
	eng     *engine.Engine
	maint   *maintenance.Supervisor
	started time.Time

	// tok signs and verifies waitpoint tokens.
	tok tokens
}

// NewClient returns a client on st. The store stays the caller's: close it
// after stopping the client.
func NewClient(st store.Store, cfg *Config) (*Client, error) {
	if st == nil {
		return nil, errors.New("weft: NewClient: store is nil")
	}
	c := &Client{st: st}
	if cfg != nil {
		c.cfg = *cfg
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.Default()
	}
	c.log = c.cfg.Logger
	if c.cfg.Now == nil {
		c.cfg.Now = time.Now
	}
	if c.cfg.Workers != nil && len(c.cfg.Queues) == 0 {
		c.cfg.Queues = map[string]QueueConfig{store.DefaultQueue: {MaxWorkers: 100}}
	}
	for name, q := range c.cfg.Queues {
		if !store.ValidName(name) {
			return nil, &ValidationError{Index: -1, Field: "queues", Message: fmt.Sprintf("%q is not a valid queue name", name)}
		}
		if q.MaxWorkers <= 0 {
			return nil, &ValidationError{Index: -1, Field: "queues." + name + ".max_workers", Message: fmt.Sprintf("%d must be at least 1", q.MaxWorkers)}
		}
	}
	if c.cfg.LeaseTTL < 0 || c.cfg.PollInterval < 0 {
		return nil, &ValidationError{Index: -1, Field: "lease_ttl/poll_interval", Message: "must not be negative"}
	}
	if c.cfg.LeaseTTL == 0 {
		c.cfg.LeaseTTL = 30 * time.Second
	}
	if c.cfg.RescueInterval == 0 {
		d, err := maintenance.Interval(rescueName, c.cfg.LeaseTTL)
		if err != nil {
			return nil, &ValidationError{Index: -1, Field: "rescue_interval", Message: err.Error()}
		}
		c.cfg.RescueInterval = d
	}
	retention := map[TaskState]time.Duration{
		StateCompleted: 24 * time.Hour,
		StateFailed:    7 * 24 * time.Hour,
		StateCancelled: 7 * 24 * time.Hour,
	}
	for st, age := range c.cfg.Retention {
		if !st.Terminal() {
			return nil, &ValidationError{Index: -1, Field: "retention", Message: fmt.Sprintf("%q is not a terminal state", st)}
		}
		retention[st] = age
	}
	c.cfg.Retention = retention
	if c.cfg.RetentionInterval == 0 {
		d, err := maintenance.Interval(retentionName, 30*time.Second)
		if err != nil {
			return nil, &ValidationError{Index: -1, Field: "retention_interval", Message: err.Error()}
		}
		c.cfg.RetentionInterval = d
	}
	if c.cfg.CronInterval == 0 {
		d, err := maintenance.Interval(cronName, time.Second)
		if err != nil {
			return nil, &ValidationError{Index: -1, Field: "cron_interval", Message: err.Error()}
		}
		c.cfg.CronInterval = d
	}
	if c.cfg.WaitTimeoutInterval == 0 {
		d, err := maintenance.Interval(waitsName, time.Second)
		if err != nil {
			return nil, &ValidationError{Index: -1, Field: "wait_timeout_interval", Message: err.Error()}
		}
		c.cfg.WaitTimeoutInterval = d
	}
	if c.cfg.RollupInterval == 0 {
		d, err := maintenance.Interval(rollupsName, 0)
		if err != nil {
			return nil, &ValidationError{Index: -1, Field: "rollup_interval", Message: err.Error()}
		}
		c.cfg.RollupInterval = d
	}
	if err := store.CheckLabels(c.cfg.Labels); err != nil {
		return nil, err
	}
	if c.cfg.LimitsInterval == 0 {
		d, err := maintenance.Interval(maintenance.LimitsName, 10*time.Second)
		if err != nil {
			return nil, &ValidationError{Index: -1, Field: "limits_interval", Message: err.Error()}
		}
		c.cfg.LimitsInterval = d
	}
	c.nodeID = c.cfg.NodeID
	if c.nodeID == "" {
		c.nodeID = defaultNodeID()
	}
	if c.cfg.SigningKeys != "" {
		if _, err := c.tokenRing(context.Background()); err != nil {
			return nil, err
		}
	}
	if c.cfg.Workers != nil {
		// Handlers reach the client (its clock, its signing keys) through
		// their registry.
		c.cfg.Workers.client = c
		if _, ok := c.cfg.Workers.kinds[WaitStepKind]; !ok {
			AddWorkerFunc(c.cfg.Workers, runWaitStep)
		}
	}
	return c, nil
}

func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// NodeID is the id this client writes as lease owner.
func (c *Client) NodeID() string { return c.nodeID }

// Store is the backend the client runs on.
func (c *Client) Store() store.Store { return c.st }

// Start begins working the configured queues. A client without workers
// has nothing to start and returns an error.
func (c *Client) Start(ctx context.Context) error {
	if c.cfg.Workers == nil || len(c.cfg.Workers.kinds) == 0 {
		return errors.New("weft: Start: no workers registered (Config.Workers)")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.eng != nil {
		return errors.New("weft: Start: client already started")
	}
	queues := make(map[string]int, len(c.cfg.Queues))
	for name, q := range c.cfg.Queues {
		queues[name] = q.MaxWorkers
	}
	eng, err := engine.New(engine.Config{
		Store:            c.st,
		Flows:            c.st,
		Waits:            c.st,
		Streams:          c.st,
		Owner:            c.nodeID,
		Queues:           queues,
		Kinds:            c.cfg.Workers.kinds,
		FailUnknownKinds: c.cfg.FailUnknownKinds,
		LeaseTTL:         c.cfg.LeaseTTL,
		PollInterval:     c.cfg.PollInterval,
		Labels:           c.cfg.Labels,
		Logger:           c.log,
		LogOutcomes:      c.cfg.LogOutcomes,
		Tracer:           tracing.Provider(c.cfg.TracerProvider).Tracer(tracing.Name),
	})
	if err != nil {
		return fmt.Errorf("weft: Start: %w", err)
	}
	c.started = time.Now()
	if err := c.st.TouchNode(ctx, c.node()); err != nil {
		return fmt.Errorf("weft: Start: register node %s: %w", c.nodeID, err)
	}
	maint, err := maintenance.Start(c.log, c.leadership(), c.reconcilers()...)
	if err != nil {
		return fmt.Errorf("weft: Start: %w", err)
	}
	if err := eng.Start(ctx); err != nil {
		maint.Shutdown(0)
		return fmt.Errorf("weft: Start: %w", err)
	}
	c.eng, c.maint = eng, maint
	return nil
}

// Stop stops claiming, lets running tasks finish until ctx is done, then
// cancels the rest with ErrShutdown: their tasks go back to pending without
// spending an attempt. Every outcome is recorded before Stop returns. A
// client that is not running returns nil.
func (c *Client) Stop(ctx context.Context) error {
	c.mu.Lock()
	eng, maint := c.eng, c.maint
	c.eng, c.maint = nil, nil
	c.mu.Unlock()
	if eng == nil {
		return nil
	}
	// The engine stops first: heartbeats go on while handlers finish, so a
	// long grace period never makes this node look dead.
	err := eng.Stop(ctx)
	maint.Shutdown(maintenanceGrace)
	if err == nil {
		// Only a node that let go of every task leaves quietly; otherwise
		// its row lets the leader find its tasks as a dead node's.
		if rmErr := c.st.RemoveNode(context.WithoutCancel(ctx), c.nodeID); rmErr != nil {
			c.log.Warn("weft: removing node row", "node", c.nodeID, "err", rmErr)
		}
	}
	return err
}

// Task states.
const (
	StatePending   = store.StatePending
	StateBlocked   = store.StateBlocked
	StateRunning   = store.StateRunning
	StateWaiting   = store.StateWaiting
	StateCompleted = store.StateCompleted
	StateFailed    = store.StateFailed
	StateCancelled = store.StateCancelled
	StateSkipped   = store.StateSkipped
)

type (
	// TaskState is the lifecycle state of a task.
	TaskState = store.State
	// TaskRecord is a stored task as read back.
	TaskRecord = store.Task
	// Event is one entry of a task's event log.
	Event = store.Event
	// ListParams filters and pages List.
	ListParams = store.ListParams
	// QueueStats counts one queue's tasks by state.
	QueueStats = store.QueueStats
)

// Stats counts tasks per queue and state and finds each queue's oldest
// ready task. Counts are kept as tasks change, so this costs the same at
// any table size.
func (c *Client) Stats(ctx context.Context) ([]QueueStats, error) { return c.st.Stats(ctx) }

// Get reads a task; ErrNotFound when there is none.
func (c *Client) Get(ctx context.Context, id string) (*TaskRecord, error) {
	return c.st.Get(ctx, id)
}

// List reads tasks in creation order.
func (c *Client) List(ctx context.Context, p ListParams) ([]*TaskRecord, error) {
	return c.st.List(ctx, p)
}

// Events reads a task's events after the cursor after (0 for all).
func (c *Client) Events(ctx context.Context, id string, after int64, limit int) ([]Event, error) {
	return c.st.Events(ctx, id, after, limit)
}

// Cancel cancels a task. A pending task is cancelled at once; a running
// one has its handler's context cancelled (cause ErrCancelRequested) and
// ends cancelled unless the handler completes anyway. A task that already
// finished yields ErrAlreadyFinished with the task.
func (c *Client) Cancel(ctx context.Context, id string) (*TaskRecord, error) {
	t, err := c.st.Cancel(ctx, id)
	if err != nil {
		return t, err
	}
	if t.State == store.StateRunning {
		c.mu.Lock()
		eng := c.eng
		c.mu.Unlock()
		if eng != nil {
			eng.CancelLocal(id)
		}
	}
	return t, nil
}

// Retry makes a failed or cancelled task pending again, ready now, with at
// least one more attempt; its error history is kept. A task in any other
// state, or whose unique key another task now holds, yields ErrConflict
// with the task.
func (c *Client) Retry(ctx context.Context, id string) (*TaskRecord, error) {
	return c.st.Retry(ctx, id)
}

// PauseQueue stops every node from claiming the queue's tasks until
// ResumeQueue; running tasks finish, and enqueueing still works.
func (c *Client) PauseQueue(ctx context.Context, queue string) error {
	return c.st.PauseQueue(ctx, queue, true)
}

// ResumeQueue lets nodes claim the queue's tasks again.
func (c *Client) ResumeQueue(ctx context.Context, queue string) error {
	return c.st.PauseQueue(ctx, queue, false)
}
