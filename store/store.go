// Package store defines the storage contract that every Weft backend
// implements, and the validation every entry path shares.
//
// A backend persists tasks and their event logs, claims ready tasks under
// fenced leases, records outcomes exactly once, and tells subscribers when
// work may have become ready. The conformance suite in store/storetest holds
// every backend to the same behaviour.
package store

import (
	"context"
	"encoding/json"
	"time"
)

// EventType names an entry of a task's event log.
type EventType string

// The event types a backend writes. Terminal events (completed, failed,
// cancelled) are written in the same transaction as the terminal state.
const (
	EventCreated         EventType = "created"
	EventStarted         EventType = "started"
	EventProgress        EventType = "progress"
	EventRetryScheduled  EventType = "retry_scheduled"
	EventSnoozed         EventType = "snoozed"
	EventReleased        EventType = "released"
	EventRescued         EventType = "rescued"
	EventCancelRequested EventType = "cancel_requested"
	EventCompleted       EventType = "completed"
	EventFailed          EventType = "failed"
	EventCancelled       EventType = "cancelled"
	// EventRetried is written when an operator makes a failed or cancelled
	// task pending again (Store.Retry).
	EventRetried EventType = "retried"
)

// EventTypes lists every event type, in the order of a task's life.
func EventTypes() []EventType {
	return []EventType{
		EventCreated, EventStarted, EventProgress, EventRetryScheduled, EventSnoozed, EventReleased,
		EventRescued, EventCancelRequested, EventCompleted, EventFailed, EventCancelled, EventRetried,
	}
}

// Task is a stored task as a backend reads it back.
type Task struct {
	ID             string
	Kind           string
	Queue          string
	Args           json.RawMessage
	Priority       int
	State          State
	RunAt          time.Time
	Attempt        int
	MaxAttempts    int
	AttemptTimeout time.Duration
	// Errors holds one entry per failed attempt, oldest first.
	Errors    []AttemptError
	Result    json.RawMessage
	UniqueKey string
	Metadata  json.RawMessage
	// LeaseOwner, LeaseEpoch and LeaseExpiresAt describe the current (or
	// last) lease. The epoch increases on every claim and every rescue.
	LeaseOwner      string
	LeaseEpoch      int64
	LeaseExpiresAt  time.Time
	CancelRequested bool
	CreatedAt       time.Time
	AttemptedAt     time.Time
	FinalizedAt     time.Time
	// FlowID and FlowKey place a flow member in its flow; both are empty
	// for a task enqueued alone.
	FlowID  string
	FlowKey string
	// LimitKeys, Cost, Requires and FairnessKey are as enqueued
	// (NewTask).
	LimitKeys   map[string]string
	Cost        int
	Requires    []Requirement
	FairnessKey string
	// Blocked, for a pending task a claim set aside, says why.
	Blocked *BlockedReason
}

// AttemptError records why one attempt failed.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
	Stack   string    `json:"stack,omitempty"`
}

// NewTask is a task to enqueue, as every entry path (the Go client, the
// HTTP API, the CLI) hands it to a backend. Zero fields take defaults.
// Backends write only the Batch that Prepare makes of it, so the rules
// below hold on every path, and errors name fields as the HTTP API does.
type NewTask struct {
	// ID is assigned by Prepare (a UUIDv7) when empty; otherwise it must be
	// a UUID.
	ID string
	// Kind is required: 1 to 128 characters (see ValidName).
	Kind string
	// Queue defaults to DefaultQueue.
	Queue string
	// Args is any JSON value within Limits; empty means {}.
	Args json.RawMessage
	// Priority orders ready tasks of one queue: higher runs first. It must
	// fit in 32 bits (MinPriority to MaxPriority).
	Priority int
	// RunAt is when the task becomes ready; zero means now.
	RunAt time.Time
	// Delay makes the task ready this long after the batch is prepared
	// (Prepare folds it into RunAt). Zero means none; negative is refused,
	// and so is a Delay with a RunAt ("delay").
	Delay time.Duration
	// MaxAttempts is 1 to MaxAttemptsLimit; zero means DefaultMaxAttempts.
	MaxAttempts int
	// AttemptTimeout bounds each attempt. Zero means none; negative is
	// refused ("timeout").
	AttemptTimeout time.Duration
	// UniqueKey, when set, makes the enqueue idempotent: while a task with
	// the same key is pending, running or completed, enqueueing another
	// returns the existing task's id flagged as a duplicate. At most
	// MaxUniqueKeyLength bytes of UTF-8 without NUL.
	UniqueKey string
	// Metadata is a JSON object within Limits; empty or null means none.
	Metadata json.RawMessage
	// LimitKeys names the limits (Limiter) the task draws on, each with
	// the key it draws under: limit name → key. The limits must exist.
	LimitKeys map[string]string
	// Cost is the units the task takes from its limits' rates; zero
	// means 1.
	Cost int
	// Requires lists the labels a worker must have to claim the task.
	Requires []Requirement
	// FairnessKey places the task in its queue's fair ordering: within a
	// priority, claims go to keys in proportion to their weights
	// (SetFairness).
	FairnessKey string
}

// EnqueueResult is the outcome of enqueueing one task.
type EnqueueResult struct {
	ID string
	// Duplicate is true when a task with the same unique key already
	// existed; ID is then that task's id and nothing was written.
	Duplicate bool
}

// Event is one entry of a task's append-only event log.
type Event struct {
	// Seq is the event's cursor: it increases monotonically across each
	// task's events (and across the log as it grows), so a reader resumes
	// with "events after Seq".
	Seq     int64
	TaskID  string
	Type    EventType
	Attempt int
	At      time.Time
	Data    json.RawMessage
	// Queue and Kind are the task's; only Reader.EventsAfter, which reads
	// the events of every task, fills them.
	Queue string
	Kind  string
}

// EventFilter selects events of every task, for Reader.EventsAfter.
type EventFilter struct {
	// After is the cursor: only events with a greater Seq are read. A
	// negative After reads nothing and returns the end of the log as
	// Next, where a reader of only what comes next starts.
	After int64
	// Queue and Kind, when set, keep the events of tasks of that queue
	// and of that kind.
	Queue string
	Kind  string
	// Types, when not empty, keeps the events of these types.
	Types []EventType
	// Limit bounds the events of one read; zero, or above the backend's
	// page limit, is that limit.
	Limit int
}

// EventPage is one read of the events of every task.
type EventPage struct {
	// Events are in Seq order.
	Events []Event
	// Next is the cursor to read on from (the next call's After). It may
	// be past the last event returned: the events that the filter left out
	// are skipped once, not read again.
	Next int64
}

// QueueClaim asks for at most Limit ready tasks of one queue.
type QueueClaim struct {
	Queue string
	Limit int
}

// ClaimRequest asks a backend to lease ready tasks to one owner.
type ClaimRequest struct {
	// Owner identifies the claiming node; it is written as the lease owner.
	Owner  string
	Queues []QueueClaim
	// Kinds, when non-empty, restricts the claim to these kinds; tasks of
	// other kinds are left for other workers.
	Kinds    []string
	LeaseTTL time.Duration
	// NotResumable lists kinds whose orphaned tasks must not run again:
	// when their owner dies, rescue fails them (reason owner_died) instead
	// of returning them to pending.
	NotResumable []string
	// StartLater leases the tasks without starting them: no started event
	// is written and AttemptedAt is cleared, until Started reports that a
	// handler began. An engine that claims ahead of its free workers sets
	// it, so a task waiting in its local queue does not look started.
	StartLater bool
	// Labels are the claiming worker's labels: it claims only tasks whose
	// requirements they satisfy, and no task with requirements without
	// them.
	Labels map[string]string
}

// Start reports that a handler began running a task claimed with
// StartLater, under the claim's epoch.
type Start struct {
	TaskID string
	Epoch  int64
	At     time.Time
}

// Outcome is the result of one attempt, recorded by Finish under the lease
// epoch of the claim that ran it.
type Outcome struct {
	TaskID string
	Epoch  int64
	// State is the state to move to: completed, failed, cancelled,
	// pending (a retry, a snooze, or a release at shutdown), or waiting
	// (a suspension, with Wait).
	State  State
	Result json.RawMessage
	// Error, when set, is appended to the task's error history.
	Error *AttemptError
	// RunAt is when a pending outcome becomes ready again.
	RunAt time.Time
	// Refund gives the attempt back: a pending outcome that does not count
	// against MaxAttempts (snooze, release at shutdown).
	Refund bool
	// StartedAt, when set, is when the attempt's handler began, for a task
	// claimed with StartLater whose start was not recorded (Started) before
	// its outcome: Finish records it with the outcome — AttemptedAt and a
	// started event, ahead of the outcome's own — so a short attempt costs
	// one write, not two.
	StartedAt time.Time
	// Event is the event written with the transition.
	Event     EventType
	EventData json.RawMessage
	// InFlow says the task is a flow member (its FlowID was set when
	// claimed): a hint that lets a backend send the outcome straight to
	// the path that resolves flows. A wrong or missing hint costs time,
	// never correctness.
	InFlow bool
	// Wait is the suspension of a waiting outcome: the task's waitpoints
	// it waits on, how their signals combine, and the timeout. A waiting
	// outcome gives the attempt back, like a snooze.
	Wait *WaitSpec
	// Limited says the task draws on limits (its LimitKeys were set when
	// claimed): a hint, like InFlow, for the path that releases its slots.
	Limited bool
	// RateLimited, on a pending outcome, holds the task's rate limits
	// back for every task until RunAt: its handler met the upstream's
	// own limit. The attempt is given back (Refund).
	RateLimited bool
}

// Lease is a running task held by a node, as ExtendLeases reports it.
type Lease struct {
	TaskID          string
	Epoch           int64
	CancelRequested bool
}

// ListParams filters and pages a task listing. Results are ordered by id
// (creation order), oldest first unless Order says otherwise; After is
// the last id of the previous page, and the next page continues past it
// in the same order.
type ListParams struct {
	Queue  string
	Kind   string
	States []State
	// CreatedSince and CreatedUntil, when set, bound the creation time:
	// at or after CreatedSince, and before CreatedUntil.
	CreatedSince, CreatedUntil time.Time
	// Order is ListOldest (the default when empty) or ListNewest.
	Order ListOrder
	After string
	Limit int
}

// RescueParams bounds and widens one Rescue.
type RescueParams struct {
	// Limit bounds how many tasks one call rescues. Default 1,000.
	Limit int
	// DeadAfter, when positive, also rescues the tasks of nodes whose last
	// heartbeat is older than this, whatever their leases say; such dead
	// nodes' rows are then removed once they hold no task.
	DeadAfter time.Duration
}

// Node is a process running a Weft client, as its heartbeat row records.
type Node struct {
	ID          string
	Host        string
	PID         int
	StartedAt   time.Time
	HeartbeatAt time.Time
	// Queues are the queues the node works; Kinds the kinds it runs, or
	// none when it claims every kind (weft.Config.FailUnknownKinds).
	Queues, Kinds []string
	// Labels are the node's worker labels (weft.Config.Labels): it claims
	// the tasks whose requirements they satisfy.
	Labels map[string]string
	// Running counts the tasks the node holds, as Nodes reads it; TouchNode
	// ignores it.
	Running int
}

// RemoteWorker is a worker that claims tasks over the HTTP API, outside
// any node, as the server that serves its claims records it.
type RemoteWorker struct {
	// ID is the worker id its claims name (the lease owner).
	ID string
	// Host is where its claims come from (the client's address).
	Host string
	// Queues are the queues its last claim asked for; Kinds the kinds, or
	// none when it takes every kind.
	Queues, Kinds []string
	// Labels are the labels its last claim advertised.
	Labels map[string]string
	// FirstSeenAt and LastSeenAt are the times of its first and latest
	// recorded claims; TouchWorker sets them.
	FirstSeenAt, LastSeenAt time.Time
	// Running counts the tasks the worker holds, as RemoteWorkers reads
	// it; TouchWorker ignores it.
	Running int
}

// ForgetWorkersAfter is how long a remote worker that no longer claims
// stays in the registry.
const ForgetWorkersAfter = 24 * time.Hour

// Missed says what a schedule does about slots missed while no node ran it.
type Missed string

// The missed-slot policies.
const (
	// MissedSkip enqueues nothing for missed slots.
	MissedSkip Missed = "skip"
	// MissedRunOnce enqueues one task for the latest missed slot.
	MissedRunOnce Missed = "run_once"
)

// Schedule enqueues a task of Kind with Args at every slot of Spec.
type Schedule struct {
	Name string
	// Spec is a cron expression ("*/5 * * * *", "@hourly") or
	// "@every <duration>".
	Spec        string
	Kind        string
	Queue       string
	Args        json.RawMessage
	Priority    int
	MaxAttempts int
	Metadata    json.RawMessage
	Missed      Missed
	Paused      bool
	// NextAt is the next slot to enqueue.
	NextAt    time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// QueueStats describes one queue.
type QueueStats struct {
	Queue  string
	Counts map[State]int64
	// OldestReadyAt is the run_at of the longest-waiting ready task; zero
	// when none is ready.
	OldestReadyAt time.Time
	// Paused is true while claims from the queue are paused.
	Paused bool
}

// AddCount adds one (queue, state, n) row, read in queue order, to stats.
func AddCount(stats []QueueStats, queue string, state State, n int64) []QueueStats {
	stats = withQueue(stats, queue)
	stats[len(stats)-1].Counts[state] = n
	return stats
}

// AddPaused marks queue as paused in stats. Backends read paused queues in
// the same queue order as AddCount's rows, so a paused queue that holds no
// task gets an entry of its own, with empty counts.
func AddPaused(stats []QueueStats, queue string) []QueueStats {
	stats = withQueue(stats, queue)
	stats[len(stats)-1].Paused = true
	return stats
}

// withQueue makes queue the last entry of stats, appending it if it is not.
func withQueue(stats []QueueStats, queue string) []QueueStats {
	if len(stats) == 0 || stats[len(stats)-1].Queue != queue {
		stats = append(stats, QueueStats{Queue: queue, Counts: map[State]int64{}})
	}
	return stats
}

// Leader is the holder of a role, as Store.Leader reads it. Its lease may
// have expired: Current says whether it holds at the time given.
type Leader struct {
	Holder    string
	Term      int64
	ExpiresAt time.Time
}

// Current reports whether the leader's lease is still valid at now.
func (l Leader) Current(now time.Time) bool { return now.Before(l.ExpiresAt) }

// PurgeParams selects what one Purge call may delete.
type PurgeParams struct {
	// Before maps terminal states to their cutoffs; a state that is absent
	// is kept.
	Before map[State]time.Time
	// After is the cursor returned by the previous call; "" starts a sweep.
	After string
	// Window bounds how many tasks, in id order, one call looks at; Limit
	// bounds how many it deletes. Defaults 10,000 and 1,000.
	Window, Limit int
}

// PurgeResult is what one Purge call did.
type PurgeResult struct {
	Deleted int
	// Next is where the sweep continues (the same window again when the
	// limit cut it short).
	Next string
	// Done is true when this call reached the end of the table.
	Done bool
}

// FinishResult is what Finish did with one outcome.
type FinishResult struct {
	// State is the state the task is in after the outcome: the outcome's
	// own, or cancelled when a cancellation request won over a retry.
	// Empty when Err is set.
	State State
	// Err is nil when the outcome was recorded; ErrLeaseLost when its
	// epoch is no longer the task's lease; ErrNotFound when there is no
	// such task.
	Err error
}

// The contract is split by role: each caller depends on the smallest
// interface that serves it, and Store composes them for backends. Every
// method is safe for concurrent use. Writes that name an epoch are fenced:
// they succeed only while the task is running under that epoch, and
// otherwise fail with ErrLeaseLost.

// Enqueuer stores new tasks.
type Enqueuer interface {
	// Enqueue stores a batch atomically: either every task is written (or
	// recognised as a duplicate) or nothing is. The batch is validated and
	// completed by Prepare first; the first problem is a *ValidationError.
	Enqueue(ctx context.Context, tasks []NewTask) ([]EnqueueResult, error)
}

// Runner is what an engine needs to run tasks: claim, hold and finish them.
type Runner interface {
	// Claim leases ready tasks, highest priority first, then earliest
	// RunAt, then oldest, from the requested queues that are not paused.
	// Each claimed task has its attempt and epoch incremented and a started
	// event written. The epoch only grows; a backend whose claims may be
	// lost to a crash (an asynchronous commit) steps it by a random amount,
	// so that a claim made after the crash never repeats the lost claim's
	// epoch.
	Claim(ctx context.Context, req ClaimRequest) ([]*Task, error)
	// Finish records outcomes and says, for each, what it did. The error
	// is for failures of the whole call, when nothing was recorded.
	Finish(ctx context.Context, outcomes []Outcome) ([]FinishResult, error)
	// Started records that handlers began running tasks claimed with
	// StartLater: their AttemptedAt and a started event. A start whose
	// epoch is no longer the task's lease, or that was already recorded, is
	// skipped: the attempt's outcome reports the lost lease.
	Started(ctx context.Context, starts []Start) error
	// ExtendLeases extends every lease held by owner and returns them.
	ExtendLeases(ctx context.Context, owner string, ttl time.Duration) ([]Lease, error)
	// ExtendLease extends one task's lease under its epoch and reports
	// whether cancellation was requested.
	ExtendLease(ctx context.Context, taskID string, epoch int64, ttl time.Duration) (cancelRequested bool, err error)
	// Progress appends a progress event under the task's epoch.
	Progress(ctx context.Context, taskID string, epoch int64, data json.RawMessage) error
	// CancelRequests lists the running tasks of owner whose cancellation
	// was requested.
	CancelRequests(ctx context.Context, owner string) ([]string, error)
	// NextRunAt is the earliest RunAt of pending tasks in the queues that
	// are not paused, restricted to kinds when that is non-empty.
	NextRunAt(ctx context.Context, queues, kinds []string) (t time.Time, ok bool, err error)
	// Subscribe returns a channel that receives a value, coalesced, after
	// any commit that may have made work ready — by this store or, within
	// milliseconds, by another connection or process. stop releases it.
	Subscribe() (ch <-chan struct{}, stop func())
}

// Reader reads tasks, their events and queue statistics.
type Reader interface {
	// Get reads one task; ErrNotFound when there is none.
	Get(ctx context.Context, taskID string) (*Task, error)
	// List reads tasks in id order, oldest or newest first. Invalid
	// parameters are a *ValidationError.
	List(ctx context.Context, p ListParams) ([]*Task, error)
	// Events reads a task's events with Seq > after, oldest first.
	Events(ctx context.Context, taskID string, after int64, limit int) ([]Event, error)
	// EventsAfter reads the events of every task after a cursor, in Seq
	// order, as f selects them. It returns only settled events: once a
	// read has returned Next, no event with a Seq at or below it can be
	// committed later, so a reader that follows the log with Next misses
	// nothing. (SQLite numbers events in commit order; PostgreSQL's
	// sequence does not, so that backend holds back the events above the
	// oldest transaction still writing.) One read examines a bounded
	// range of the log, so a filter that matches little may return no
	// event and a Next further on.
	EventsAfter(ctx context.Context, f EventFilter) (EventPage, error)
	// Stats counts tasks per queue and state, finds each queue's oldest
	// ready task and says whether it is paused, at a cost that does not grow
	// with the table. Paused queues are listed even when they hold no task.
	Stats(ctx context.Context) ([]QueueStats, error)
}

// Operator holds the actions people and programs take on tasks and queues.
type Operator interface {
	// Cancel cancels a pending task at once, or requests cancellation of a
	// running one. A terminal task yields ErrAlreadyFinished together with
	// the task.
	Cancel(ctx context.Context, taskID string) (*Task, error)
	// Retry makes a failed or cancelled task pending again, ready now, and
	// writes a retried event. Its error history is kept, and MaxAttempts is
	// raised to Attempt+1 when no attempt was left. ErrNotFound when there
	// is no such task; ErrConflict, with the task, when it is pending,
	// running or completed, or when another task now holds its unique key.
	Retry(ctx context.Context, taskID string) (*Task, error)
	// Bulk applies an action to one batch of the tasks p.Filter selects,
	// in id order after p.After: at most p.Limit tasks, in one
	// transaction, each changed exactly as the single-task action would
	// change it (PlanBulk), with its events and counter moves; a deleted
	// task's events are deleted with it. Callers continue from Next until
	// it is empty. A dry run only selects. Invalid parameters are a
	// *ValidationError, before anything is read.
	Bulk(ctx context.Context, p BulkParams) (BulkResult, error)
	// PauseQueue pauses claims from queue on every node (paused true) or
	// resumes them. Tasks can still be enqueued into a paused queue; a
	// queue may be paused before it has any task. Resuming wakes
	// subscribers.
	PauseQueue(ctx context.Context, queue string, paused bool) error
}

// Coordinator holds what nodes share to keep house together: their
// registry, leadership, and the reconcilers the leader runs.
type Coordinator interface {
	// TouchNode records that node is alive now, registering it if new,
	// with the queues and kinds it serves.
	TouchNode(ctx context.Context, node Node) error
	// RemoveNode deletes a node's row, when it stops.
	RemoveNode(ctx context.Context, id string) error
	// Nodes lists the registered nodes, by id.
	Nodes(ctx context.Context) ([]Node, error)
	// TouchWorker records that remote worker w claimed now, with the
	// queues and kinds it named, registering it if new, and forgets the
	// workers not seen for ForgetWorkersAfter.
	TouchWorker(ctx context.Context, w RemoteWorker) error
	// RemoteWorkers lists the recorded remote workers, by id.
	RemoteWorkers(ctx context.Context) ([]RemoteWorker, error)
	// Lead takes or renews the leadership of role for holder until ttl from
	// now. It succeeds when nobody leads, when holder already leads, or when
	// the leader's lease has expired; term increases with every change of
	// holder. held is false (and term the current leader's) otherwise.
	Lead(ctx context.Context, role, holder string, ttl time.Duration) (term int64, held bool, err error)
	// Resign gives up holder's leadership of role, if it has it, so that
	// another node can take over at once.
	Resign(ctx context.Context, role, holder string) error
	// Leader reads who leads role; ErrNotFound when nobody ever has.
	Leader(ctx context.Context, role string) (Leader, error)
	// Rescue returns orphaned running tasks — whose lease expired, or whose
	// owner is a dead node — to pending (attempt spent), or to failed when
	// no attempt remains, or to cancelled when cancellation was requested;
	// it bumps their epoch so the old owner's writes are refused.
	Rescue(ctx context.Context, p RescueParams) (int, error)
	// Purge deletes finished tasks, and their events, whose FinalizedAt is
	// older than their state's cutoff in p. It works through the table in
	// id order, one bounded window per call, so no call holds the writer
	// for long; callers pass the returned Next back as After to continue
	// until Done.
	Purge(ctx context.Context, p PurgeParams) (PurgeResult, error)
	// Maintain does the backend's own housekeeping (for example folding
	// counters); the maintenance leader calls it periodically.
	Maintain(ctx context.Context) error
}

// Scheduler stores cron schedules.
type Scheduler interface {
	// PutSchedule creates or replaces a schedule.
	PutSchedule(ctx context.Context, sc Schedule) error
	// Schedules lists every schedule by name.
	Schedules(ctx context.Context) ([]Schedule, error)
	// PauseSchedule pauses or resumes a schedule; ErrNotFound if none.
	PauseSchedule(ctx context.Context, name string, paused bool) error
	// DeleteSchedule removes a schedule; ErrNotFound if none.
	DeleteSchedule(ctx context.Context, name string) error
	// AdvanceSchedule moves a schedule's next slot from from to to, if it
	// is still at from (another node may have moved it).
	AdvanceSchedule(ctx context.Context, name string, from, to time.Time) (bool, error)
}

// Store is the whole storage contract, every role in one.
type Store interface {
	Enqueuer
	Runner
	Reader
	Operator
	Coordinator
	Scheduler
	Flows
	Waits
	Streams
	Rollups
	Limiter
	// TxEnqueuer returns the store's enqueuer into callers' own
	// transactions, or nil when the backend has none. Optional
	// capabilities are reached through accessors like this one rather
	// than type assertions, so that a wrapper around a store keeps them.
	TxEnqueuer() TxEnqueuer
	// Close releases the backend. Pending writes are completed first.
	Close() error
}

// TxEnqueuer enqueues inside a caller's own transaction: the tasks become
// visible when, and only if, the caller commits.
type TxEnqueuer interface {
	// EnqueueTx stores a batch in tx, which must be of a transaction type
	// the backend supports (SQLite: *sql.Tx; PostgreSQL: pgx.Tx or a
	// *sql.Tx of pgx's database/sql driver); any other type yields
	// ErrTxUnsupported.
	EnqueueTx(ctx context.Context, tx any, tasks []NewTask) ([]EnqueueResult, error)
	// EnqueueFlowTx stores a flow in tx, as EnqueueTx stores tasks.
	EnqueueFlowTx(ctx context.Context, tx any, f NewFlow) (FlowResult, error)
}
