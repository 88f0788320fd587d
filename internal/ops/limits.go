package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Page sizes of a limit's keys.
const (
	DefaultKeyPage = 100
	MaxKeyPage     = 1000
)

// Limits lists every limit with its totals, by name.
func (s *Service) Limits(ctx context.Context) (api.LimitList, error) {
	ls, err := s.b.ListLimits(ctx)
	if err != nil {
		return api.LimitList{}, err
	}
	out := api.LimitList{Limits: make([]api.Limit, len(ls))}
	for i, l := range ls {
		out.Limits[i] = api.FromLimit(l)
	}
	return out, nil
}

// KeyPage selects a page of a limit's keys: GET /v1/limits/{name}'s query.
type KeyPage struct {
	// Cursor is the next_cursor of the previous page; "" for the first.
	Cursor string
	// Limit is the page size, 1 to MaxKeyPage; 0 means DefaultKeyPage.
	Limit int
}

// ParseKeyPage reads ?cursor= and ?limit= (a 400 naming the parameter
// when malformed).
func ParseKeyPage(q url.Values) (KeyPage, error) {
	p := KeyPage{Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxKeyPage {
			return p, badRequest("limit", "%q is not a number from 1 to %d", v, MaxKeyPage)
		}
		p.Limit = n
	}
	return p, nil
}

// Limit reads the limit name with its totals and a page of its keys, those
// with the most tasks waiting first; store.ErrLimitNotFound when there is
// none.
func (s *Service) Limit(ctx context.Context, name string, page KeyPage) (api.LimitDetail, error) {
	if err := checkLimitName(name); err != nil {
		return api.LimitDetail{}, err
	}
	switch {
	case page.Limit == 0:
		page.Limit = DefaultKeyPage
	case page.Limit < 1 || page.Limit > MaxKeyPage:
		return api.LimitDetail{}, badRequest("limit", "%d is not a number from 1 to %d", page.Limit, MaxKeyPage)
	}
	info, err := s.b.GetLimit(ctx, name)
	if err != nil {
		return api.LimitDetail{}, err
	}
	keys, next, err := s.b.LimitKeyStates(ctx, name, page.Cursor, page.Limit)
	if err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			// Only the cursor can be wrong here, and it is a parameter.
			return api.LimitDetail{}, badRequest("cursor", "%q is not a cursor: pass the next_cursor of a previous page", page.Cursor)
		}
		return api.LimitDetail{}, err
	}
	out := api.LimitDetail{Limit: api.FromLimit(info), Keys: make([]api.LimitKey, len(keys)), NextCursor: next}
	for i, k := range keys {
		out.Keys[i] = api.FromLimitKey(k)
	}
	return out, nil
}

// SetLimit creates or replaces the limit name and returns it as stored,
// with its totals. Invalid values are a 422 naming the field (concurrency,
// overrides, rate, period, burst, on_limit).
func (s *Service) SetLimit(ctx context.Context, name string, in api.LimitInput) (api.Limit, error) {
	if err := checkLimitName(name); err != nil {
		return api.Limit{}, err
	}
	l, err := api.ToLimit(name, in)
	if err != nil {
		return api.Limit{}, err
	}
	if l, err = store.PrepareLimit(l); err != nil {
		return api.Limit{}, err
	}
	if _, err := s.b.SetLimit(ctx, l); err != nil {
		return api.Limit{}, err
	}
	info, err := s.b.GetLimit(ctx, name)
	if err != nil {
		return api.Limit{}, err
	}
	return api.FromLimit(info), nil
}

// DeleteLimit removes the limit name and returns it as it was; tasks that
// name it no longer wait for it. store.ErrLimitNotFound when there is
// none.
func (s *Service) DeleteLimit(ctx context.Context, name string) (api.Limit, error) {
	if err := checkLimitName(name); err != nil {
		return api.Limit{}, err
	}
	info, err := s.b.GetLimit(ctx, name)
	if err != nil {
		return api.Limit{}, err
	}
	if err := s.b.DeleteLimit(ctx, name); err != nil {
		return api.Limit{}, err
	}
	return api.FromLimit(info), nil
}

// Fairness reads the fairness weights of queue other than the default.
func (s *Service) Fairness(ctx context.Context, queue string) (api.Fairness, error) {
	if !store.ValidName(queue) {
		return api.Fairness{}, badRequest("name", "%q is not a valid queue name", queue)
	}
	w, err := s.b.Fairness(ctx, queue)
	if err != nil {
		return api.Fairness{}, err
	}
	if w == nil {
		w = map[string]int{}
	}
	return api.Fairness{Queue: queue, Weights: w}, nil
}

// SetFairness sets the weights of the keys in.Weights names (0 puts a
// key back to the default, 1) and returns the queue's weights as they
// now are. Bad weights are a 422 naming the field weights.
func (s *Service) SetFairness(ctx context.Context, queue string, in api.FairnessInput) (api.Fairness, error) {
	if !store.ValidName(queue) {
		return api.Fairness{}, badRequest("name", "%q is not a valid queue name", queue)
	}
	if in.Weights == nil {
		return api.Fairness{}, &api.FieldError{Status: http.StatusUnprocessableEntity, Field: "weights", Message: `must be an object of key → weight, as {"acme": 3}`}
	}
	if err := s.b.SetFairness(ctx, queue, in.Weights); err != nil {
		return api.Fairness{}, err
	}
	return s.Fairness(ctx, queue)
}

// checkLimitName refuses a name no limit can have. It is the request's
// path: a malformed request (400), as a queue's or a schedule's name is.
func checkLimitName(name string) error {
	if !store.ValidName(name) {
		return badRequest("name", "%q is not a valid limit name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", name, store.MaxNameLength)
	}
	return nil
}

// limitReached is the 409 of an enqueue a reject limit refused, its field
// the refused task's limits.
func limitReached(lr *store.LimitReachedError) Problem {
	field := "limits"
	if lr.Index >= 0 {
		field = fmt.Sprintf("tasks[%d].limits", lr.Index)
	}
	p := problem(http.StatusConflict, field, lr.Error())
	p.Body.Code = api.CodeLimitReached
	return p
}

// keyScanPages bounds the pages of a limit's keys read to find one key's
// slots in use for a blocked reason: keys with tasks waiting come first,
// and a task set aside waits on its key, so it is found early.
const keyScanPages = 2

// limitCounts adds to a limit reason its key's cap and, when found among
// the busiest keys, its slots in use. A limit deleted since leaves the
// reason as it is.
func (s *Service) limitCounts(ctx context.Context, b *api.BlockedReason) error {
	if b.Reason != store.BlockedLimit {
		return nil
	}
	info, err := s.b.GetLimit(ctx, b.Limit)
	if errors.Is(err, store.ErrLimitNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	capacity := info.Cap(b.Key)
	b.Cap = &capacity
	cursor := ""
	for range keyScanPages {
		keys, next, err := s.b.LimitKeyStates(ctx, b.Limit, cursor, MaxKeyPage)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Key == b.Key {
				inUse := k.InUse
				b.InUse = &inUse
				return nil
			}
		}
		if next == "" {
			// Every key was read: one without a row holds no slot.
			none := 0
			b.InUse = &none
			return nil
		}
		cursor = next
	}
	return nil
}
