package api

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/weftworks/weft/store"
)

// MaxBatch bounds how many tasks one request may enqueue.
const MaxBatch = 10000

// FieldError is a problem with one field of a request, named by its JSON
// path ("tasks[2].delay"). Status says whether it is a malformed request
// (400) or well-formed input that fails validation (422).
type FieldError struct {
	Status  int
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ToNewTasks converts inputs to tasks for store.Prepare, checking what the
// store cannot: delay and run_at, the timeout, the batch size. prefix is
// the JSON path of the list ("tasks") or "" for a single task. Validation
// errors from the store are mapped back to paths by FieldOf.
func ToNewTasks(in []TaskInput, prefix string, now time.Time) ([]store.NewTask, error) {
	if len(in) == 0 {
		return nil, &FieldError{Status: 422, Field: prefix, Message: "the batch is empty"}
	}
	if len(in) > MaxBatch {
		return nil, &FieldError{Status: 413, Field: prefix, Message: fmt.Sprintf("%d tasks exceeds the limit of %d per batch", len(in), MaxBatch)}
	}
	out := make([]store.NewTask, len(in))
	for i, t := range in {
		path := func(f string) string { return fieldPath(prefix, i, f) }
		nt := store.NewTask{
			Kind: t.Kind, Queue: t.Queue, Args: t.Args, Priority: t.Priority,
			MaxAttempts: t.MaxAttempts, UniqueKey: t.UniqueKey, Metadata: t.Metadata,
		}
		if string(bytes.TrimSpace(nt.Metadata)) == "null" {
			// null means absent here, as for every other field.
			nt.Metadata = nil
		}
		switch {
		case t.Delay != "" && t.RunAt != nil:
			return nil, &FieldError{Status: 422, Field: path("delay"), Message: "give delay or run_at, not both"}
		case t.Delay != "":
			d, err := time.ParseDuration(t.Delay)
			if err != nil {
				return nil, &FieldError{Status: 422, Field: path("delay"), Message: fmt.Sprintf("%q is not a duration (for example \"90s\" or \"1h30m\")", t.Delay)}
			}
			if d < 0 {
				return nil, &FieldError{Status: 422, Field: path("delay"), Message: fmt.Sprintf("%s is negative", t.Delay)}
			}
			nt.RunAt = now.Add(d)
		case t.RunAt != nil:
			nt.RunAt = *t.RunAt
			if nt.RunAt.IsZero() {
				nt.RunAt = now
			}
		}
		if t.Timeout != "" {
			d, err := time.ParseDuration(t.Timeout)
			if err != nil || d <= 0 {
				return nil, &FieldError{Status: 422, Field: path("timeout"), Message: fmt.Sprintf("%q is not a positive duration", t.Timeout)}
			}
			nt.AttemptTimeout = d
		}
		out[i] = nt
	}
	return out, nil
}

// FieldOf maps a store validation error of a batch converted by
// ToNewTasks with the same prefix to the JSON path of the offending field.
// (Prepare reports a batch of one with index -1.)
func FieldOf(v *store.ValidationError, prefix string) string {
	field := v.Field
	if field == "attempt_timeout" {
		field = "timeout"
	}
	return fieldPath(prefix, max(v.Index, 0), field)
}

func fieldPath(prefix string, i int, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "[" + strconv.Itoa(i) + "]." + field
}
