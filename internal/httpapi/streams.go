package httpapi

import (
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

// appendStream appends a remote worker's frames to its task's stream,
// under the lease token of its claim.
func (s *Server) appendStream(w http.ResponseWriter, r *http.Request) {
	var req api.StreamRequest
	if err := decode(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		s.respondErr(w, r, err)
		return
	}
	id := r.PathValue("id")
	l, err := parseLeaseToken(id, req.LeaseToken)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	frames, err := api.ToNewFrames(req.Frames)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	stored, err := s.st.AppendFrames(r.Context(), id, l.epoch, frames)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	// The frames go back without their data, which the worker has.
	out := api.StreamResponse{Frames: make([]api.Frame, len(stored))}
	for i, f := range stored {
		out.Frames[i] = api.Frame{Seq: f.Seq, Attempt: f.Attempt, At: f.At.UTC(), Kind: string(f.Kind)}
	}
	writeJSON(w, http.StatusOK, out)
}

// readStream reads a task's output stream: one page as JSON by default; with
// follow=true, every frame after the cursor as NDJSON until the end line;
// as Server-Sent Events when the client accepts text/event-stream (always
// followed, resuming after Last-Event-ID).
func (s *Server) readStream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	afterS, afterField := q.Get("after"), "after"
	if afterS == "" {
		// An EventSource reconnecting resumes where it left off.
		afterS, afterField = r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	}
	_, follow, err := eventParams("", afterField, q.Get("follow"))
	follow = follow || sse
	var after int64
	if err == nil && afterS != "" {
		if after, err = strconv.ParseInt(afterS, 10, 64); err != nil || after < 0 {
			err = badField(afterField, "%q is not a frame sequence number (0 or more)", afterS)
		}
	}
	limit := 0
	if err == nil && q.Has("limit") {
		if follow {
			err = badField("limit", "a followed stream has no pages: give limit without follow")
		} else if limit, err = strconv.Atoi(q.Get("limit")); err != nil {
			err = badField("limit", "%q is not a number", q.Get("limit"))
		}
	}
	if err == nil {
		for key := range q {
			if key != "after" && key != "follow" && key != "limit" {
				err = &api.FieldError{Status: http.StatusBadRequest, Field: key, Message: fmt.Sprintf("unknown query parameter %q (after, limit, follow)", key)}
			}
		}
	}
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	ctx := r.Context()
	if !follow {
		s.answer(w, r)(s.ops.Frames(ctx, id, after, limit))
		return
	}
	stream, err := s.ops.FollowFrames(ctx, id, after)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	if sse && stream.Ended() {
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
	// The headers go out now: a stream followed before its task wrote
	// anything may have nothing to send for a long while.
	_ = rc.Flush()
	lastWrite := time.Now()
	for page, err := range stream.Pages(ctx) {
		if err != nil {
			// The status is sent: a failure can only end the stream.
			if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) {
				s.log.Warn("weft: output stream read failed", "task", id, "err", err)
			}
			return
		}
		for _, f := range page {
			if err := writeFrame(w, f, sse); err != nil {
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

// writeFrame writes one frame as an NDJSON line or a Server-Sent Event:
// the event's type is the frame's kind and its id the frame's Seq, which
// the end, having none, does not carry.
func writeFrame(w io.Writer, f api.Frame, sse bool) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode frame %d: %w", f.Seq, err)
	}
	switch {
	case sse && f.Kind == api.FrameEnd:
		_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", f.Kind, b)
	case sse:
		_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", f.Seq, f.Kind, b)
	default:
		_, err = fmt.Fprintf(w, "%s\n", b)
	}
	return err
}

// result answers a task's outcome, waiting up to ?wait= for it to be
// final: 200 once it is, 202 with the task's state as it stands when the
// wait ends first.
func (s *Server) result(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for key := range q {
		if key != "wait" {
			s.respondErr(w, r, &api.FieldError{Status: http.StatusBadRequest, Field: key, Message: fmt.Sprintf("unknown query parameter %q (wait)", key)})
			return
		}
	}
	wait, err := durationField("wait", q.Get("wait"), 0, 0, ops.MaxResultWait)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	res, err := s.ops.Result(r.Context(), r.PathValue("id"), wait)
	if err != nil {
		s.respondErr(w, r, err)
		return
	}
	status := http.StatusOK
	if !res.Final {
		status = http.StatusAccepted
	}
	writeJSON(w, status, res)
}
