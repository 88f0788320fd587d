package engine

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/weftworks/weft/store"
)

// Execution is one attempt of a task, handed to its handler.
type Execution struct {
	// Task is the task as claimed: its Attempt and LeaseEpoch are this
	// attempt's.
	Task *store.Task
	src  Source
}

// Progress appends a progress event to the task's log under this attempt's
// lease. It fails with store.ErrLeaseLost once the lease is gone.
func (x *Execution) Progress(ctx context.Context, data json.RawMessage) error {
	return x.src.Progress(ctx, x.Task.ID, x.Task.LeaseEpoch, data)
}

// ErrNoFlows is returned by an execution's flow methods when its source
// cannot reach flows.
var ErrNoFlows = errors.New("this worker's source does not serve flows")

// Parents reads the outcomes of the parents of the task, a flow member.
func (x *Execution) Parents(ctx context.Context) ([]store.ParentOutcome, error) {
	fs, ok := x.src.(FlowSource)
	if !ok {
		return nil, ErrNoFlows
	}
	return fs.Parents(ctx, x.Task.ID)
}

// AddMembers adds members to the task's flow under this attempt's lease.
func (x *Execution) AddMembers(ctx context.Context, members []store.NewFlowMember) (store.FlowResult, error) {
	fs, ok := x.src.(FlowSource)
	if !ok {
		return store.FlowResult{}, ErrNoFlows
	}
	return fs.AddMembers(ctx, x.Task.ID, x.Task.LeaseEpoch, members)
}

// ErrNoWaits is returned by an execution's wait methods when its source
// cannot store waitpoints.
var ErrNoWaits = errors.New("this worker's source does not serve waitpoints")

// CreateWaitpoint creates a waitpoint for the task under this attempt's
// lease, or returns the one of that name it has.
func (x *Execution) CreateWaitpoint(ctx context.Context, wp store.NewWaitpoint) (store.Waitpoint, error) {
	ws, ok := x.src.(WaitSource)
	if !ok {
		return store.Waitpoint{}, ErrNoWaits
	}
	return ws.CreateWaitpoint(ctx, x.Task.ID, x.Task.LeaseEpoch, wp)
}

// Waitpoints reads the task's waitpoints with their signals.
func (x *Execution) Waitpoints(ctx context.Context) ([]store.Waitpoint, error) {
	ws, ok := x.src.(WaitSource)
	if !ok {
		return nil, ErrNoWaits
	}
	return ws.Waitpoints(ctx, x.Task.ID)
}

// WaitpointToken is the token the source was given for the task's
// waitpoint with id waitpointID, when its source is a TokenSource that has
// one; otherwise the handler's process signs the token itself.
func (x *Execution) WaitpointToken(waitpointID string) (string, bool) {
	ts, ok := x.src.(TokenSource)
	if !ok {
		return "", false
	}
	return ts.WaitpointToken(x.Task.ID, waitpointID)
}

// ErrNoStreams is returned by an execution's AppendFrames when its
// source cannot store output streams.
var ErrNoStreams = errors.New("this worker's source does not store output streams")

// AppendFrames appends frames to the task's output stream under this
// attempt's lease, and returns them as stored. It fails with
// store.ErrLeaseLost once the lease is gone.
func (x *Execution) AppendFrames(ctx context.Context, frames []store.NewFrame) ([]store.Frame, error) {
	ss, ok := x.src.(StreamSource)
	if !ok {
		return nil, ErrNoStreams
	}
	return ss.AppendFrames(ctx, x.Task.ID, x.Task.LeaseEpoch, frames)
}

// Backoff bounds for DefaultBackoff.
const (
	backoffBase = time.Second
	backoffMax  = time.Hour
)

// DefaultBackoff is exponential with full jitter in its upper half: about
// 1s, 2s, 4s ... after attempts 1, 2, 3, capped at one hour, each scaled by a
// random factor in [0.5, 1) so that tasks failing together do not retry
// together.
func DefaultBackoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 20 {
		d = min(backoffBase<<(attempt-1), backoffMax)
	}
	return d/2 + rand.N(d/2)
}
