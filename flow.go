package weft

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/store"
)

// Join is the condition over a flow step's parents' final outcomes that
// lets it run.
type Join = store.Join

// The join conditions (see store.Join). Only final outcomes count: a
// parent being retried is not final.
const (
	// AllSucceeded, the default: every parent completed.
	AllSucceeded = store.JoinAllSucceeded
	// AnySucceeded: one parent completed.
	AnySucceeded = store.JoinAnySucceeded
	// QuorumSucceeded: Quorum(k) parents completed.
	QuorumSucceeded = store.JoinQuorum
	// AllDone: every parent is final, whatever the outcomes (a finalizer).
	AllDone = store.JoinAllDone
	// NoneSucceeded: every parent failed, was cancelled or skipped
	// (compensation).
	NoneSucceeded = store.JoinNoneSucceeded
)

type (
	// FlowRecord is a stored flow as read back: its state, counts,
	// progress rate and ETA.
	FlowRecord = store.Flow
	// FlowMember is a flow's member as its listing shows it.
	FlowMember = store.FlowMember
	// FlowResult is what submitting a flow made: its id and each step's
	// task id by key.
	FlowResult = store.FlowResult
	// FlowState is the state of a flow as a whole.
	FlowState = store.FlowState
	// FlowListParams filters and pages ListFlows.
	FlowListParams = store.FlowListParams
	// ParentOutcome is a parent's final outcome, as its child reads it.
	ParentOutcome = store.ParentOutcome
)

// The flow states.
const (
	FlowRunning   = store.FlowRunning
	FlowSucceeded = store.FlowSucceeded
	FlowFailed    = store.FlowFailed
	FlowCancelled = store.FlowCancelled
)

// ErrFlowNotFound: no flow has the given id.
var ErrFlowNotFound = store.ErrFlowNotFound

// Flow is a set of steps — tasks with a key each and dependencies between
// them — submitted atomically with Client.EnqueueFlow. Steps without
// dependencies run at once; the others wait, blocked, until their join
// condition holds over their parents' final outcomes, and are skipped when
// it no longer can.
type Flow struct {
	// Name is free text for people.
	Name string
	// Metadata is stored with the flow, encoded as a JSON object.
	Metadata map[string]any
	// Steps are the members, each with a key unique in the flow.
	Steps []FlowStep
}

// FlowStep is one member of a Flow.
type FlowStep struct {
	Key  string
	Args TaskArgs
	Opts *EnqueueOpts
	// DependsOn names parents by key; "key/*" also waits for the members
	// that key adds while it runs (Task.AddToFlow); "*" waits for every
	// other step (a batch's completion callback).
	DependsOn []string
	Join      Join
	// Quorum is the number of parents that must complete, with
	// QuorumSucceeded.
	Quorum int
	// LetRun keeps the other parents running once an AnySucceeded or
	// QuorumSucceeded condition is met; by default those feeding only
	// this step are cancelled.
	LetRun bool
}

// StepOption configures a step added with Flow.Add.
type StepOption func(*FlowStep)

// After makes the step depend on the steps with these keys.
func After(keys ...string) StepOption {
	return func(s *FlowStep) { s.DependsOn = append(s.DependsOn, keys...) }
}

// WithJoin sets the step's join condition (default AllSucceeded).
func WithJoin(j Join) StepOption { return func(s *FlowStep) { s.Join = j } }

// Quorum makes the step run once k of its parents completed.
func Quorum(k int) StepOption {
	return func(s *FlowStep) { s.Join, s.Quorum = QuorumSucceeded, k }
}

// LetRun keeps the step's other parents running once its condition is
// met.
func LetRun() StepOption { return func(s *FlowStep) { s.LetRun = true } }

// WithOpts sets the step's task options.
func WithOpts(o *EnqueueOpts) StepOption { return func(s *FlowStep) { s.Opts = o } }

// NewFlow starts a flow named name.
func NewFlow(name string) *Flow { return &Flow{Name: name} }

// Add appends a step and returns f, so that steps chain.
func (f *Flow) Add(key string, args TaskArgs, opts ...StepOption) *Flow {
	s := FlowStep{Key: key, Args: args}
	for _, o := range opts {
		o(&s)
	}
	f.Steps = append(f.Steps, s)
	return f
}

// members translates the steps for the store, which validates them; ws
// (nil for none) derives their limit keys.
func (f *Flow) members(ws *Workers) ([]store.NewFlowMember, error) {
	members := make([]store.NewFlowMember, len(f.Steps))
	for i, s := range f.Steps {
		t, verr := ws.newTask(EnqueueParams{Args: s.Args, Opts: s.Opts})
		if verr != nil {
			return nil, &ValidationError{Index: -1, Field: fmt.Sprintf("tasks[%d].%s", i, verr.Field), Message: verr.Message}
		}
		members[i] = store.NewFlowMember{Key: s.Key, Task: t, DependsOn: s.DependsOn, Join: s.Join, Quorum: s.Quorum, LetRun: s.LetRun}
	}
	return members, nil
}

func (f *Flow) newFlow(ws *Workers) (store.NewFlow, error) {
	if f == nil {
		return store.NewFlow{}, &ValidationError{Index: -1, Field: "flow", Message: "must not be nil"}
	}
	members, err := f.members(ws)
	if err != nil {
		return store.NewFlow{}, err
	}
	nf := store.NewFlow{Name: f.Name, Members: members}
	if len(f.Metadata) > 0 {
		md, err := json.Marshal(f.Metadata)
		if err != nil {
			return store.NewFlow{}, &ValidationError{Index: -1, Field: "metadata", Message: "cannot encode as JSON: " + err.Error()}
		}
		nf.Metadata = md
	}
	return nf, nil
}

// EnqueueFlow stores a flow and all its steps atomically: all of them, or
// none when any is invalid (a *ValidationError naming the step's field, as
// tasks[2].depends_on[0]) or a step's unique key is held by another task
// (ErrConflict).
func (c *Client) EnqueueFlow(ctx context.Context, f *Flow) (FlowResult, error) {
	nf, err := f.newFlow(c.cfg.Workers)
	if err != nil {
		return FlowResult{}, err
	}
	return c.st.EnqueueFlow(ctx, nf)
}

// EnqueueFlowTx stores a flow inside the caller's transaction tx, as
// EnqueueTx stores a task: the flow exists if and only if tx commits.
func EnqueueFlowTx[TTx any](ctx context.Context, c *Client, tx TTx, f *Flow) (FlowResult, error) {
	nf, err := f.newFlow(c.cfg.Workers)
	if err != nil {
		return FlowResult{}, err
	}
	txe := c.st.TxEnqueuer()
	if txe == nil {
		return FlowResult{}, fmt.Errorf("weft: %T: %w", tx, ErrTxUnsupported)
	}
	return txe.EnqueueFlowTx(ctx, tx, nf)
}

// Flow reads a flow; ErrFlowNotFound when there is none.
func (c *Client) Flow(ctx context.Context, id string) (*FlowRecord, error) { return c.st.Flow(ctx, id) }

// FlowMembers lists a flow's members in the order they were added.
func (c *Client) FlowMembers(ctx context.Context, id string) ([]FlowMember, error) {
	return c.st.FlowMembers(ctx, id)
}

// ListFlows lists flows in creation order.
func (c *Client) ListFlows(ctx context.Context, p FlowListParams) ([]*FlowRecord, error) {
	return c.st.ListFlows(ctx, p)
}

// CancelFlow cancels a flow: its pending, blocked and waiting members at
// once, and its running ones as Cancel does. Cancelling a cancelled flow
// changes nothing; a succeeded or failed one yields ErrAlreadyFinished
// with the flow.
func (c *Client) CancelFlow(ctx context.Context, id string) (*FlowRecord, error) {
	f, err := c.st.CancelFlow(ctx, id)
	if err != nil {
		return f, err
	}
	c.mu.Lock()
	eng := c.eng
	c.mu.Unlock()
	if eng != nil {
		// This node's running members stop now rather than at their next
		// lease renewal.
		ms, err := c.st.FlowMembers(ctx, id)
		if err == nil {
			for _, m := range ms {
				if m.State == store.StateRunning {
					eng.CancelLocal(m.TaskID)
				}
			}
		}
	}
	return f, nil
}

// RetryFlow runs a flow's failed and cancelled members again and reopens
// the members skipped or cancelled because of them; completed members
// keep their results. ErrConflict, with the flow, when no member failed
// or was cancelled.
func (c *Client) RetryFlow(ctx context.Context, id string) (*FlowRecord, error) {
	return c.st.RetryFlow(ctx, id)
}

// Parents are the final outcomes of a flow step's parents, by key.
type Parents map[string]ParentOutcome

// Parents reads the outcomes of this step's parents: for a step whose
// join ran it whatever they did (AllDone, AnySucceeded, ...), each one's
// state, result and errors. A task outside any flow has none.
func (t *Task[T]) Parents(ctx context.Context) (Parents, error) {
	if t.FlowID == "" {
		return Parents{}, nil
	}
	ps, err := t.exec.Parents(ctx)
	if err != nil {
		return nil, fmt.Errorf("weft: read parents: %w", err)
	}
	out := make(Parents, len(ps))
	for _, p := range ps {
		out[p.Key] = p
	}
	return out, nil
}

// ParentResult decodes the result of the parent with key into an R. It
// fails when there is no such parent or it did not complete.
func ParentResult[R any](p Parents, key string) (R, error) {
	var r R
	po, ok := p[key]
	switch {
	case !ok:
		return r, fmt.Errorf("weft: no parent %q", key)
	case po.State != store.StateCompleted:
		return r, fmt.Errorf("weft: parent %q is %s, so it has no result", key, po.State)
	}
	if err := json.Unmarshal(po.Result, &r); err != nil {
		return r, fmt.Errorf("weft: decode the result of parent %q: %w", key, err)
	}
	return r, nil
}

// AddToFlow adds f's steps to this task's flow while the task runs (a
// dynamic fan-out), atomically and under this attempt's lease: steps may
// depend on this task (they then run when it completes), on each other and
// on members of the flow not yet final; members that depend on "key/*"
// of this task wait for the added steps too. f's name and metadata are
// not used.
func (t *Task[T]) AddToFlow(ctx context.Context, f *Flow) (FlowResult, error) {
	if t.FlowID == "" {
		return FlowResult{}, fmt.Errorf("weft: task %s is not a member of a flow: %w", t.ID, ErrConflict)
	}
	var ws *Workers
	if t.client != nil {
		ws = t.client.cfg.Workers
	}
	members, err := f.members(ws)
	if err != nil {
		return FlowResult{}, err
	}
	return t.exec.AddMembers(ctx, members)
}
