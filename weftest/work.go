package weftest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// Errors of the methods that run tasks.
var (
	// ErrNoTask: WorkNext found no ready task that a registered worker
	// runs.
	ErrNoTask = errors.New("weftest: no ready task")
	// ErrNotRunnable: WorkTask cannot run the task now. The error says why:
	// it is not pending, not due yet (Advance the clock), in a paused
	// queue, of a kind without a worker, or behind another ready task of
	// its queue and kind (run them in order with WorkNext or Drain).
	ErrNotRunnable = errors.New("weftest: the task cannot run now")
	// ErrDrainLimit: Drain ran Options.DrainLimit attempts and tasks were
	// still ready, most likely because handlers keep enqueueing or
	// snoozing for no time.
	ErrDrainLimit = errors.New("weftest: Drain kept finding ready tasks")
)

// owner is the lease owner of the attempts an Env runs.
const owner = "weftest"

// leaseTTL is the lease of an attempt an Env runs. Nothing rescues tasks
// in an Env, and its clock moves only when told: it never runs out unless
// a handler advances the clock past it.
const leaseTTL = time.Hour

// Outcome is what one attempt came to.
type Outcome string

// The outcomes of an attempt.
const (
	// Completed: the handler returned nil; the task's result is stored.
	Completed Outcome = "completed"
	// Retried: the attempt failed and the task runs again after its
	// kind's backoff (the task's RunAt) while attempts remain.
	Retried Outcome = "retried"
	// Snoozed: the handler returned weft.Snooze; the task runs again
	// after the delay, without spending the attempt.
	Snoozed Outcome = "snoozed"
	// Failed: the handler returned weft.Permanent, or the last attempt
	// failed.
	Failed Outcome = "failed"
	// Cancelled: the handler returned weft.Cancel.
	Cancelled Outcome = "cancelled"
)

// Result is one attempt as it was recorded.
type Result struct {
	Outcome Outcome
	// Task is the task as stored after the attempt: its state, result
	// and error history, and when it runs again if it was retried or
	// snoozed (RunAt).
	Task *weft.TaskRecord
	// Err is what the handler returned (a panic, a timeout), nil when it
	// completed. errors.Is and errors.As see through it to the handler's
	// own error.
	Err error
}

// DecodeResult decodes the task's result, as the handler set it with
// SetResult, into v.
func (r *Result) DecodeResult(v any) error {
	if len(r.Task.Result) == 0 {
		return fmt.Errorf("weftest: task %s has no result (outcome %s)", r.Task.ID, r.Outcome)
	}
	if err := json.Unmarshal(r.Task.Result, v); err != nil {
		return fmt.Errorf("weftest: decode the result of task %s: %w", r.Task.ID, err)
	}
	return nil
}

// Work enqueues a task with args and opts through the Env's client and
// runs it at once (WorkTask): the task must be ready now, so opts may not
// delay it.
func (e *Env) Work(ctx context.Context, args weft.TaskArgs, opts *weft.EnqueueOpts) (*Result, error) {
	res, err := e.client.Enqueue(ctx, args, opts)
	if err != nil {
		return nil, fmt.Errorf("weftest: enqueue: %w", err)
	}
	return e.WorkTask(ctx, res.ID)
}

// WorkTask runs one attempt of the task id synchronously: it claims the
// task as a worker would, runs its kind's handler by the engine's rules,
// and records the outcome. The task must be pending and due, its kind must
// have a worker, and no other ready task of its queue and kind may come
// before it (ErrNotRunnable says which does).
func (e *Env) WorkTask(ctx context.Context, id string) (*Result, error) {
	t, err := e.st.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("weftest: task %s: %w", id, err)
	}
	if err := e.runnable(ctx, t); err != nil {
		return nil, err
	}
	claimed, err := e.claim(ctx, t.Queue, []string{t.Kind})
	if err != nil {
		return nil, err
	}
	if claimed == nil || claimed.ID != id {
		// Only another claimer gets here (a started client on the same
		// store): whatever was claimed goes back at once.
		if claimed != nil {
			if _, err := e.st.Finish(ctx, []store.Outcome{release(claimed, e.Now())}); err != nil {
				return nil, fmt.Errorf("weftest: hand back task %s: %w", claimed.ID, err)
			}
		}
		return nil, fmt.Errorf("%w: task %s was claimed by someone else (is a client on the Env's store started?)", ErrNotRunnable, id)
	}
	return e.run(ctx, claimed)
}

// release is the outcome that hands a claimed task back untouched, as the
// engine does at shutdown.
func release(t *store.Task, now time.Time) store.Outcome {
	return engine.Decide(t, engine.Verdict{Action: engine.Retry, Err: engine.ErrShutdown}, engine.ErrShutdown, nil, now)
}

// runnable says why t cannot be claimed now, if it cannot.
func (e *Env) runnable(ctx context.Context, t *store.Task) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: task %s (kind %s, queue %s) %s", ErrNotRunnable, t.ID, t.Kind, t.Queue, fmt.Sprintf(format, args...))
	}
	now := e.Now()
	switch {
	case t.State != store.StatePending:
		return bad("is %s, not pending", t.State)
	case !slices.Contains(e.names, t.Kind):
		return bad("has no worker: register one in Options.Workers")
	case t.RunAt.After(now):
		return bad("is due at %s, %s after the clock: Advance it first", t.RunAt, t.RunAt.Sub(now))
	}
	stats, err := e.st.Stats(ctx)
	if err != nil {
		return fmt.Errorf("weftest: queue statistics: %w", err)
	}
	for _, qs := range stats {
		if qs.Queue == t.Queue && qs.Paused {
			return bad("is in a paused queue")
		}
	}
	pending, err := e.list(ctx, store.ListParams{Queue: t.Queue, Kind: t.Kind, States: []store.State{store.StatePending}})
	if err != nil {
		return err
	}
	// The claim's order: priority, then due time, then age.
	var first *store.Task
	for _, p := range pending {
		if p.RunAt.After(now) {
			continue
		}
		if first == nil || claimsBefore(p, first) {
			first = p
		}
	}
	if first != nil && first.ID != t.ID {
		return bad("comes after task %s (priority %d, due %s): run them in order with WorkNext or Drain", first.ID, first.Priority, first.RunAt)
	}
	return nil
}

// claimsBefore reports whether a claim takes a before b.
func claimsBefore(a, b *store.Task) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.RunAt.Equal(b.RunAt) {
		return a.RunAt.Before(b.RunAt)
	}
	return cmp.Less(a.ID, b.ID)
}

// WorkNext runs one attempt of the next ready task of queue that a
// registered worker runs, in the order workers claim tasks (priority,
// then due time, then age); ErrNoTask when there is none.
func (e *Env) WorkNext(ctx context.Context, queue string) (*Result, error) {
	if len(e.names) == 0 {
		return nil, fmt.Errorf("%w: no worker is registered (Options.Workers)", ErrNoTask)
	}
	t, err := e.claim(ctx, queue, e.names)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, fmt.Errorf("%w in queue %s", ErrNoTask, queue)
	}
	return e.run(ctx, t)
}

// Drain runs the ready tasks of queues — every queue that holds a task
// when none is named — one attempt at a time, in claim order and taking
// the queues in turn, until none is ready; tasks enqueued or retried into
// readiness meanwhile run too. Tasks due later stay pending: Advance the
// clock and Drain again. It returns the attempts in the order they ran.
func (e *Env) Drain(ctx context.Context, queues ...string) ([]*Result, error) {
	var out []*Result
	for {
		qs := queues
		if len(qs) == 0 {
			stats, err := e.st.Stats(ctx)
			if err != nil {
				return out, fmt.Errorf("weftest: queue statistics: %w", err)
			}
			for _, s := range stats {
				qs = append(qs, s.Queue)
			}
		}
		ran := false
		for _, q := range qs {
			r, err := e.WorkNext(ctx, q)
			if errors.Is(err, ErrNoTask) {
				continue
			}
			if err != nil {
				return out, err
			}
			out = append(out, r)
			ran = true
			if len(out) >= e.drainLimit {
				return out, fmt.Errorf("%w after %d attempts", ErrDrainLimit, len(out))
			}
		}
		if !ran {
			return out, nil
		}
	}
}

// claim leases the next ready task of queue among kinds, or returns nil.
func (e *Env) claim(ctx context.Context, queue string, kinds []string) (*store.Task, error) {
	tasks, err := e.st.Claim(ctx, store.ClaimRequest{
		Owner: owner, Queues: []store.QueueClaim{{Queue: queue, Limit: 1}},
		Kinds: kinds, LeaseTTL: leaseTTL, NotResumable: e.once,
	})
	if err != nil {
		return nil, fmt.Errorf("weftest: claim from queue %s: %w", queue, err)
	}
	if len(tasks) == 0 {
		return nil, nil
	}
	return tasks[0], nil
}

// run runs the claimed task's attempt and records its outcome.
func (e *Env) run(ctx context.Context, t *store.Task) (*Result, error) {
	o, v := engine.RunAttempt(ctx, e.st, e.kinds, t, e.clock.Now)
	// The outcome is recorded even when ctx ended during the attempt, so
	// that no task is left running.
	wctx := context.WithoutCancel(ctx)
	res, err := e.st.Finish(wctx, []store.Outcome{o})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		return nil, fmt.Errorf("weftest: record the outcome of task %s: %w", t.ID, err)
	}
	rec, err := e.st.Get(wctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("weftest: task %s: %w", t.ID, err)
	}
	return &Result{Outcome: outcomeOf(o, res[0].State), Task: rec, Err: v.Err}, nil
}

// outcomeOf names what an attempt came to: the state its outcome left the
// task in, and for a pending task whether it was snoozed or retried.
func outcomeOf(o store.Outcome, state store.State) Outcome {
	switch {
	case state == store.StateCompleted:
		return Completed
	case state == store.StateFailed:
		return Failed
	case state == store.StateCancelled:
		return Cancelled
	case o.Event == store.EventSnoozed:
		return Snoozed
	}
	return Retried
}

// list reads every task p selects, oldest first.
func (e *Env) list(ctx context.Context, p store.ListParams) ([]*store.Task, error) {
	p.Limit = listPage
	var out []*store.Task
	for {
		page, err := e.st.List(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("weftest: list tasks: %w", err)
		}
		out = append(out, page...)
		if len(page) < listPage {
			return out, nil
		}
		p.After = page[len(page)-1].ID
	}
}

// listPage is a page of list: no more than either backend returns at once.
const listPage = 1000
