package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Bulk applies one action to every task the request selects, batch by
// batch (store.MaxBulkBatch tasks per transaction), and answers the
// totals. Everything is validated before the first batch, so a refused
// request writes nothing. Should a later batch fail, the batches before
// it stay written, and the error says how far the action got.
func (s *Service) Bulk(ctx context.Context, req api.BulkRequest) (api.BulkResult, error) {
	p, err := bulkParams(req)
	if err != nil {
		return api.BulkResult{}, err
	}
	out := api.BulkResult{Action: req.Action, DryRun: req.DryRun}
	for {
		res, err := s.b.Bulk(ctx, p)
		if err != nil {
			var ve *store.ValidationError
			if errors.As(err, &ve) {
				return api.BulkResult{}, &api.FieldError{Status: http.StatusUnprocessableEntity, Field: bulkField(ve.Field), Message: ve.Message}
			}
			if out.Matched > 0 {
				return api.BulkResult{}, fmt.Errorf("%s stopped after %d tasks matched and %d changed: %w", req.Action, out.Matched, out.Changed, err)
			}
			return api.BulkResult{}, err
		}
		out.Matched += res.Matched
		out.Changed += res.Changed
		if res.Next == "" {
			return out, nil
		}
		p.After = res.Next
	}
}

// bulkParams checks what the store cannot see — the request's shape, its
// ids and times — and converts it.
func bulkParams(req api.BulkRequest) (store.BulkParams, error) {
	invalid := func(field, format string, args ...any) error {
		return &api.FieldError{Status: http.StatusUnprocessableEntity, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	// The store checks the action and the filter's values before it reads
	// anything.
	p := store.BulkParams{Action: store.BulkAction(req.Action), DryRun: req.DryRun}
	switch {
	case req.Filter != nil && req.IDs != nil:
		return p, invalid("ids", "give filter or ids, not both")
	case req.Filter == nil && req.IDs == nil:
		return p, invalid("filter", "select the tasks: give filter (an object of queue, kind, states, since, until; {} selects every task) or ids")
	case req.IDs != nil:
		if len(req.IDs) == 0 {
			return p, invalid("ids", "the list is empty")
		}
		if len(req.IDs) > api.MaxBulkIDs {
			return p, &api.FieldError{Status: http.StatusRequestEntityTooLarge, Field: "ids", Message: fmt.Sprintf("%d ids exceeds the limit of %d per request", len(req.IDs), api.MaxBulkIDs)}
		}
		// Ids are stored in their canonical form; one given otherwise (in
		// capitals, say) still names its task.
		p.Filter.IDs = make([]string, len(req.IDs))
		for i, id := range req.IDs {
			u, err := uuid.Parse(id)
			if err != nil {
				return p, invalid(fmt.Sprintf("ids[%d]", i), "%q is not a task id", id)
			}
			p.Filter.IDs[i] = u.String()
		}
		return p, nil
	}
	f := req.Filter
	p.Filter = store.TaskFilter{Queue: f.Queue, Kind: f.Kind}
	for _, name := range f.States {
		p.Filter.States = append(p.Filter.States, store.State(name))
	}
	for _, bound := range []struct {
		field, value string
		dst          *time.Time
	}{{"since", f.Since, &p.Filter.CreatedSince}, {"until", f.Until, &p.Filter.CreatedUntil}} {
		if bound.value == "" {
			continue
		}
		t, err := parseTime(bound.value)
		if err != nil {
			return p, invalid("filter."+bound.field, "%s", err)
		}
		*bound.dst = t
	}
	return p, nil
}

// bulkField names, as the request spells it, a field the store refused.
func bulkField(field string) string {
	switch field {
	case "queue", "kind", "states":
		return "filter." + field
	case "created_since":
		return "filter.since"
	case "created_until":
		return "filter.until"
	}
	return field
}

// DeleteTask deletes a finished task and its events, and returns the task
// as it was. An unfinished task is a conflict: cancel it first.
func (s *Service) DeleteTask(ctx context.Context, id string) (api.Task, error) {
	t, err := s.b.Get(ctx, id)
	if err != nil {
		return api.Task{}, err
	}
	if !t.State.Terminal() {
		return api.FromTask(t), fmt.Errorf("%w: task %s is %s; only finished tasks (%s) can be deleted: cancel it first",
			store.ErrConflict, id, t.State, store.StateNames(store.TerminalStates(), ", "))
	}
	res, err := s.b.Bulk(ctx, store.BulkParams{Action: store.BulkDelete, Filter: store.TaskFilter{IDs: []string{id}}})
	if err != nil {
		return api.Task{}, err
	}
	if res.Changed == 0 {
		// Retried or deleted by someone else since it was read.
		now, err := s.b.Get(ctx, id)
		if err != nil {
			return api.Task{}, err
		}
		return api.FromTask(now), fmt.Errorf("%w: task %s is %s now; only finished tasks can be deleted", store.ErrConflict, id, now.State)
	}
	return api.FromTask(t), nil
}

// RunTask makes a pending task that is scheduled for later ready now, and
// returns it; a pending task that is ready already is returned as it is.
// A task in any other state is a conflict.
func (s *Service) RunTask(ctx context.Context, id string) (api.Task, error) {
	t, err := s.b.Get(ctx, id)
	if err != nil {
		return api.Task{}, err
	}
	if t.State != store.StatePending {
		return api.FromTask(t), fmt.Errorf("%w: task %s is %s, not pending: only a pending task can be run now", store.ErrConflict, id, t.State)
	}
	if _, err := s.b.Bulk(ctx, store.BulkParams{Action: store.BulkRunNow, Filter: store.TaskFilter{IDs: []string{id}}}); err != nil {
		return api.Task{}, err
	}
	return s.Get(ctx, id)
}
