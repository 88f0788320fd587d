package store

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers check with errors.Is.
var (
	// ErrNotFound: no task has the given id.
	ErrNotFound = errors.New("task not found")
	// ErrLeaseLost: a worker write named an epoch that is no longer the
	// task's current lease (the task was rescued, cancelled or re-claimed).
	ErrLeaseLost = errors.New("lease lost")
	// ErrAlreadyFinished: the task is already in a terminal state.
	ErrAlreadyFinished = errors.New("task already finished")
	// ErrInvalid: the input was rejected; the error is a *ValidationError
	// naming the task and field.
	ErrInvalid = errors.New("invalid input")
	// ErrConflict: the request conflicts with the task's current state (for
	// example retrying a task that is still running).
	ErrConflict = errors.New("conflicts with the task's state")
	// ErrStorageFull: the database's disk (or quota) is full. Nothing of
	// the failed write was stored; writes succeed again once space returns.
	ErrStorageFull = errors.New("database storage is full")
	// ErrReadOnly: the database cannot be written (a read-only file system
	// or a read-only server). Nothing of the failed write was stored.
	ErrReadOnly = errors.New("database is read-only")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrFlowNotFound: no flow has the given id.
	ErrFlowNotFound = errors.New("flow not found")
	// ErrTooLarge: a request holds more than a documented bound allows
	// (tasks in a batch, members in a flow); it comes with ErrInvalid.
	ErrTooLarge = errors.New("request too large")
	// ErrTxUnsupported: the backend cannot enqueue in a transaction of the
	// given type.
	ErrTxUnsupported = errors.New("backend does not support transactions of this type")
)

// ValidationError says which input was wrong and why. It wraps ErrInvalid.
type ValidationError struct {
	// Index is the position of the offending task in its batch, or -1 when
	// the input was not part of a batch.
	Index int
	// Field is the name of the offending field (for example "kind").
	Field string
	// Message says what is wrong with it.
	Message string
	// TooLarge marks input refused for its size: the error then also
	// matches ErrTooLarge.
	TooLarge bool
}

func (e *ValidationError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("invalid task %d: %s: %s", e.Index, e.Field, e.Message)
	}
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Message)
}

// Unwrap makes errors.Is(err, ErrInvalid) true, and errors.Is(err,
// ErrTooLarge) when the input was too large.
func (e *ValidationError) Unwrap() []error {
	if e.TooLarge {
		return []error{ErrInvalid, ErrTooLarge}
	}
	return []error{ErrInvalid}
}

// TaskResult is the return of an operation on one task that may be refused
// with refusal while still reporting the task (a Cancel of a finished
// task, a Retry of a running one): the task with a refusal, nil with any
// other error, the task alone on success.
func TaskResult(t *Task, err, refusal error) (*Task, error) {
	switch {
	case err == nil:
		return t, nil
	case errors.Is(err, refusal):
		return t, err
	}
	return nil, err
}
