package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The rules of every state transition are decided here, once, in
// backend-neutral Go: a backend reads what a rule needs under its lock,
// asks the rule for a plan, and applies the plan with its own SQL. A
// transition's side effects — events, counter moves, a wakeup — are
// collected in a Change that the backend writes in the same transaction as
// the state.

// EventRecord is an event a transition writes with its state.
type EventRecord struct {
	TaskID  string
	Type    EventType
	Attempt int
	Data    json.RawMessage
	// At is when the event happened; zero means the time of the write.
	At time.Time
}

// QueueState keys a per-queue state counter.
type QueueState struct {
	Queue string
	State State
}

// CountMoves accumulates the changes a write makes to the per-queue state
// counters that Stats reads.
type CountMoves map[QueueState]int64

// Move records n tasks of queue leaving state from (if any) for state to
// (if any).
func (c CountMoves) Move(queue string, from, to State, n int64) {
	if from != "" {
		c[QueueState{queue, from}] -= n
	}
	if to != "" {
		c[QueueState{queue, to}] += n
	}
}

// Rows lists the non-zero changes as parallel columns, the shape backends
// write them in.
func (c CountMoves) Rows() (queues, states []string, deltas []int64) {
	for k, n := range c {
		if n != 0 {
			queues, states, deltas = append(queues, k.Queue), append(states, string(k.State)), append(deltas, n)
		}
	}
	return queues, states, deltas
}

// Change is the side effect of one or more transitions: the events to
// append, the counter moves, and whether work may have become ready (so
// that subscribers are woken after the commit).
type Change struct {
	Events []EventRecord
	Counts CountMoves
	Wake   bool
}

// Event appends an event.
func (c *Change) Event(taskID string, typ EventType, attempt int, data json.RawMessage) {
	c.Events = append(c.Events, EventRecord{TaskID: taskID, Type: typ, Attempt: attempt, Data: data})
}

// Move records a task of queue moving from one state to another, and
// notes a wakeup when it became pending.
func (c *Change) Move(queue string, from, to State) {
	if c.Counts == nil {
		c.Counts = CountMoves{}
	}
	c.Counts.Move(queue, from, to, 1)
	if to == StatePending {
		c.Wake = true
	}
}

// Merge returns c with the effects of o, made in the same transaction,
// added.
func (c Change) Merge(o Change) Change {
	c.Events = append(c.Events, o.Events...)
	for k, n := range o.Counts {
		if c.Counts == nil {
			c.Counts = CountMoves{}
		}
		c.Counts[k] += n
	}
	c.Wake = c.Wake || o.Wake
	return c
}

// CancelAction is what a cancel does to a task.
type CancelAction int

// The cancel actions.
const (
	// CancelNothing: cancellation was already requested; nothing changes.
	CancelNothing CancelAction = iota
	// CancelNow: the task, not yet running, is cancelled at once.
	CancelNow
	// CancelRequest: the task is running; its worker is asked to stop, and
	// its next outcome becomes a cancellation unless it completes.
	CancelRequest
)

// PlanCancel decides what Cancel does to t, as read under the backend's
// lock, and updates t to the state the backend is to write. A terminal task
// yields ErrAlreadyFinished.
func PlanCancel(t *Task, now time.Time) (CancelAction, Change, error) {
	var ch Change
	_, cancellable, _, _ := t.State.info()
	switch {
	case cancellable:
		ch.Move(t.Queue, t.State, StateCancelled)
		ch.Event(t.ID, EventCancelled, t.Attempt, nil)
		t.State, t.FinalizedAt = StateCancelled, now
		return CancelNow, ch, nil
	case t.State == StateRunning && t.CancelRequested:
		return CancelNothing, ch, nil
	case t.State == StateRunning:
		ch.Event(t.ID, EventCancelRequested, t.Attempt, nil)
		t.CancelRequested = true
		return CancelRequest, ch, nil
	}
	return CancelNothing, ch, fmt.Errorf("task %s is %s: %w", t.ID, t.State, ErrAlreadyFinished)
}

// PlanRetry decides whether Retry may make t pending again. holder is the
// id of another task that now holds t's unique key, or "". On success the
// returned change holds the counter move and the retried event; the
// backend then writes the row as RetryRow describes.
func PlanRetry(t *Task, holder string) (Change, error) {
	var ch Change
	if _, _, retryable, _ := t.State.info(); !retryable {
		return ch, fmt.Errorf("retry: task %s is %s, not failed, cancelled or skipped: %w", t.ID, t.State, ErrConflict)
	}
	if holder != "" {
		return ch, fmt.Errorf("retry: task %s: its unique key %q is now held by task %s: %w", t.ID, t.UniqueKey, holder, ErrConflict)
	}
	ch.Move(t.Queue, t.State, StatePending)
	ch.Event(t.ID, EventRetried, t.Attempt, json.RawMessage(`{"from":"`+string(t.State)+`"}`))
	return ch, nil
}

// RetryRow is the row a retry writes: pending and ready at now, no lease,
// no cancel request, the epoch bumped (so a worker of an earlier run stays
// fenced whatever happens next), and exactly one more attempt when none
// was left.
func RetryRow(t *Task, now time.Time) {
	t.State, t.RunAt, t.FinalizedAt = StatePending, now, time.Time{}
	t.CancelRequested, t.LeaseOwner, t.LeaseExpiresAt = false, "", time.Time{}
	t.LeaseEpoch++
	t.MaxAttempts = max(t.MaxAttempts, t.Attempt+1)
}

// CheckOutcomes refuses outcomes that name no outcome state, before a
// backend writes anything.
func CheckOutcomes(outcomes []Outcome) error {
	for i, o := range outcomes {
		switch o.State {
		case StateCompleted, StateFailed, StateCancelled, StatePending:
		case StateWaiting:
			if o.Wait == nil {
				return &ValidationError{Index: i, Field: "wait", Message: "a waiting outcome needs its wait"}
			}
		default:
			return &ValidationError{Index: i, Field: "state", Message: fmt.Sprintf("%q is not an outcome state", o.State)}
		}
	}
	return nil
}

// LeaseKey names one lease of one task.
type LeaseKey struct {
	TaskID string
	Epoch  int64
}

// FinishedRow is a row a backend's fenced finish statement wrote: the
// task's state, attempt and queue as it left them.
type FinishedRow struct {
	State   State
	Attempt int
	Queue   string
	// FlowID is the task's flow, for a flow member.
	FlowID string
	// Limited says the task drew on limits: its slots are to be released.
	Limited bool
}

// ReconcileFinish turns what a fenced finish statement wrote into each
// outcome's result and the transition's side effects. An outcome whose
// lease is not in applied was refused: ErrLeaseLost, or ErrNotFound when
// missing reports the task does not exist. A duplicate outcome in a batch
// is applied once. A pending outcome that the backend turned into a
// cancellation (a cancel request wins over a retry) gets the cancelled
// event.
func ReconcileFinish(outcomes []Outcome, applied map[LeaseKey]FinishedRow, missing map[string]bool) ([]FinishResult, Change) {
	results := make([]FinishResult, len(outcomes))
	ch := Change{Events: make([]EventRecord, 0, len(outcomes)), Counts: CountMoves{}}
	for i, o := range outcomes {
		k := LeaseKey{o.TaskID, o.Epoch}
		row, ok := applied[k]
		if !ok {
			err := fmt.Errorf("task %s epoch %d: %w", o.TaskID, o.Epoch, ErrLeaseLost)
			if missing[o.TaskID] {
				err = fmt.Errorf("task %s: %w", o.TaskID, ErrNotFound)
			}
			results[i] = FinishResult{Err: err}
			continue
		}
		delete(applied, k)
		results[i] = FinishResult{State: row.State}
		typ, data := o.Event, o.EventData
		if row.State != o.State {
			typ, data = EventCancelled, nil
		}
		attempt := row.Attempt
		if o.Refund {
			// The event names the attempt that ran, which the refund gave
			// back.
			attempt++
		}
		if !o.StartedAt.IsZero() {
			ch.Events = append(ch.Events, EventRecord{TaskID: o.TaskID, Type: EventStarted, Attempt: attempt, At: o.StartedAt})
		}
		ch.Event(o.TaskID, typ, attempt, data)
		ch.Move(row.Queue, StateRunning, row.State)
	}
	return results, ch
}

// Unapplied lists the task ids of outcomes whose lease is not in applied,
// for a backend to check which of them exist.
func Unapplied(outcomes []Outcome, applied map[LeaseKey]FinishedRow) []string {
	var ids []string
	for _, o := range outcomes {
		if _, ok := applied[LeaseKey{o.TaskID, o.Epoch}]; !ok {
			ids = append(ids, o.TaskID)
		}
	}
	return ids
}

// Rescued records the side effects of rescuing one orphaned task that the
// backend moved to state to (pending, failed or cancelled); cause is the
// error text the rescue wrote, which says whether the lease expired or the
// owner died.
func (c *Change) Rescued(taskID, queue string, to State, attempt int, cause string) {
	data := json.RawMessage(`{"reason":"lease_expired"}`)
	if strings.HasPrefix(cause, "owner died") {
		data = json.RawMessage(`{"reason":"owner_died"}`)
	}
	typ := EventCancelled
	switch to {
	case StatePending:
		typ = EventRescued
	case StateFailed:
		typ = EventFailed
	}
	c.Event(taskID, typ, attempt, data)
	c.Move(queue, StateRunning, to)
}

// PurgeCutoff is one condition of a purge: tasks in State finalized before
// Before are deleted.
type PurgeCutoff struct {
	State  State
	Before time.Time
}

// PurgePlan is a validated PurgeParams with its defaults applied.
type PurgePlan struct {
	Window, Limit int
	// Cutoffs lists the states to purge, in lifecycle order.
	Cutoffs []PurgeCutoff
}

// Plan validates p and applies its defaults: every state in Before must be
// terminal.
func (p PurgeParams) Plan() (PurgePlan, error) {
	plan := PurgePlan{Window: p.Window, Limit: p.Limit}
	if plan.Window <= 0 {
		plan.Window = 10000
	}
	if plan.Limit <= 0 {
		plan.Limit = 1000
	}
	for st := range p.Before {
		if !st.Terminal() {
			return PurgePlan{}, &ValidationError{Index: -1, Field: "before", Message: fmt.Sprintf("%q is not a terminal state", st)}
		}
	}
	for _, st := range TerminalStates() {
		if before, ok := p.Before[st]; ok {
			plan.Cutoffs = append(plan.Cutoffs, PurgeCutoff{State: st, Before: before})
		}
	}
	return plan, nil
}

// Result says where a sweep goes after one call that started at after,
// deleted deleted rows, and looked at a window ending at end ("" when the
// window reached the end of the table).
func (p PurgePlan) Result(after string, deleted int, end string) PurgeResult {
	res := PurgeResult{Deleted: deleted}
	switch {
	case deleted == p.Limit:
		// The window may hold more: look at it again.
		res.Next = after
	case end != "":
		res.Next = end
	default:
		res.Done = true
	}
	return res
}

// Validate checks a claim request, the same way on every backend, before
// anything is read: an owner, a positive lease TTL, and valid kind names
// in Kinds and NotResumable (backends may write them into statements).
// Queues with no positive limit are ignored, so a request may claim
// nothing.
func (r ClaimRequest) Validate() error {
	if r.Owner == "" {
		return &ValidationError{Index: -1, Field: "owner", Message: "must not be empty"}
	}
	if r.LeaseTTL <= 0 {
		return &ValidationError{Index: -1, Field: "lease_ttl", Message: "must be positive"}
	}
	for _, k := range r.NotResumable {
		if !ValidName(k) {
			return &ValidationError{Index: -1, Field: "not_resumable", Message: fmt.Sprintf("%q is not a valid kind", k)}
		}
	}
	for _, k := range r.Kinds {
		if !ValidName(k) {
			return &ValidationError{Index: -1, Field: "kinds", Message: fmt.Sprintf("%q is not a valid kind", k)}
		}
	}
	return nil
}

// SplitWaits takes the waiting outcomes — suspensions, rare, and each with
// reads of its own — out of a batch; waitIdx says where each was.
func SplitWaits(outcomes []Outcome) (rest, waits []Outcome, waitIdx []int) {
	for i, o := range outcomes {
		if o.State == StateWaiting {
			waitIdx = append(waitIdx, i)
		}
	}
	if len(waitIdx) == 0 {
		return outcomes, nil, nil
	}
	rest = make([]Outcome, 0, len(outcomes)-len(waitIdx))
	for _, o := range outcomes {
		if o.State == StateWaiting {
			waits = append(waits, o)
		} else {
			rest = append(rest, o)
		}
	}
	return rest, waits, waitIdx
}

// JoinWaits puts the results of the waiting outcomes that SplitWaits took
// out back in their places among the others'.
func JoinWaits(rest, waits []FinishResult, waitIdx []int) []FinishResult {
	if len(waitIdx) == 0 {
		return rest
	}
	out := make([]FinishResult, 0, len(rest)+len(waits))
	w := 0
	for i := 0; i < len(rest)+len(waits); i++ {
		if w < len(waitIdx) && waitIdx[w] == i {
			out = append(out, waits[w])
			w++
			continue
		}
		out = append(out, rest[i-w])
	}
	return out
}
