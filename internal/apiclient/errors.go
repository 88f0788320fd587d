package apiclient

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/weftworks/weft/internal/api"
)

// Sentinel errors, matched by errors.Is against an *Error's code, so that
// callers need not compare code strings.
var (
	// ErrNotFound: the task, flow, limit or route does not exist (404
	// not_found, flow_not_found or limit_not_found).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the task's or flow's state forbids the request, for
	// example cancelling a finished task (409 conflict, or
	// already_finished for a flow), or a limit refused an enqueue (409
	// limit_reached).
	ErrConflict = errors.New("conflict")
	// ErrLeaseLost: a worker's lease token is stale (409 lease_lost); the
	// attempt must stop without reporting.
	ErrLeaseLost = errors.New("lease lost")
	// ErrUnauthorized: the bearer token is missing or wrong (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrInvalid: the request was malformed (400 bad_request) or
	// well-formed but invalid (422 invalid).
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable: the server is shutting down or its backend is down
	// (503); the request may succeed later.
	ErrUnavailable = errors.New("unavailable")
	// ErrTooLarge: the request, or what it would make (a stream, a task's
	// signals), is over its bound (413).
	ErrTooLarge = errors.New("too large")
	// ErrUnreachable: no connection could be made to the server.
	ErrUnreachable = errors.New("server unreachable")
)

// Error is an error response of the API: the HTTP status and the
// api.ErrorBody the server sent. Responses that were not the API's JSON
// (a proxy's HTML page, say) get a code derived from the status and the
// start of the body as message.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
}

// Error reads like "422 invalid: tasks[1].kind: must not be empty".
func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Code)
	if e.Code == "" {
		s = fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	switch {
	case e.Field != "" && e.Message != "":
		return s + ": " + e.Field + ": " + e.Message
	case e.Message != "":
		return s + ": " + e.Message
	case e.Field != "":
		return s + ": " + e.Field
	}
	return s
}

// Is matches the sentinel errors by code, so errors.Is(err, ErrNotFound)
// works on any wrapped *Error.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == api.CodeNotFound || e.Code == api.CodeFlowNotFound || e.Code == api.CodeLimitNotFound
	case ErrConflict:
		return e.Code == api.CodeConflict || e.Code == api.CodeAlreadyFinished || e.Code == api.CodeLimitReached
	case ErrLeaseLost:
		return e.Code == api.CodeLeaseLost
	case ErrUnauthorized:
		return e.Code == api.CodeUnauthorized
	case ErrInvalid:
		return e.Code == api.CodeInvalid || e.Code == api.CodeBadRequest
	case ErrUnavailable:
		return e.Code == api.CodeUnavailable
	case ErrTooLarge:
		return e.Code == api.CodeTooLarge
	}
	return false
}

// OutcomeErr is the error that refused one outcome of a batch report, an
// *Error that errors.Is matches as it matches the answer of a single
// complete or fail (ErrLeaseLost, ErrNotFound, ErrInvalid), or nil when
// the outcome was recorded.
func OutcomeErr(r api.OutcomeResult) error {
	if r.Error == nil {
		return nil
	}
	return &Error{Status: api.StatusForCode(r.Error.Code), Code: r.Error.Code, Message: r.Error.Message, Field: r.Error.Field}
}

// UnreachableError says that no connection could be made to the server
// and what to check. It matches ErrUnreachable and unwraps to the dial
// error.
type UnreachableError struct {
	// Server is the base URL that was tried.
	Server string
	// Err is the dial (or DNS) error.
	Err error
}

// Error names the server, the cause, and the usual fixes.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the Weft server at %s (%v): is `weft serve` running? (set --server or WEFT_SERVER)",
		e.Server, rootCause(e.Err))
}

// Unwrap returns the dial error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// rootCause unwraps single-error chains to the innermost error, whose text
// ("connection refused", "no such host") is what a person needs; the
// layers above it repeat the address.
func rootCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}
