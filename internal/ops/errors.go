package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

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
// conflicts but needs its own code: a worker must stop rather than retry.
func ProblemOf(err error) Problem {
	var (
		fe *api.FieldError
		ve *store.ValidationError
		mb *http.MaxBytesError
	)
	switch {
	case errors.As(err, &fe):
		return problem(fe.Status, fe.Field, fe.Message)
	case errors.As(err, &mb):
		return problem(http.StatusRequestEntityTooLarge, "", fmt.Sprintf("request body exceeds %d bytes", mb.Limit))
	case errors.As(err, &ve):
		return problem(http.StatusUnprocessableEntity, ve.Field, ve.Message)
	case errors.Is(err, store.ErrInvalid):
		return problem(http.StatusUnprocessableEntity, "", err.Error())
	case errors.Is(err, store.ErrNotFound):
		return problem(http.StatusNotFound, "", err.Error())
	case errors.Is(err, store.ErrLeaseLost):
		p := problem(http.StatusConflict, "lease_token", "the lease is no longer held: the task was rescued, cancelled or finished; stop working on it")
		p.Body.Code = api.CodeLeaseLost
		return p
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrAlreadyFinished):
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
