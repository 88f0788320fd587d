// Package ops is the one implementation of the operator actions and reads
// that Weft offers outside a Go program: enqueueing, reading and listing
// tasks, cancelling, retrying, deleting and running them now (one by one
// or in bulk), following their events, flows of dependent tasks, queue
// statistics, pausing and resuming, schedules, and the worker registry.
// The HTTP API server (internal/httpapi) and the CLI's direct --database
// mode (internal/cli) both call it, so that validation, page sizes, the
// follow loop and the answer to every error cannot drift apart between
// them.
//
// The service speaks the API's wire types (internal/api). Its errors are
// the store's sentinels, *api.FieldError for bad input, and context
// errors; ProblemOf says how the API answers each.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/weftworks/weft"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/tracing"
	"github.com/weftworks/weft/store"
)

// Backend is what the service needs of a store: its writes and reads,
// and its wakeups, which prompt the feed of every task's events.
type Backend interface {
	store.Enqueuer
	store.Reader
	store.Operator
	Subscribe() (ch <-chan struct{}, stop func())
	store.Scheduler
	// Nodes and RemoteWorkers are the worker registry's reads
	// (store.Coordinator).
	Nodes(ctx context.Context) ([]store.Node, error)
	RemoteWorkers(ctx context.Context) ([]store.RemoteWorker, error)
	store.Flows
	store.Streams
	store.Limiter
}

// Config tunes a Service.
type Config struct {
	// Poll is how often a followed event stream reads the log again;
	// default DefaultPoll.
	Poll time.Duration
	// Done, when closed, ends every followed event stream as if it had
	// caught up, so that a draining server does not wait for them; their
	// clients resume elsewhere from their cursor. Followed output streams
	// end the same way, and waits for results answer at once.
	Done <-chan struct{}
	// StreamPoll is how often a followed output stream, or a wait for a
	// result, reads again when nothing signalled it; default
	// DefaultStreamPoll. The store's signals (store.Streams.WatchFrames)
	// wake it before that.
	StreamPoll time.Duration
	// TracerProvider traces enqueues (tracing.StartEnqueue); default
	// OpenTelemetry's global provider.
	TracerProvider trace.TracerProvider
}

// DefaultPoll is Config.Poll's default.
const DefaultPoll = 100 * time.Millisecond

// DefaultStreamPoll is Config.StreamPoll's default: a safety net, since
// appends and final transitions signal followers.
const DefaultStreamPoll = time.Second

// Service carries out operator actions on a backend. It is safe for
// concurrent use.
type Service struct {
	b          Backend
	poll       time.Duration
	streamPoll time.Duration
	done       <-chan struct{}
	tp         trace.TracerProvider
}

// New returns the service for b.
func New(b Backend, cfg Config) *Service {
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.StreamPoll <= 0 {
		cfg.StreamPoll = DefaultStreamPoll
	}
	return &Service{b: b, poll: cfg.Poll, streamPoll: cfg.StreamPoll, done: cfg.Done, tp: cfg.TracerProvider}
}

// Enqueue stores one task. A duplicate (same unique key) comes back with
// Duplicate set and the existing task's id.
func (s *Service) Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error) {
	res, err := s.enqueue(ctx, []api.TaskInput{in}, "")
	if err != nil {
		return api.Enqueued{}, err
	}
	return res[0], nil
}

// EnqueueBatch stores tasks atomically: all of them or, when any is
// invalid, none, with the error's field naming it ("tasks[2].kind").
func (s *Service) EnqueueBatch(ctx context.Context, in []api.TaskInput) (api.BatchEnqueued, error) {
	res, err := s.enqueue(ctx, in, "tasks")
	if err != nil {
		return api.BatchEnqueued{}, err
	}
	return api.BatchEnqueued{Tasks: res}, nil
}

// enqueue converts with internal/api and stores; prefix is the JSON path
// of the list, so that a store validation error names its field as the
// request spelled it.
func (s *Service) enqueue(ctx context.Context, in []api.TaskInput, prefix string) ([]api.Enqueued, error) {
	tasks, err := api.ToNewTasks(in, prefix)
	if err != nil {
		return nil, err
	}
	ctx, end := tracing.StartEnqueue(ctx, s.tp, tasks)
	res, err := s.b.Enqueue(ctx, tasks)
	end(err)
	if err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			return nil, &api.FieldError{Status: http.StatusUnprocessableEntity, Field: api.FieldOf(ve, prefix), Message: ve.Message}
		}
		return nil, err
	}
	out := make([]api.Enqueued, len(res))
	for i, r := range res {
		out[i] = api.Enqueued{ID: r.ID, Duplicate: r.Duplicate}
	}
	return out, nil
}

// Get reads one task; store.ErrNotFound when there is none. A pending
// task carries a hint when nothing will run it, and its blocked reason
// when something holds it back (see Explain).
func (s *Service) Get(ctx context.Context, id string) (api.Task, error) {
	t, err := s.b.Get(ctx, id)
	if err != nil {
		return api.Task{}, err
	}
	out := api.FromTask(t)
	if t.State == store.StatePending {
		if out.Hint, out.BlockedReason, err = s.Explain(ctx, t); err != nil {
			return api.Task{}, err
		}
	}
	return out, nil
}

// Cancel cancels a pending task at once, or requests the cancellation of
// a running one. A task that already finished is a conflict
// (store.ErrConflict), returned with the task as it is.
func (s *Service) Cancel(ctx context.Context, id string) (api.Task, error) {
	t, err := s.b.Cancel(ctx, id)
	if errors.Is(err, store.ErrAlreadyFinished) && t != nil {
		// Cancelling what has ended is refused like any other request the
		// task's state forbids, so clients handle one conflict.
		err = fmt.Errorf("%w: task %s is already %s", store.ErrConflict, t.ID, t.State)
	}
	return taskResult(t, err)
}

// Retry makes a failed, cancelled or skipped task pending again. Any
// other state is a conflict (store.ErrConflict), returned with the task.
func (s *Service) Retry(ctx context.Context, id string) (api.Task, error) {
	return taskResult(s.b.Retry(ctx, id))
}

// taskResult converts the task a store call returned, which a refusal
// may carry along with its error.
func taskResult(t *store.Task, err error) (api.Task, error) {
	if t == nil {
		return api.Task{}, err
	}
	return api.FromTask(t), err
}

// storageRetryAfter is how long a client is asked to wait after a write
// refused for a full or read-only database: long enough for an operator
// or an autoscaler to act, short enough that work resumes soon after.
const storageRetryAfter = 30 * time.Second

// Problem is how the API answers an error.
type Problem struct {
	// Status is the HTTP status.
	Status int
	// Body is the error response's code, message and field.
	Body api.ErrorBody
	// RetryAfter, when positive, is how long until the same request may
	// succeed, for a Retry-After header.
	RetryAfter time.Duration
	// Internal marks an error the API does not explain: its text may
	// carry database details, so Body says only that it happened, and the
	// error itself belongs in the server's log.
	Internal bool
}

// ProblemOf says how the API answers err: the one mapping of errors to
// statuses, used by the server for every response and by the CLI's direct
// mode, so that both report an error alike. The code follows the status
// (api.CodeForStatus), except for a stale lease, which shares 409 with
// conflicts but needs its own code: a worker must stop rather than retry;
// and for flows, whose unknown id (flow_not_found) and end
// (already_finished) are told apart from a task's, a closed waitpoint,
// which a sender tells apart from a finished task, and limits: an unknown
// name (limit_not_found) and an enqueue a reject limit refused
// (limit_reached, naming the limit and the key).
func ProblemOf(err error) Problem {
	var (
		fe *api.FieldError
		ve *store.ValidationError
		mb *http.MaxBytesError
		lr *store.LimitReachedError
	)
	switch {
	case errors.As(err, &fe):
		return problem(fe.Status, fe.Field, fe.Message)
	case errors.As(err, &mb):
		return problem(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds %d bytes", mb.Limit))
	case errors.As(err, &ve) && errors.Is(err, store.ErrTooLarge):
		return problem(http.StatusRequestEntityTooLarge, ve.Field, ve.Message)
	case errors.As(err, &ve):
		return problem(http.StatusUnprocessableEntity, ve.Field, ve.Message)
	case errors.Is(err, store.ErrInvalid):
		return problem(http.StatusUnprocessableEntity, "", err.Error())
	case errors.As(err, &lr):
		return limitReached(lr)
	case errors.Is(err, store.ErrLimitNotFound):
		p := problem(http.StatusNotFound, "", err.Error())
		p.Body.Code = api.CodeLimitNotFound
		return p
	case errors.Is(err, store.ErrFlowNotFound):
		p := problem(http.StatusNotFound, "", err.Error())
		p.Body.Code = api.CodeFlowNotFound
		return p
	case errors.Is(err, weft.ErrInvalidToken):
		// One answer, whatever was wrong: tokens cannot be probed.
		return problem(http.StatusNotFound, "token", InvalidTokenMessage)
	case errors.Is(err, store.ErrNotFound):
		return problem(http.StatusNotFound, "", err.Error())
	case errors.Is(err, store.ErrLeaseLost):
		p := problem(http.StatusConflict, "lease_token", "the lease is no longer held: the task was rescued, cancelled or finished; stop working on it")
		p.Body.Code = api.CodeLeaseLost
		return p
	case errors.Is(err, store.ErrWaitpointClosed):
		p := problem(http.StatusConflict, "", err.Error())
		p.Body.Code = api.CodeWaitpointClosed
		return p
	case errors.Is(err, store.ErrAlreadyFinished):
		// Only a flow's cancel answers it as such: Cancel makes a task's
		// a conflict.
		p := problem(http.StatusConflict, "", err.Error())
		p.Body.Code = api.CodeAlreadyFinished
		return p
	case errors.Is(err, store.ErrConflict):
		return problem(http.StatusConflict, "", err.Error())
	case errors.Is(err, store.ErrStorageFull), errors.Is(err, store.ErrReadOnly):
		// Not the request's fault, and nothing was written: the same
		// request succeeds once the database can take writes again.
		p := problem(http.StatusServiceUnavailable, "", err.Error())
		p.RetryAfter = storageRetryAfter
		return p
	case errors.Is(err, store.ErrClosed):
		return problem(http.StatusServiceUnavailable, "", "the server is shutting down")
	case errors.Is(err, context.Canceled):
		return problem(http.StatusServiceUnavailable, "", "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return problem(http.StatusServiceUnavailable, "", "request timed out")
	}
	p := problem(http.StatusInternalServerError, "", "internal error; the server log has the details")
	p.Internal = true
	return p
}

func problem(status int, field, msg string) Problem {
	return Problem{Status: status, Body: api.ErrorBody{Code: api.CodeForStatus(status), Message: msg, Field: field}}
}
