package api

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// LimitInput creates or replaces a limit (PUT /v1/limits/{name}; the name
// is the path's). At least one of Concurrency, Overrides and Rate is
// given; zero fields take the defaults (Burst 1 with a rate, OnLimit
// "queue").
type LimitInput struct {
	// Concurrency caps the tasks of one key that run at once.
	Concurrency int `json:"concurrency,omitempty"`
	// Overrides are per-key caps that beat Concurrency (0 stops a key).
	Overrides map[string]int `json:"overrides,omitempty"`
	// Rate allows Rate units per Period (a Go duration, "1m") for each
	// key, in bursts of at most Burst units.
	Rate   int    `json:"rate,omitempty"`
	Period string `json:"period,omitempty"`
	Burst  int    `json:"burst,omitempty"`
	// OnLimit is what a new task does when its key is at its cap: queue
	// (wait), reject (the enqueue is refused, 409 limit_reached),
	// cancel_in_progress (the key's running tasks are cancelled) or
	// keep_latest (an older pending task of the key is cancelled).
	OnLimit string `json:"on_limit,omitempty"`
}

// Limit is a stored limit with its totals.
type Limit struct {
	Name        string         `json:"name"`
	Concurrency int            `json:"concurrency,omitempty"`
	Overrides   map[string]int `json:"overrides,omitempty"`
	Rate        int            `json:"rate,omitempty"`
	Period      string         `json:"period,omitempty"`
	Burst       int            `json:"burst,omitempty"`
	OnLimit     string         `json:"on_limit"`
	// InUse counts the slots held by running tasks, over every key.
	InUse int `json:"in_use"`
	// Waiting counts the pending tasks set aside until their key has
	// room.
	Waiting int `json:"waiting"`
	// KeyCount counts the keys tasks have drawn on.
	KeyCount  int       `json:"key_count"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LimitDetail is a limit read alone (GET /v1/limits/{name}): with its
// totals and a page of its keys in use or with tasks waiting, those with
// the most waiting first. NextCursor, when set, reads the next page
// (?cursor=).
type LimitDetail struct {
	Limit
	Keys       []LimitKey `json:"keys"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// LimitKey is one key's counters under a limit.
type LimitKey struct {
	Key     string `json:"key"`
	InUse   int    `json:"in_use"`
	Cap     int    `json:"cap,omitempty"`
	Waiting int    `json:"waiting"`
	// NextAllowedAt is when the key's rate allows one more unit; absent
	// when it allows one now.
	NextAllowedAt *time.Time `json:"next_allowed_at,omitempty"`
}

// LimitList lists the limits by name.
type LimitList struct {
	Limits []Limit `json:"limits"`
}

// Fairness is a queue's fairness weights: each key's share of the
// queue's claims within one priority, relative to the others (a key not
// listed weighs 1).
type Fairness struct {
	Queue   string         `json:"queue"`
	Weights map[string]int `json:"weights"`
}

// FairnessInput sets the weights of the keys it names (PUT
// /v1/queues/{name}/fairness); a weight of 0 puts a key back to 1. Keys
// it does not name keep their weights.
type FairnessInput struct {
	Weights map[string]int `json:"weights"`
}

// BlockedReason says why a pending task is not being claimed.
type BlockedReason struct {
	// Reason is "limit" (its key of Limit is at its cap), "rate" (its key
	// of Limit is out of units until Until), "queue_paused" or
	// "no_matching_worker" (no live worker has the labels it requires).
	Reason string     `json:"reason"`
	Limit  string     `json:"limit,omitempty"`
	Key    string     `json:"key,omitempty"`
	Until  *time.Time `json:"until,omitempty"`
	// InUse and Cap are the key's slots in use and its cap, for a limit
	// reason, when they could be read.
	InUse *int `json:"in_use,omitempty"`
	Cap   *int `json:"cap,omitempty"`
}

// Describe says the reason in plain words, with times in loc.
func (b BlockedReason) Describe(loc *time.Location) string {
	switch b.Reason {
	case store.BlockedLimit:
		s := fmt.Sprintf("waiting for limit %s (key %s)", b.Limit, b.Key)
		switch {
		case b.InUse != nil && b.Cap != nil:
			s += fmt.Sprintf(": %d of %d in use", *b.InUse, *b.Cap)
		case b.Cap != nil:
			s += fmt.Sprintf(": its cap is %d", *b.Cap)
		}
		return s
	case store.BlockedRate:
		s := fmt.Sprintf("rate limit %s (key %s)", b.Limit, b.Key)
		if b.Until != nil {
			return s + " allows the next at " + b.Until.In(loc).Format(time.TimeOnly)
		}
		return s + " has no unit left"
	case store.BlockedQueuePaused:
		return "its queue is paused"
	case store.BlockedNoMatchingWorker:
		return "no live worker has the labels it requires"
	}
	return b.Reason
}

// FromLimit converts a limit with its totals.
func FromLimit(l store.LimitInfo) Limit {
	out := Limit{
		Name: l.Name, Concurrency: l.Concurrency, Overrides: l.Overrides, Rate: l.Rate, Burst: l.Burst,
		OnLimit: string(l.OnLimit), InUse: l.InUse, Waiting: l.Waiting, KeyCount: l.Keys,
		CreatedAt: l.CreatedAt.UTC(), UpdatedAt: l.UpdatedAt.UTC(),
	}
	if l.Period > 0 {
		out.Period = l.Period.String()
	}
	return out
}

// FromLimitKey converts one key's counters.
func FromLimitKey(k store.LimitKeyState) LimitKey {
	return LimitKey{Key: k.Key, InUse: k.InUse, Cap: k.Cap, Waiting: k.Waiting, NextAllowedAt: timePtr(k.NextAllowedAt)}
}

// ToLimit translates a limit for the store, which validates it (its
// errors name the fields as this input does); only a period that does not
// parse is refused here.
func ToLimit(name string, in LimitInput) (store.Limit, error) {
	period, err := duration(in.Period)
	if err != nil {
		return store.Limit{}, &FieldError{Status: 422, Field: "period", Message: err.Error()}
	}
	return store.Limit{Name: name, Concurrency: in.Concurrency, Overrides: in.Overrides, Rate: in.Rate,
		Period: period, Burst: in.Burst, OnLimit: store.OnLimit(in.OnLimit)}, nil
}

// FromBlocked converts a stored blocked reason; nil for none.
func FromBlocked(b *store.BlockedReason) *BlockedReason {
	if b == nil {
		return nil
	}
	return &BlockedReason{Reason: b.Reason, Limit: b.Limit, Key: b.Key, Until: timePtr(b.Until)}
}

// FromRequirements converts a task's requirements to the wire's map of
// label → expression; nil for none.
func FromRequirements(rs []store.Requirement) map[string]string {
	if len(rs) == 0 {
		return nil
	}
	out := make(map[string]string, len(rs))
	for _, r := range rs {
		out[r.Label] = r.String()
	}
	return out
}

// KeyValues spells a map of labels or limit keys as "k=v, k2=v2", by
// key; "" for none.
func KeyValues(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}

// RequirementsText spells a task's requirements (label → expression) as
// people and the CLI's --require write them, by label: "gpu=true,
// mem>=64".
func RequirementsText(rs map[string]string) string {
	parts := make([]string, 0, len(rs))
	for _, label := range slices.Sorted(maps.Keys(rs)) {
		expr := rs[label]
		if !strings.HasPrefix(expr, ">=") && !strings.HasPrefix(expr, "<=") {
			expr = "=" + expr
		}
		parts = append(parts, label+expr)
	}
	return strings.Join(parts, ", ")
}

// toRequirements parses a task's requirements, in label order so that
// the stored task is the same whatever the object's order; the error
// says which label is wrong.
func toRequirements(exprs map[string]string) ([]store.Requirement, error) {
	out := make([]store.Requirement, 0, len(exprs))
	for _, label := range slices.Sorted(maps.Keys(exprs)) {
		expr := strings.TrimSpace(exprs[label])
		if expr == "" {
			return nil, fmt.Errorf("label %q: the expression is empty (give a value, \">=n\" or \"<=n\")", label)
		}
		r, err := store.ParseRequirement(label, expr)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
