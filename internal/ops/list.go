package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Page sizes of List. MaxPage is no larger than what either backend
// returns in one call (sqlite.MaxListLimit, postgres.MaxListLimit), so a
// full page always means that there may be more.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

// ParseListQuery reads GET /v1/tasks's query parameters (api.ListParams'
// Query is its inverse): queue, kind, state (comma-separated), since and
// until (RFC 3339 times), order, limit and cursor. List checks the values.
func ParseListQuery(q url.Values) (api.ListParams, error) {
	for key := range q {
		switch key {
		case "queue", "kind", "state", "since", "until", "order", "limit", "cursor":
		default:
			return api.ListParams{}, badRequest(key, "unknown query parameter %q (queue, kind, state, since, until, order, limit, cursor)", key)
		}
	}
	p := api.ListParams{Queue: q.Get("queue"), Kind: q.Get("kind"), Order: q.Get("order"), Cursor: q.Get("cursor")}
	for _, bound := range []struct {
		name string
		dst  *time.Time
	}{{"since", &p.Since}, {"until", &p.Until}} {
		if v := q.Get(bound.name); v != "" {
			t, err := parseTime(v)
			if err != nil {
				return p, badRequest(bound.name, "%s", err)
			}
			*bound.dst = t
		}
	}
	if v := q.Get("state"); v != "" {
		p.States = strings.Split(v, ",")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		// An explicit 0 is refused here, since in api.ListParams it means
		// "not given".
		if err != nil || !validLimit(n) {
			return p, badLimit(v)
		}
		p.Limit = n
	}
	return p, nil
}

// List reads one page of tasks in creation order, oldest or newest first.
// Limit is the page size,
// 1 to MaxPage, 0 meaning DefaultPage. NextCursor is set on a full page,
// so the last page may come back empty.
func (s *Service) List(ctx context.Context, p api.ListParams) (api.TaskList, error) {
	sp, err := storeParams(p)
	if err != nil {
		return api.TaskList{}, err
	}
	tasks, err := s.b.List(ctx, sp)
	if err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			// What the store still refuses is a parameter (the order of
			// the time range): a malformed request, as above.
			return api.TaskList{}, badRequest(listField(ve.Field), "%s", ve.Message)
		}
		return api.TaskList{}, err
	}
	out := api.TaskList{Tasks: make([]api.Task, len(tasks))}
	for i, t := range tasks {
		out.Tasks[i] = api.FromTask(t)
	}
	if len(tasks) == sp.Limit {
		out.NextCursor = tasks[len(tasks)-1].ID
	}
	return out, nil
}

// storeParams checks p and converts it for the store.
func storeParams(p api.ListParams) (store.ListParams, error) {
	sp := store.ListParams{Queue: p.Queue, Kind: p.Kind, After: p.Cursor, Limit: p.Limit,
		CreatedSince: p.Since, CreatedUntil: p.Until, Order: store.ListOrder(p.Order)}
	switch sp.Order {
	case "", store.ListOldest, store.ListNewest:
	default:
		return sp, badRequest("order", "%q is not an order (oldest or newest)", p.Order)
	}
	if p.Queue != "" && !store.ValidName(p.Queue) {
		return sp, badRequest("queue", "%q is not a valid queue name", p.Queue)
	}
	if p.Kind != "" && !store.ValidName(p.Kind) {
		return sp, badRequest("kind", "%q is not a valid kind name", p.Kind)
	}
	if p.Cursor != "" {
		// Cursors are task ids, and every id is a UUID (store.Prepare
		// checks): anything else would silently list nothing, or on
		// PostgreSQL be text it cannot compare.
		if _, err := uuid.Parse(p.Cursor); err != nil {
			return sp, badRequest("cursor", "%q is not a cursor: pass the next_cursor of a previous page (a task id)", p.Cursor)
		}
	}
	for _, name := range p.States {
		st := store.State(strings.TrimSpace(name))
		if !st.Valid() {
			return sp, badRequest("state", "%q is not a state (%s)", name, store.StateNames(store.States(), ", "))
		}
		sp.States = append(sp.States, st)
	}
	switch {
	case p.Limit == 0:
		sp.Limit = DefaultPage
	case !validLimit(p.Limit):
		return sp, badLimit(strconv.Itoa(p.Limit))
	}
	return sp, nil
}

func validLimit(n int) bool { return n >= 1 && n <= MaxPage }

func badLimit(v string) error {
	return badRequest("limit", "%q is not a number from 1 to %d", v, MaxPage)
}

// badRequest is a malformed parameter: a 400 naming it.
func badRequest(field, format string, args ...any) error {
	return &api.FieldError{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// listField names, as the listing's query spells it, a parameter the
// store refused.
func listField(field string) string {
	switch field {
	case "created_since":
		return "since"
	case "created_until":
		return "until"
	case "states":
		return "state"
	}
	return field
}

// parseTime reads an RFC 3339 time, as the API's query parameters and
// filters give times.
func parseTime(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (for example 2030-01-02T15:04:05Z)", v)
	}
	return t, nil
}
