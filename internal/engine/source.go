package engine

import (
	"context"
	"encoding/json"
	"time"

	"github.com/weftworks/weft/store"
)

// Source is where an engine's tasks come from and where what became of
// them goes: the store, for an engine in the process that owns it
// (Config.Store), or a Weft server's HTTP API, for `weft worker`
// (Config.Source). Whatever the source, the engine runs handlers the same
// way: attempt timeouts, panic recovery, lease renewal that cancels a
// handler whose lease is lost or whose task was cancelled, and a graceful
// stop that hands unfinished tasks back without spending their attempt.
//
// Its methods are safe for concurrent use, except Finish, which the engine
// calls from one goroutine at a time.
type Source interface {
	// Claim leases ready tasks to req.Owner, as store.Runner.Claim does.
	// A source that is not a Notifier waits in Claim, for a while, until a
	// task is ready (a long poll): the engine claims again as soon as a
	// claim returns with slots to spare, and cancels ctx when it stops.
	Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Task, error)
	// ExtendLeases extends the leases owner holds from this source and
	// returns those still held, with whether their cancellation was
	// requested. A task missing from the answer has been lost: its handler
	// is cancelled with store.ErrLeaseLost. An error means nothing is known;
	// handlers then run on until their leases would have expired.
	ExtendLeases(ctx context.Context, owner string, ttl time.Duration) ([]store.Lease, error)
	// Progress appends a progress event under the task's epoch; it fails
	// with store.ErrLeaseLost once the lease is gone.
	Progress(ctx context.Context, taskID string, epoch int64, data json.RawMessage) error
	// Finish records finished attempts and says, for each, what it did (as
	// store.Runner.Finish does). An error means some were not recorded: the
	// engine calls Finish again later with the same attempts, so a source
	// that records them one by one must skip those it already recorded.
	Finish(ctx context.Context, attempts []Finished) ([]store.FinishResult, error)
}

// Notifier is implemented by a source that can tell when work may have
// become ready, as the store can: the engine then sleeps between claims
// until told, or until the next delayed task is due, and hears of
// cancellations as soon as they are requested rather than at the next
// lease renewal. The methods are store.Runner's.
type Notifier interface {
	Subscribe() (ch <-chan struct{}, stop func())
	NextRunAt(ctx context.Context, queues, kinds []string) (t time.Time, ok bool, err error)
	CancelRequests(ctx context.Context, owner string) ([]string, error)
}

// Starter is implemented by a source that can record when a handler
// starts, as the store can (store.Runner.Started). The engine then claims
// with StartLater and ahead of its free workers, into local run queues, and
// reports each start as its handler begins: a task waiting in a run queue
// does not look started. A source without it (a server's claims start the
// task) gets claims for free slots only.
type Starter interface {
	Started(ctx context.Context, starts []store.Start) error
}

// FlowSource is implemented by a source whose tasks may be members of
// flows, as the store is: a handler reads its parents' outcomes and adds
// members to its flow through it.
type FlowSource interface {
	Parents(ctx context.Context, taskID string) ([]store.ParentOutcome, error)
	AddMembers(ctx context.Context, taskID string, epoch int64, members []store.NewFlowMember) (store.FlowResult, error)
}

// WaitSource is implemented by a source whose tasks may wait on
// signals, as the store is: a handler creates waitpoints and reads them
// through it.
type WaitSource interface {
	CreateWaitpoint(ctx context.Context, taskID string, epoch int64, wp store.NewWaitpoint) (store.Waitpoint, error)
	Waitpoints(ctx context.Context, taskID string) ([]store.Waitpoint, error)
}

// TokenSource is implemented by a WaitSource whose waitpoints' tokens are
// signed where they are stored — a server, with keys its remote workers do
// not have — rather than by the process that runs the handler: it answers
// the token it was given for a waitpoint of the task it created or read.
type TokenSource interface {
	WaitpointToken(taskID, waitpointID string) (token string, ok bool)
}

// StreamSource is implemented by a source that stores tasks' output
// streams, as the store does and a server's API does: a handler appends
// frames under its lease through it.
type StreamSource interface {
	AppendFrames(ctx context.Context, taskID string, epoch int64, frames []store.NewFrame) ([]store.Frame, error)
}

// Finished is one finished attempt, as the engine hands it to its source.
type Finished struct {
	// Outcome is what the engine decided the attempt records, with the
	// kind's backoff: the store's transition.
	Outcome store.Outcome
	// Task, Verdict and Cause are what Outcome was decided from: the task
	// as claimed, its handler's verdict, and why the handler's context was
	// cancelled, if it was. A source that decides for itself (a server, by
	// the retry policies it knows) records these instead of Outcome.
	Task    *store.Task
	Verdict Verdict
	Cause   error
	// Began is when the attempt's handler began; zero when it never ran.
	Began time.Time
}

// storeSource is the source of an engine in the process that owns the
// store: the store itself, recording the engine's outcomes.
type storeSource struct {
	store.Runner
	flows   store.Flows
	waits   store.Waits
	streams store.Streams
	// outcomes is Finish's buffer, reused from batch to batch: Finish is
	// not called concurrently.
	outcomes []store.Outcome
}

func (s *storeSource) Parents(ctx context.Context, taskID string) ([]store.ParentOutcome, error) {
	if s.flows == nil {
		return nil, ErrNoFlows
	}
	return s.flows.Parents(ctx, taskID)
}

func (s *storeSource) AddMembers(ctx context.Context, taskID string, epoch int64, members []store.NewFlowMember) (store.FlowResult, error) {
	if s.flows == nil {
		return store.FlowResult{}, ErrNoFlows
	}
	return s.flows.AddMembers(ctx, taskID, epoch, members)
}

func (s *storeSource) CreateWaitpoint(ctx context.Context, taskID string, epoch int64, wp store.NewWaitpoint) (store.Waitpoint, error) {
	if s.waits == nil {
		return store.Waitpoint{}, ErrNoWaits
	}
	return s.waits.CreateWaitpoint(ctx, taskID, epoch, wp)
}

func (s *storeSource) Waitpoints(ctx context.Context, taskID string) ([]store.Waitpoint, error) {
	if s.waits == nil {
		return nil, ErrNoWaits
	}
	return s.waits.Waitpoints(ctx, taskID)
}

func (s *storeSource) AppendFrames(ctx context.Context, taskID string, epoch int64, frames []store.NewFrame) ([]store.Frame, error) {
	if s.streams == nil {
		return nil, ErrNoStreams
	}
	return s.streams.AppendFrames(ctx, taskID, epoch, frames)
}

func (s *storeSource) Finish(ctx context.Context, batch []Finished) ([]store.FinishResult, error) {
	for i := range batch {
		s.outcomes = append(s.outcomes, batch[i].Outcome)
	}
	res, err := s.Runner.Finish(ctx, s.outcomes)
	clear(s.outcomes) // drop references to results until reuse
	s.outcomes = s.outcomes[:0]
	return res, err
}
