package store

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Bulk actions apply one operator action to every task a filter selects,
// one bounded batch per call (Operator.Bulk). Each task of a batch changes
// exactly as the single-task action would change it — PlanBulk applies
// PlanCancel, PlanRetry and RetryRow to each — and a batch is written in
// one transaction, with its events and counter moves.

// BulkAction names an operator action on many tasks.
type BulkAction string

// The bulk actions.
const (
	// BulkRetry makes failed, cancelled and skipped tasks pending again,
	// as Retry does; a task whose unique key another task holds is left
	// alone, and so are flow members (retry them with Retry or RetryFlow,
	// which reopen what they skipped).
	BulkRetry BulkAction = "retry"
	// BulkCancel cancels pending, blocked and waiting tasks at once and
	// asks the workers of running ones to stop, as Cancel does.
	BulkCancel BulkAction = "cancel"
	// BulkDelete deletes finished tasks — completed, failed, cancelled or
	// skipped — and their events. Unfinished tasks are never deleted:
	// cancel them first. Flow members are left to go with their flow.
	BulkDelete BulkAction = "delete"
	// BulkRunNow makes pending tasks that are scheduled for later ready
	// now.
	BulkRunNow BulkAction = "run_now"
)

// BulkActions lists the bulk actions.
func BulkActions() []BulkAction { return []BulkAction{BulkRetry, BulkCancel, BulkDelete, BulkRunNow} }

// States lists, in lifecycle order, the states of the tasks the action
// applies to; nil for an unknown action.
func (a BulkAction) States() []State {
	var out []State
	for _, s := range States() {
		terminal, cancellable, retryable, _ := s.info()
		var applies bool
		switch a {
		case BulkRetry:
			applies = retryable
		case BulkCancel:
			applies = cancellable || s == StateRunning
		case BulkDelete:
			applies = terminal
		case BulkRunNow:
			applies = s == StatePending
		}
		if applies {
			out = append(out, s)
		}
	}
	return out
}

// TaskFilter selects tasks as a listing does. Zero fields select every
// task.
type TaskFilter struct {
	Queue  string
	Kind   string
	States []State
	// CreatedSince and CreatedUntil, when set, bound the creation time:
	// at or after CreatedSince, and before CreatedUntil.
	CreatedSince, CreatedUntil time.Time
	// IDs, when not empty, restricts the selection to these tasks.
	IDs []string
}

// Check validates the filter: names, states, the time range and the ids.
// Errors name the field ("queue", "states", "created_until", "ids[2]").
func (f TaskFilter) Check() error {
	bad := func(field, format string, args ...any) error {
		return &ValidationError{Index: -1, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if f.Queue != "" && !ValidName(f.Queue) {
		return bad("queue", "%q is not a valid queue name", f.Queue)
	}
	if f.Kind != "" && !ValidName(f.Kind) {
		return bad("kind", "%q is not a valid kind name", f.Kind)
	}
	for _, s := range f.States {
		if !s.Valid() {
			return bad("states", "%q is not a state (%s)", s, StateNames(States(), ", "))
		}
	}
	if !f.CreatedSince.IsZero() && !f.CreatedUntil.IsZero() && !f.CreatedUntil.After(f.CreatedSince) {
		return bad("created_until", "%s is not after the start of the range, %s", f.CreatedUntil.UTC().Format(time.RFC3339Nano), f.CreatedSince.UTC().Format(time.RFC3339Nano))
	}
	for i, id := range f.IDs {
		if _, err := uuid.Parse(id); err != nil {
			return bad(fmt.Sprintf("ids[%d]", i), "%q is not a task id", id)
		}
	}
	return nil
}

// MaxBulkBatch bounds how many tasks one Bulk call changes, and is its
// default: one batch is one transaction, and holds the writer for a few
// milliseconds at most.
const MaxBulkBatch = 1000

// BulkParams asks for one batch of a bulk action.
type BulkParams struct {
	Action BulkAction
	Filter TaskFilter
	// DryRun selects the batch without changing anything, so that Matched
	// says how many tasks the action would look at.
	DryRun bool
	// After is the Next of the previous batch; "" starts at the first task.
	After string
	// Limit bounds the batch: 1 to MaxBulkBatch, 0 meaning MaxBulkBatch.
	Limit int
}

// BulkResult is what one Bulk call did.
type BulkResult struct {
	// Matched counts the tasks of the batch: those the filter selects
	// among the states the action applies to (and, for run now, scheduled
	// for later).
	Matched int
	// Changed counts the tasks the action changed: fewer than Matched when
	// some needed no change (a running task already asked to stop) or were
	// refused (a retry whose unique key another task holds); 0 on a dry
	// run.
	Changed int
	// Next is where the next batch starts; "" when this one was the last.
	Next string
}

// BulkQuery is a validated BulkParams with its defaults applied: what a
// backend selects one batch with.
type BulkQuery struct {
	Action BulkAction
	// Filter's States are the states to select: those asked for, or
	// every state the action applies to.
	Filter TaskFilter
	DryRun bool
	After  string
	Limit  int
	// ScheduledAfter, when set, selects only tasks whose RunAt is after
	// it (run now selects the tasks that are not ready yet).
	ScheduledAfter time.Time
}

// Query validates p at now and applies its defaults. States that the
// action does not apply to are refused ("states"), so that a filter never
// silently matches nothing.
func (p BulkParams) Query(now time.Time) (BulkQuery, error) {
	applies := p.Action.States()
	if applies == nil {
		names := make([]string, 0, 4)
		for _, a := range BulkActions() {
			names = append(names, string(a))
		}
		return BulkQuery{}, &ValidationError{Index: -1, Field: "action", Message: fmt.Sprintf("%q is not an action (%s)", p.Action, strings.Join(names, ", "))}
	}
	if err := p.Filter.Check(); err != nil {
		return BulkQuery{}, err
	}
	q := BulkQuery{Action: p.Action, Filter: p.Filter, DryRun: p.DryRun, After: p.After, Limit: p.Limit}
	for _, s := range p.Filter.States {
		if !slices.Contains(applies, s) {
			return BulkQuery{}, &ValidationError{Index: -1, Field: "states", Message: fmt.Sprintf("%s applies to %s tasks, not %s ones", p.Action, StateNames(applies, ", "), s)}
		}
	}
	if len(q.Filter.States) == 0 {
		q.Filter.States = applies
	}
	if q.After != "" {
		if _, err := uuid.Parse(q.After); err != nil {
			return BulkQuery{}, &ValidationError{Index: -1, Field: "after", Message: "not the cursor of a previous batch"}
		}
	}
	switch {
	case q.Limit == 0:
		q.Limit = MaxBulkBatch
	case q.Limit < 0 || q.Limit > MaxBulkBatch:
		return BulkQuery{}, &ValidationError{Index: -1, Field: "limit", Message: fmt.Sprintf("%d is out of range (1 to %d)", q.Limit, MaxBulkBatch)}
	}
	if p.Action == BulkRunNow {
		q.ScheduledAfter = now
	}
	return q, nil
}

// Result is the result of a batch that selected matched tasks, the last
// of them last, and changed changed of them.
func (q BulkQuery) Result(matched, changed int, last string) BulkResult {
	res := BulkResult{Matched: matched, Changed: changed}
	if matched == q.Limit {
		res.Next = last
	}
	return res
}

// BulkPlan is what one batch of a bulk action writes, grouped by the
// statement each group needs, with the events and counter moves.
type BulkPlan struct {
	// Cancel lists the tasks to finalize as cancelled now (CancelNow).
	Cancel []string
	// Request lists the running tasks whose cancellation is requested
	// (CancelRequest).
	Request []string
	// Retry lists the tasks to make pending, each as RetryRow left it.
	Retry []*Task
	// Delete lists the finished tasks to delete, with their events.
	Delete []string
	// RunNow lists the pending tasks to make ready at now.
	RunNow []string
	// FlowCancels lists the flow members among Cancel, whose flows the
	// backend resolves in the same transaction, as Cancel does.
	FlowCancels []FlowMove
	// Change holds the events to append, the counter moves and the
	// wakeup; a deletion's events are removed with its task instead.
	Change Change
}

// FlowMove is a flow member's move to a final state, for its flow to
// resolve.
type FlowMove struct {
	TaskID, FlowID string
	From, To       State
}

// Changed counts the tasks the plan changes.
func (p *BulkPlan) Changed() int {
	return len(p.Cancel) + len(p.Request) + len(p.Retry) + len(p.Delete) + len(p.RunNow)
}

// PlanBulk decides what action a does to a batch of tasks, as read under
// the backend's lock, at now. Each task goes through the rules of the
// single-task action — PlanCancel, or PlanRetry and RetryRow — so that
// bulk and single actions cannot differ; a rule that refuses a task
// leaves it alone. holders maps the unique keys of the batch's tasks to
// the tasks that hold them now; PlanBulk adds the keys its retries take,
// so that of two tasks of one key in a batch only the first is retried.
func PlanBulk(a BulkAction, tasks []*Task, holders map[string]string, now time.Time) BulkPlan {
	var p BulkPlan
	if holders == nil {
		holders = map[string]string{}
	}
	for _, t := range tasks {
		switch a {
		case BulkCancel:
			from := t.State
			action, ch, err := PlanCancel(t, now)
			if err != nil {
				continue
			}
			switch action {
			case CancelNow:
				p.Cancel = append(p.Cancel, t.ID)
				if t.FlowID != "" {
					p.FlowCancels = append(p.FlowCancels, FlowMove{TaskID: t.ID, FlowID: t.FlowID, From: from, To: StateCancelled})
				}
			case CancelRequest:
				p.Request = append(p.Request, t.ID)
				// No client hands a bulk cancel to the engine running the
				// task: its owner's cancel watcher learns of it at the
				// wakeup.
				ch.Wake = true
			}
			p.Change = p.Change.Merge(ch)
		case BulkRetry:
			if t.FlowID != "" {
				// A member is retried with its flow's dependents
				// (Retry, RetryFlow), not alone.
				continue
			}
			holder := ""
			if t.UniqueKey != "" {
				holder = holders[t.UniqueKey]
			}
			ch, err := PlanRetry(t, holder)
			if err != nil {
				continue
			}
			RetryRow(t, now)
			if t.UniqueKey != "" {
				holders[t.UniqueKey] = t.ID
			}
			p.Retry = append(p.Retry, t)
			p.Change = p.Change.Merge(ch)
		case BulkDelete:
			if !t.State.Terminal() || t.FlowID != "" {
				// A member goes with its flow, once the flow is final
				// (retention).
				continue
			}
			p.Delete = append(p.Delete, t.ID)
			p.Change.Move(t.Queue, t.State, "")
		case BulkRunNow:
			if t.State != StatePending || !t.RunAt.After(now) {
				continue
			}
			t.RunAt = now
			p.RunNow = append(p.RunNow, t.ID)
			p.Change.Wake = true
		}
	}
	return p
}
