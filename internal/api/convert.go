package api

import (
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

// ToNewTasks translates inputs for the store, which validates them with
// the same rules as every other entry path. Only what the store cannot see
// is refused here: durations and label requirements that do not parse,
// and more tasks than one request may carry. prefix is the JSON path of the list ("tasks") or ""
// for a single task; the store's validation errors are mapped back to
// paths by FieldOf.
func ToNewTasks(in []TaskInput, prefix string) ([]store.NewTask, error) {
	if len(in) > MaxBatch {
		return nil, &FieldError{Status: 413, Field: prefix, Message: fmt.Sprintf("%d tasks exceeds the limit of %d per batch", len(in), MaxBatch)}
	}
	out := make([]store.NewTask, len(in))
	for i, t := range in {
		var err error
		if out[i], err = toNewTask(t, prefix, i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// toNewTask translates the task at index i of the list at prefix.
func toNewTask(t TaskInput, prefix string, i int) (store.NewTask, error) {
	nt := store.NewTask{
		Kind: t.Kind, Queue: t.Queue, Args: t.Args, Priority: t.Priority,
		MaxAttempts: t.MaxAttempts, UniqueKey: t.UniqueKey, Metadata: t.Metadata,
		LimitKeys: t.Limits, Cost: t.Cost, FairnessKey: t.FairnessKey,
	}
	if t.RunAt != nil {
		nt.RunAt = *t.RunAt
	}
	var err error
	if nt.Delay, err = duration(t.Delay); err != nil {
		return nt, &FieldError{Status: 422, Field: fieldPath(prefix, i, "delay"), Message: err.Error()}
	}
	if nt.AttemptTimeout, err = duration(t.Timeout); err != nil {
		return nt, &FieldError{Status: 422, Field: fieldPath(prefix, i, "timeout"), Message: err.Error()}
	}
	if len(t.Requires) > 0 {
		if nt.Requires, err = toRequirements(t.Requires); err != nil {
			return nt, &FieldError{Status: 422, Field: fieldPath(prefix, i, "requires"), Message: err.Error()}
		}
	}
	return nt, nil
}

// duration parses an optional duration field; absent is zero, which the
// store reads as "none".
func duration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (for example \"90s\" or \"1h30m\")", s)
	}
	return d, nil
}

// FieldOf maps a store validation error of a batch converted by
// ToNewTasks with the same prefix to the JSON path of the offending field.
// (Prepare reports a batch of one with index -1, and the batch itself —
// when it is empty — as the field "tasks", the list's own path.)
func FieldOf(v *store.ValidationError, prefix string) string {
	if v.Field == "tasks" {
		return v.Field
	}
	return fieldPath(prefix, max(v.Index, 0), v.Field)
}

func fieldPath(prefix string, i int, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "[" + strconv.Itoa(i) + "]." + field
}
