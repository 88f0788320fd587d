package api

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ListParams filters and pages a listing of tasks: GET /v1/tasks's query
// parameters. Zero fields are left to the server's defaults (every queue,
// kind and state; a page of 100 tasks).
type ListParams struct {
	Queue  string
	Kind   string
	States []string
	// Since and Until, when set, bound the creation time: at or after
	// Since, before Until.
	Since, Until time.Time
	// Order is "oldest" (the default when empty) or "newest".
	Order string
	Limit int
	// Cursor is the NextCursor of the previous page, listed in the same
	// order.
	Cursor string
}

// Query encodes p as the listing's query parameters, leaving out the zero
// fields.
func (p ListParams) Query() url.Values {
	q := url.Values{}
	if p.Queue != "" {
		q.Set("queue", p.Queue)
	}
	if p.Kind != "" {
		q.Set("kind", p.Kind)
	}
	if len(p.States) > 0 {
		q.Set("state", strings.Join(p.States, ","))
	}
	if !p.Since.IsZero() {
		q.Set("since", p.Since.UTC().Format(time.RFC3339Nano))
	}
	if !p.Until.IsZero() {
		q.Set("until", p.Until.UTC().Format(time.RFC3339Nano))
	}
	if p.Order != "" {
		q.Set("order", p.Order)
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	return q
}

// FeedParams selects the events of every task: GET /v1/events's query
// parameters.
type FeedParams struct {
	// After is the cursor: events with a greater seq.
	After int64
	// FromEnd starts at the end of the log (after=end), for a reader of
	// only what comes next; After is then ignored.
	FromEnd bool
	// Queue and Kind, when set, keep the events of tasks of that queue and
	// of that kind; Types, when not empty, those of these types.
	Queue string
	Kind  string
	Types []string
	// Follow keeps the feed open, waiting for more.
	Follow bool
}

// Query encodes p as GET /v1/events's query string, without the "?".
func (p FeedParams) Query() string {
	q := url.Values{}
	switch {
	case p.FromEnd:
		q.Set("after", "end")
	case p.After > 0:
		q.Set("after", strconv.FormatInt(p.After, 10))
	}
	if p.Queue != "" {
		q.Set("queue", p.Queue)
	}
	if p.Kind != "" {
		q.Set("kind", p.Kind)
	}
	if len(p.Types) > 0 {
		q.Set("type", strings.Join(p.Types, ","))
	}
	if p.Follow {
		q.Set("follow", "true")
	}
	return q.Encode()
}
