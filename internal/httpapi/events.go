package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// eventPage bounds one read of the event log.
const eventPage = 500

// sseKeepAlive is how often an idle Server-Sent Events stream sends a
// comment, so proxies do not close it.
const sseKeepAlive = 15 * time.Second

// events streams a task's events after a cursor as NDJSON, or as
// Server-Sent Events when the client accepts text/event-stream. With
// follow=true the stream stays open until the task is terminal and its
// terminal event was sent.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
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
	// Reading the task first turns an unknown id into a 404 rather than an
	// empty stream.
	task, err := s.st.Get(ctx, id)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse && task.State.Terminal() {
		// A finished task with nothing after the cursor: 204 tells an
		// EventSource to stop reconnecting.
		if evs, err := s.st.Events(ctx, id, after, 1); err == nil && len(evs) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
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
	send := func(e store.Event) error {
		b, err := json.Marshal(api.FromEvent(e))
		if err != nil {
			return err
		}
		if sse {
			_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, b)
		} else {
			_, err = fmt.Fprintf(w, "%s\n", b)
		}
		return err
	}
	poll := time.NewTicker(s.cfg.EventPoll)
	defer poll.Stop()
	lastWrite := time.Now()
	for {
		// The terminal state and its event commit together, so once the
		// task reads terminal, one more read of the log has everything.
		terminal := task.State.Terminal()
		for {
			evs, err := s.st.Events(ctx, id, after, eventPage)
			if err != nil {
				s.log.Warn("weft: event stream read failed", "task", id, "err", err)
				return
			}
			for _, e := range evs {
				if err := send(e); err != nil {
					return
				}
				after = e.Seq
			}
			if len(evs) > 0 {
				_ = rc.Flush()
				lastWrite = time.Now()
			}
			if len(evs) < eventPage {
				break
			}
		}
		if !follow || terminal {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.drained:
			return
		case <-poll.C:
		}
		if sse && time.Since(lastWrite) >= sseKeepAlive {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			_ = rc.Flush()
			lastWrite = time.Now()
		}
		if task, err = s.st.Get(ctx, id); err != nil {
			// Purged by retention while followed: the stream has ended.
			return
		}
	}
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
