package httpapi

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// followFrames reads a followed stream's NDJSON lines into a channel,
// closed when the server ends the stream.
func followFrames(t *testing.T, a *testAPI, path string) <-chan api.Frame {
	t.Helper()
	resp, err := a.srv.Client().Get(a.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan api.Frame, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var f api.Frame
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Errorf("line %q: %v", sc.Bytes(), err)
				return
			}
			lines <- f
		}
	}()
	return lines
}

// within bounds waits for what must happen promptly; generous, for a
// loaded machine.
const within = 30 * time.Second

func nextFrame(t *testing.T, lines <-chan api.Frame) api.Frame {
	t.Helper()
	select {
	case f, ok := <-lines:
		if !ok {
			t.Fatal("the stream ended early")
		}
		return f
	case <-time.After(within):
		t.Fatalf("no frame within %s", within)
	}
	return api.Frame{}
}

func TestStreamWriteFollowAndEnd(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "s"}, &e)
	base := "/v1/tasks/" + e.ID
	// A follower that connects before anything was written.
	early := followFrames(t, a, base+"/stream?follow=true")
	var res api.TaskResult
	a.must(t, 202, "GET", base+"/result", nil, &res)
	if res.Final || res.State != "pending" {
		t.Fatalf("result of a pending task = %+v", res)
	}

	c := claimOne(t, a, "s")
	// JSON data is stored compacted, its keys in their order.
	body := `{"lease_token": "` + c.LeaseToken + `", "frames": [
		{"seq": 1, "kind": "text", "data": "hello\n"},
		{"seq": 2, "kind": "json", "data": { "b": 1, "a": [1, 2] }}]}`
	var first, again api.StreamResponse
	a.must(t, 200, "POST", base+"/stream", body, &first)
	if len(first.Frames) != 2 || first.Frames[0].Seq != 1 || first.Frames[0].Kind != "text" || first.Frames[1].Seq != 2 ||
		first.Frames[1].Kind != "json" || first.Frames[1].Attempt != 1 || first.Frames[0].At.IsZero() || first.Frames[1].Data != nil {
		t.Fatalf("stored frames = %+v; want 1 text and 2 json of attempt 1, without their data", first.Frames)
	}
	if f := nextFrame(t, early); f.Seq != 1 || f.Kind != "text" || string(f.Data) != `"hello\n"` {
		t.Fatalf("first followed frame = %+v", f)
	}
	if f := nextFrame(t, early); f.Seq != 2 || f.Kind != "json" || string(f.Data) != `{"b":1,"a":[1,2]}` {
		t.Fatalf("second followed frame = %+v", f)
	}
	// The same request again, as a worker that lost the answer retries
	// it: the frames as first stored, nothing new.
	a.must(t, 200, "POST", base+"/stream", body, &again)
	if len(again.Frames) != 2 || !again.Frames[1].At.Equal(first.Frames[1].At) || again.Frames[1].Seq != 2 {
		t.Fatalf("a retried append = %+v, want %+v", again.Frames, first.Frames)
	}

	// Refusals name the frame; a stale lease is lease_lost.
	frame := func(f map[string]any) map[string]any {
		return map[string]any{"lease_token": c.LeaseToken, "frames": []map[string]any{f}}
	}
	a.wantError(t, 422, api.CodeInvalid, "frames[0].kind", "POST", base+"/stream", frame(map[string]any{"kind": "xml", "data": "x"}))
	a.wantError(t, 422, api.CodeInvalid, "frames[0].data", "POST", base+"/stream", frame(map[string]any{"kind": "text", "data": 7}))
	a.wantError(t, 422, api.CodeInvalid, "frames[0].data", "POST", base+"/stream", frame(map[string]any{"kind": "text"}))
	a.wantError(t, 422, api.CodeInvalid, "frames[0].seq", "POST", base+"/stream", frame(map[string]any{"seq": 9, "kind": "text", "data": "x"}))
	a.wantError(t, 409, api.CodeConflict, "", "POST", base+"/stream", frame(map[string]any{"seq": 2, "kind": "text", "data": "not 2"}))
	a.wantError(t, 422, api.CodeInvalid, "frames", "POST", base+"/stream", map[string]any{"lease_token": c.LeaseToken, "frames": []any{}})
	a.wantError(t, 400, api.CodeBadRequest, "extra", "POST", base+"/stream", frame(map[string]any{"kind": "text", "data": "x", "extra": 1}))
	a.wantError(t, 400, api.CodeBadRequest, "lease_token", "POST", base+"/stream", map[string]any{"lease_token": "nope", "frames": []any{}})
	stale := leaseToken(e.ID, 99, time.Minute, false)
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", base+"/stream", map[string]any{"lease_token": stale, "frames": []map[string]any{{"kind": "text", "data": "x"}}})

	// A wait for the result is answered once the task completes.
	waited := make(chan api.TaskResult, 1)
	go func() {
		var r api.TaskResult
		status, b := a.do(t, "GET", base+"/result?wait=1m", nil)
		if status != 200 {
			t.Errorf("result?wait=1m = %d %s", status, b)
		}
		_ = json.Unmarshal(b, &r)
		waited <- r
	}()
	a.must(t, 200, "POST", base+"/complete", map[string]any{"lease_token": c.LeaseToken, "result": map[string]any{"pages": 3}}, nil)
	select {
	case r := <-waited:
		if !r.Final || r.State != "completed" || string(r.Result) != `{"pages":3}` || r.FinalizedAt == nil {
			t.Fatalf("waited result = %+v", r)
		}
	case <-time.After(within):
		t.Fatal("the wait for the result did not end at the completion")
	}
	if end := nextFrame(t, early); end.Kind != api.FrameEnd || end.State != "completed" || end.Seq != 0 {
		t.Fatalf("the end line = %+v", end)
	}
	select {
	case f, ok := <-early:
		if ok {
			t.Fatalf("a line after the end: %+v", f)
		}
	case <-time.After(within):
		t.Fatal("the followed stream did not close at its end")
	}

	// Afterwards: pages, a late follower, Server-Sent Events.
	var page api.FramePage
	a.must(t, 200, "GET", base+"/stream", nil, &page)
	if len(page.Frames) != 2 || page.End == nil || page.End.State != "completed" {
		t.Fatalf("page = %+v", page)
	}
	var one api.FramePage
	a.must(t, 200, "GET", base+"/stream?limit=1", nil, &one)
	if len(one.Frames) != 1 || one.End != nil {
		t.Fatalf("page of 1 = %+v", one)
	}
	late := followFrames(t, a, base+"/stream?follow=true&after=1")
	if f := nextFrame(t, late); f.Seq != 2 {
		t.Fatalf("late follower's first frame = %+v", f)
	}
	if f := nextFrame(t, late); f.Kind != api.FrameEnd {
		t.Fatalf("late follower's second line = %+v", f)
	}
	status, sse := a.do(t, "GET", base+"/stream", nil, "Accept", "text/event-stream", "Last-Event-ID", "1")
	if status != 200 || !strings.Contains(string(sse), "id: 2\nevent: json\ndata: {") || !strings.Contains(string(sse), "\n\nevent: end\ndata: {") || strings.Contains(string(sse), "id: 1\n") {
		t.Fatalf("SSE after 1 = %d %q", status, sse)
	}
	if status, _ := a.do(t, "GET", base+"/stream", nil, "Accept", "text/event-stream", "Last-Event-ID", "2"); status != 204 {
		t.Fatalf("SSE past the end = %d, want 204", status)
	}
	a.must(t, 200, "GET", base+"/result", nil, &res)
	if !res.Final {
		t.Fatalf("result of a completed task = %+v", res)
	}

	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", base+"/stream?follow=true&limit=5", nil)
	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", base+"/stream?limit=5000", nil)
	a.wantError(t, 400, api.CodeBadRequest, "after", "GET", base+"/stream?after=-3", nil)
	a.wantError(t, 400, api.CodeBadRequest, "since", "GET", base+"/stream?since=3", nil)
	a.wantError(t, 400, api.CodeBadRequest, "wait", "GET", base+"/result?wait=6m", nil)
	a.wantError(t, 400, api.CodeBadRequest, "wait", "GET", base+"/result?wait=soon", nil)
	a.wantError(t, 400, api.CodeBadRequest, "timeout", "GET", base+"/result?timeout=1s", nil)
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v1/tasks/nope/stream", nil)
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v1/tasks/nope/stream?follow=true", nil)
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v1/tasks/nope/result?wait=1s", nil)
}

// A wait that ends before the task does is answered 202 with the state,
// and a draining server answers waits and ends followed streams at once.
func TestResultWaitEndsAndDrains(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "s", "delay": "1h"}, &e)
	var res api.TaskResult
	a.must(t, 202, "GET", "/v1/tasks/"+e.ID+"/result?wait=20ms", nil, &res)
	if res.Final || res.State != "pending" || res.ID != e.ID {
		t.Fatalf("result after a short wait = %+v", res)
	}
	lines := followFrames(t, a, "/v1/tasks/"+e.ID+"/stream?follow=true")
	answered := make(chan int, 1)
	go func() {
		status, _ := a.do(t, "GET", "/v1/tasks/"+e.ID+"/result?wait=5m", nil)
		answered <- status
	}()
	a.api.Drain()
	select {
	case status := <-answered:
		if status != 202 {
			t.Fatalf("a wait answered by the drain = %d, want 202", status)
		}
	case <-time.After(within):
		t.Fatal("the drain did not answer a waiting request")
	}
	select {
	case f, ok := <-lines:
		if ok {
			t.Fatalf("a line from a stream ended by the drain: %+v", f)
		}
	case <-time.After(within):
		t.Fatal("the drain did not end a followed stream")
	}
}
