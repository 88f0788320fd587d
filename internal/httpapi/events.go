package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// sseKeepAlive is how often an idle Server-Sent Events stream sends a
// comment, so proxies do not close it.
const sseKeepAlive = 15 * time.Second

// events streams a task's events after a cursor as NDJSON, or as
// Server-Sent Events when the client accepts text/event-stream. With
// follow=true the stream stays open until the task is terminal and its
// terminal event was sent.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	s.streamEvents(w, r, s.ops.Events)
}

// streamEvents serves the event stream that open opens for the id in the
// path: a task's or a flow's.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, open func(ctx context.Context, id string, after int64, follow bool) (*ops.EventStream, error)) {
	id := r.PathValue("id")
	q := r.URL.Query()
	afterS, afterField := q.Get("after"), "after"
	if afterS == "" {
		// An EventSource reconnecting resumes where it left off.
		afterS, afterField = r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	}
	after, follow, err := eventParams(afterS, afterField, q.Get("follow"))
	if err == nil {
		for key := range q {
			if key != "after" && key != "follow" {
				err = &api.FieldError{Status: http.StatusBadRequest, Field: key, Message: fmt.Sprintf("unknown query parameter %q (after, follow)", key)}
			}
		}
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	ctx := r.Context()
	stream, err := open(ctx, id, after, follow)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse && stream.Exhausted(ctx) {
		// 204 tells an EventSource to stop reconnecting.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	lastWrite := time.Now()
	for page, err := range stream.Pages(ctx) {
		if err != nil {
			// The status is sent: a failure can only end the stream.
			// A client that went away, or a task or flow purged while
			// followed, is no server trouble.
			if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrFlowNotFound) {
				s.log.Warn("weft: event stream read failed", "path", r.URL.Path, "err", err)
			}
			return
		}
		for _, e := range page {
			if err := writeEvent(w, e, sse); err != nil {
				return
			}
		}
		switch {
		case len(page) > 0:
			_ = rc.Flush()
			lastWrite = time.Now()
		case sse && time.Since(lastWrite) >= sseKeepAlive:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			_ = rc.Flush()
			lastWrite = time.Now()
		}
	}
}

// writeEvent writes one event as an NDJSON line or a Server-Sent Event.
func writeEvent(w io.Writer, e api.Event, sse bool) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %d: %w", e.Seq, err)
	}
	if sse {
		_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, b)
	} else {
		_, err = fmt.Fprintf(w, "%s\n", b)
	}
	return err
}

func eventParams(afterS, afterField, followS string) (int64, bool, error) {
	var after int64
	if afterS != "" {
		n, err := strconv.ParseInt(afterS, 10, 64)
		if err != nil || n < 0 {
			return 0, false, &api.FieldError{Status: http.StatusBadRequest, Field: afterField, Message: fmt.Sprintf("%q is not an event sequence number (0 or more)", afterS)}
		}
		after = n
	}
	follow := false
	if followS != "" {
		b, err := strconv.ParseBool(followS)
		if err != nil {
			return 0, false, &api.FieldError{Status: http.StatusBadRequest, Field: "follow", Message: fmt.Sprintf("%q is not true or false", followS)}
		}
		follow = b
	}
	return after, follow, nil
}
