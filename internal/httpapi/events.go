package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
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
	s.stream(w, r, stream.Pages(ctx), sse, "path", r.URL.Path)
}

// stream writes pages of events as NDJSON or Server-Sent Events until
// pages ends, flushing each page, and keeps an idle SSE stream alive. The
// pair (logKey, logValue) names the stream in the log of a failed read.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, pages iter.Seq2[[]api.Event, error], sse bool, logKey, logValue string) {
	ctx := r.Context()
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The headers go out at once: a followed stream may have nothing to
	// send for a long time, and its client is waiting for them.
	_ = rc.Flush()
	lastWrite := time.Now()
	for page, err := range pages {
		if err != nil {
			// The status is sent: a failure can only end the stream.
			// A client that went away, or a task or flow purged while
			// followed, is no server trouble.
			if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrFlowNotFound) {
				s.log.Warn("weft: event stream read failed", logKey, logValue, "err", err)
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

// feed streams the events of every task after a cursor, filtered by
// queue, kind and event type, as NDJSON or Server-Sent Events; with
// follow=true the stream stays open, waiting for more.
func (s *Server) feed(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	afterS, afterField := q.Get("after"), "after"
	if afterS == "" {
		// An EventSource reconnecting resumes where it left off.
		afterS, afterField = r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	}
	fromEnd := afterS == "end"
	if fromEnd {
		afterS = ""
	}
	after, follow, err := eventParams(afterS, afterField, q.Get("follow"))
	if err == nil {
		for key := range q {
			switch key {
			case "after", "follow", "queue", "kind", "type":
			default:
				err = &api.FieldError{Status: http.StatusBadRequest, Field: key, Message: fmt.Sprintf("unknown query parameter %q (after, follow, queue, kind, type)", key)}
			}
		}
	}
	var feed *ops.Feed
	if err == nil {
		var types []string
		for _, v := range q["type"] {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					types = append(types, t)
				}
			}
		}
		feed, err = s.ops.Feed(api.FeedParams{After: after, FromEnd: fromEnd, Queue: q.Get("queue"), Kind: q.Get("kind"), Types: types, Follow: follow})
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	s.stream(w, r, feed.Pages(r.Context()), sse, "feed", r.URL.RawQuery)
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
