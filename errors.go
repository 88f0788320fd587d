package weft

import (
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: no task has the given id.
	ErrNotFound = store.ErrNotFound
	// ErrLeaseLost: the attempt's lease is gone (it expired and the task
	// was rescued, or re-claimed); the attempt's writes are refused and its
	// context is cancelled with this cause.
	ErrLeaseLost = store.ErrLeaseLost
	// ErrAlreadyFinished: the task is already completed, failed or
	// cancelled.
	ErrAlreadyFinished = store.ErrAlreadyFinished
	// ErrConflict: the task's state forbids the request (for example
	// retrying a task that is still running).
	ErrConflict = store.ErrConflict
	// ErrInvalid: the input was rejected; the error is a *ValidationError.
	ErrInvalid = store.ErrInvalid
	// ErrTooLarge: the input passed a documented bound (a frame over
	// 1 MiB, a task's output stream over 16 MiB, ...); it comes with
	// ErrInvalid.
	ErrTooLarge = store.ErrTooLarge
	// ErrCancelRequested is the context cause seen by a handler whose task
	// was cancelled while it ran.
	ErrCancelRequested = engine.ErrCancelRequested
	// ErrShutdown is the context cause seen by a handler still running when
	// a graceful stop's grace period ends; its task goes back to pending
	// without spending the attempt.
	ErrShutdown = engine.ErrShutdown
	// ErrAttemptTimeout is the context cause seen by a handler that ran
	// past its attempt timeout.
	ErrAttemptTimeout = engine.ErrAttemptTimeout
	// ErrTxUnsupported: the client's backend cannot enqueue in a
	// transaction of the given type.
	ErrTxUnsupported = store.ErrTxUnsupported
	// ErrLimitNotFound: no limit has the given name.
	ErrLimitNotFound = store.ErrLimitNotFound
	// ErrLimitReached: an enqueue was refused by a limit whose OnLimit is
	// OnLimitReject, its key being at its concurrency cap; the error is a
	// *LimitReachedError naming the limit and the key.
	ErrLimitReached = store.ErrLimitReached
)

// ValidationError says which input was wrong and why; it wraps ErrInvalid.
type ValidationError = store.ValidationError

// LimitReachedError says which limit and key refused an enqueue, and how
// many of the key's slots were in use; it wraps ErrLimitReached.
type LimitReachedError = store.LimitReachedError

// PermanentError fails a task at once, whatever attempts remain. Return
// Permanent(err) from a worker.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying: the task fails now.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

// SnoozeError puts a task back to sleep without spending its attempt.
// Return Snooze(d) from a worker.
type SnoozeError struct{ Delay time.Duration }

func (e *SnoozeError) Error() string { return fmt.Sprintf("snoozed for %s", e.Delay) }

// Snooze runs the task again after d, without counting this attempt.
func Snooze(d time.Duration) error {
	return &SnoozeError{Delay: max(d, 0)}
}

// RateLimitedError puts a task back to pending because an upstream
// refused it for its rate (an HTTP 429): the attempt is not spent, and the
// task's rate limits are held back for every task until the delay ends.
// Return RateLimited(d) from a worker.
type RateLimitedError struct{ Delay time.Duration }

func (e *RateLimitedError) Error() string { return fmt.Sprintf("rate limited for %s", e.Delay) }

// RateLimited runs the task again after d, like Snooze, and holds back
// every key of the task's rate limits (EnqueueOpts.Limits) until then:
// no task of those keys starts before d has passed, on any node. Give
// the upstream's Retry-After as d.
func RateLimited(d time.Duration) error {
	return &RateLimitedError{Delay: max(d, 0)}
}

// CancelError ends a task cancelled. Return Cancel(err) from a worker.
type CancelError struct{ Err error }

func (e *CancelError) Error() string { return "cancelled: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *CancelError) Unwrap() error { return e.Err }

// Cancel ends the task in the cancelled state, recording err as the reason.
func Cancel(err error) error {
	if err == nil {
		err = errors.New("cancelled by its worker")
	}
	return &CancelError{Err: err}
}

// RetryError retries a task after a delay the worker chose, instead of the
// kind's backoff; the attempt is spent. Return RetryAfter(err, d).
type RetryError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry in %s: %v", e.Delay, e.Err) }

// Unwrap returns the underlying error.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter fails this attempt with err and runs the task again after d
// (for example what an HTTP Retry-After header asked for), while attempts
// remain. A non-positive d uses the kind's backoff.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &RetryError{Err: err, Delay: max(d, 0)}
}

// verdict classifies a worker's return value.
func verdict(err error, result []byte) engine.Verdict {
	var (
		wait   *WaitError
		snooze *SnoozeError
		rated  *RateLimitedError
		perm   *PermanentError
		cancel *CancelError
		retry  *RetryError
	)
	switch {
	case err == nil:
		return engine.Verdict{Action: engine.Complete, Result: result}
	case errors.As(err, &wait):
		return engine.Verdict{Action: engine.Wait, Wait: wait.For.spec(), Err: err}
	case errors.As(err, &snooze):
		return engine.Verdict{Action: engine.Snooze, Delay: snooze.Delay, Err: err}
	case errors.As(err, &rated):
		return engine.Verdict{Action: engine.Snooze, Delay: rated.Delay, Err: err, RateLimited: true}
	case errors.As(err, &perm):
		return engine.Verdict{Action: engine.Fail, Err: err}
	case errors.As(err, &cancel):
		return engine.Verdict{Action: engine.Cancel, Err: err}
	case errors.As(err, &retry):
		return engine.Verdict{Action: engine.Retry, Delay: retry.Delay, Err: err}
	default:
		return engine.Verdict{Action: engine.Retry, Err: err}
	}
}
