package api

import (
	"net/url"
	"strconv"
	"strings"
)

// ListParams filters and pages a listing of tasks: GET /v1/tasks's query
// parameters. Zero fields are left to the server's defaults (every queue,
// kind and state; a page of 100 tasks).
type ListParams struct {
	Queue  string
	Kind   string
	States []string
	Limit  int
	// Cursor is the NextCursor of the previous page.
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
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	return q
}
