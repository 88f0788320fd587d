package weft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/waittoken"
	"github.com/weftworks/weft/store"
)

// TaskArgs is implemented by the argument type of each task kind. Kind
// names the kind; it must be stable, since stored tasks refer to it. Args
// are stored as JSON.
type TaskArgs interface {
	Kind() string
}

// Worker runs tasks of one kind. Work's return decides the outcome: nil
// completes the task; Snooze(d) runs it again later without spending the
// attempt; RateLimited(d) does the same and holds the task's rate limits
// back until then; Permanent(err) fails it now; Cancel(err) cancels it; any other
// error retries it with backoff while attempts remain. A panic counts as a
// failed attempt, recorded with its stack.
type Worker[T TaskArgs] interface {
	Work(ctx context.Context, t *Task[T]) error
}

// WorkerFunc adapts a function to a Worker.
type WorkerFunc[T TaskArgs] func(ctx context.Context, t *Task[T]) error

// Work calls f.
func (f WorkerFunc[T]) Work(ctx context.Context, t *Task[T]) error { return f(ctx, t) }

// Task is one attempt of a task, as its worker sees it.
type Task[T TaskArgs] struct {
	ID    string
	Kind  string
	Queue string
	// Args are the decoded arguments.
	Args        T
	Priority    int
	Attempt     int
	MaxAttempts int
	Metadata    json.RawMessage
	CreatedAt   time.Time
	// Errors are the errors of earlier attempts, oldest first.
	Errors []AttemptError
	// FlowID and FlowKey place a flow step in its flow; both are empty
	// for a task enqueued alone.
	FlowID  string
	FlowKey string

	exec   *engine.Execution
	result json.RawMessage
	client *Client
}

// now is the client's clock.
func (t *Task[T]) now() time.Time {
	if t.client == nil {
		return time.Now()
	}
	return t.client.cfg.Now()
}

// tokens is the key ring the task's waitpoint tokens are signed with.
func (t *Task[T]) tokens(ctx context.Context) (*waittoken.Ring, error) {
	if t.client == nil {
		return nil, errors.New("weft: this task's workers are not registered with a client")
	}
	return t.client.tokenRing(ctx)
}

// AttemptError records why one attempt failed.
type AttemptError = store.AttemptError

// SetResult stores v, encoded as JSON, as the task's result when the
// attempt completes.
func (t *Task[T]) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("weft: encode result: %w", err)
	}
	t.result = b
	return nil
}

// Progress appends a progress event, v encoded as JSON, to the task's event
// log. It fails with ErrLeaseLost once this attempt no longer holds the task.
func (t *Task[T]) Progress(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("weft: encode progress: %w", err)
	}
	return t.exec.Progress(ctx, b)
}

// Workers is the registry of workers by kind, handed to a Client in Config.
type Workers struct {
	kinds map[string]engine.Kind
	// derive holds the kinds' limit-key derivations (WithLimitKeys).
	derive map[string]deriveFunc
	// client is the client that runs these workers, set by NewClient.
	client *Client
}

// NewWorkers returns an empty registry.
func NewWorkers() *Workers {
	return &Workers{kinds: make(map[string]engine.Kind), derive: make(map[string]deriveFunc)}
}

// deriveFunc derives a task's limit keys from its args, given as the
// caller passed them and as encoded.
type deriveFunc func(args TaskArgs, encoded []byte) (map[string]string, error)

// limitKeys is the derivation registered for kind, or nil; ws may be nil.
func (ws *Workers) limitKeys(kind string) deriveFunc {
	if ws == nil {
		return nil
	}
	return ws.derive[kind]
}

// EngineKinds returns the kinds registered in ws as Weft's engine runs
// them. Its result's type is internal to Weft: the method is how Weft's own
// packages reach a registry (`weft serve` applies a kind's retry policy to
// remote workers' failures, `weft worker` runs the built-in kinds through
// the engine, package weftest runs handlers in users' tests), not an API
// for programs.
func (ws *Workers) EngineKinds() map[string]engine.Kind { return maps.Clone(ws.kinds) }

// WorkerOption configures a worker's kind.
type WorkerOption func(*workerConfig)

type workerConfig struct {
	timeout      time.Duration
	backoff      func(attempt int) time.Duration
	notResumable bool
	// limitKeys is a func(T) map[string]string, checked against the
	// worker's T by AddWorker.
	limitKeys any
}

// WithTimeout bounds each attempt of the kind, unless the task sets its own
// timeout. The handler's context is cancelled with ErrAttemptTimeout.
func WithTimeout(d time.Duration) WorkerOption {
	return func(c *workerConfig) { c.timeout = d }
}

// WithBackoff sets the kind's retry policy: the delay before the next
// attempt after attempt n failed. The default is exponential with jitter.
func WithBackoff(f func(attempt int) time.Duration) WorkerOption {
	return func(c *workerConfig) { c.backoff = f }
}

// NotResumable marks the kind's tasks as unsafe to run again after their
// worker died mid-attempt (a crash, a kill, a lost node): such a task is
// failed with reason owner_died instead of being retried. A handler that
// returns an error is still retried as usual.
func NotResumable() WorkerOption {
	return func(c *workerConfig) { c.notResumable = true }
}

// WithLimitKeys derives the limit keys of the kind's tasks from their
// args when they are enqueued: f returns limit name → key, as
// {"per-customer": args.CustomerID}. It applies to enqueues through a
// client whose Config.Workers registered the kind (a client that only
// enqueues must register it too, or name the keys itself). Keys the
// enqueue names (EnqueueOpts.Limits, or the args' own EnqueueOpts) beat
// the derived ones, limit by limit; an empty key leaves the task out of
// that limit. T must be the worker's args type: AddWorker panics
// otherwise.
func WithLimitKeys[T TaskArgs](f func(args T) map[string]string) WorkerOption {
	return func(c *workerConfig) { c.limitKeys = f }
}

// AddWorker registers w for T's kind. It panics if the kind is not a valid
// name or already has a worker: both are programming errors.
func AddWorker[T TaskArgs](ws *Workers, w Worker[T], opts ...WorkerOption) {
	var zero T
	kind := zero.Kind()
	if !store.ValidName(kind) {
		panic(fmt.Sprintf("weft: AddWorker: kind %q is not a valid name", kind))
	}
	if _, dup := ws.kinds[kind]; dup {
		panic(fmt.Sprintf("weft: AddWorker: kind %q already has a worker", kind))
	}
	k := engine.Kind{Handler: func(ctx context.Context, x *engine.Execution) engine.Verdict {
		st := x.Task
		t := &Task[T]{
			ID: st.ID, Kind: st.Kind, Queue: st.Queue, Priority: st.Priority,
			Attempt: st.Attempt, MaxAttempts: st.MaxAttempts, Metadata: st.Metadata,
			CreatedAt: st.CreatedAt, Errors: st.Errors, FlowID: st.FlowID, FlowKey: st.FlowKey, exec: x,
			client: ws.client,
		}
		if err := json.Unmarshal(st.Args, &t.Args); err != nil {
			return engine.Verdict{Action: engine.Fail, Err: fmt.Errorf("decode args of kind %q: %w", kind, err)}
		}
		return verdict(w.Work(ctx, t), t.result)
	}}
	var c workerConfig
	for _, o := range opts {
		o(&c)
	}
	k.Timeout, k.Backoff, k.NotResumable = c.timeout, c.backoff, c.notResumable
	if c.limitKeys != nil {
		f, ok := c.limitKeys.(func(T) map[string]string)
		if !ok || f == nil {
			panic(fmt.Sprintf("weft: AddWorker: WithLimitKeys for kind %q takes a func(%T) map[string]string, not %T", kind, zero, c.limitKeys))
		}
		ws.derive[kind] = func(args TaskArgs, encoded []byte) (map[string]string, error) {
			a, ok := args.(T)
			if !ok {
				// Given as another type of the same kind (a pointer to
				// T): derive from the args as the worker will see them.
				if err := json.Unmarshal(encoded, &a); err != nil {
					return nil, fmt.Errorf("deriving the limit keys of kind %q: decode args: %w", kind, err)
				}
			}
			return f(a), nil
		}
	}
	ws.kinds[kind] = k
}

// AddWorkerFunc registers a function as the worker for T's kind.
func AddWorkerFunc[T TaskArgs](ws *Workers, f func(ctx context.Context, t *Task[T]) error, opts ...WorkerOption) {
	AddWorker[T](ws, WorkerFunc[T](f), opts...)
}
