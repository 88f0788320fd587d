package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// TestFeed follows the events of every task, filtered, and resumes it
// from a cursor, as NDJSON and as Server-Sent Events.
func TestFeed(t *testing.T) {
	a := newTestAPI(t, Config{})
	var mail, other api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k", "queue": "mail"}, &mail)
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "j"}, &other)

	// Everything so far, with each event's queue and kind.
	status, body := a.do(t, "GET", "/v1/events", nil)
	evs := feedLines(t, string(body))
	if status != 200 || len(evs) != 2 || evs[0].TaskID != mail.ID || evs[0].Queue != "mail" || evs[0].Kind != "k" ||
		evs[1].TaskID != other.ID || evs[1].Queue != "default" || evs[1].Kind != "j" || evs[1].Seq <= evs[0].Seq {
		t.Fatalf("feed = %d %s", status, body)
	}

	// Followed, filtered to one queue: the other queue's events never come.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", a.srv.URL+"/v1/events?follow=true&queue=mail&type=started,completed", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan api.Event, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev api.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				lines <- ev
			}
		}
	}()
	next := func() api.Event {
		t.Helper()
		select {
		case ev := <-lines:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
		return api.Event{}
	}
	j := claimOne(t, a, "j") // default queue: filtered out
	a.must(t, 200, "POST", "/v1/tasks/"+other.ID+"/complete", map[string]any{"lease_token": j.LeaseToken}, nil)
	var claimed api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "queues": []string{"mail"}}, &claimed)
	if len(claimed.Tasks) != 1 {
		t.Fatalf("claimed %d tasks from mail, want 1", len(claimed.Tasks))
	}
	c := claimed.Tasks[0]
	if ev := next(); ev.Type != "started" || ev.TaskID != mail.ID || ev.Queue != "mail" {
		t.Fatalf("first followed event %+v, want mail's start", ev)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+mail.ID+"/complete", map[string]any{"lease_token": c.LeaseToken}, nil)
	last := next()
	if last.Type != "completed" || last.TaskID != mail.ID {
		t.Fatalf("second followed event %+v, want mail's completion", last)
	}

	// Resumed as Server-Sent Events after a cursor.
	status, body = a.do(t, "GET", "/v1/events?kind=j", nil, "Accept", "text/event-stream", "Last-Event-ID", itoa(evs[1].Seq))
	if status != 200 || strings.Contains(string(body), "event: created") || !strings.Contains(string(body), "event: started\n") ||
		!strings.Contains(string(body), "event: completed\n") || !strings.Contains(string(body), `"kind":"j"`) {
		t.Fatalf("SSE = %d %q", status, body)
	}
	status, body = a.do(t, "GET", "/v1/events?after="+itoa(last.Seq), nil)
	if status != 200 || len(body) != 0 {
		t.Fatalf("after the last event = %d %q", status, body)
	}

	// From the end: only what comes next.
	if status, body := a.do(t, "GET", "/v1/events?after=end", nil); status != 200 || len(body) != 0 {
		t.Fatalf("after=end = %d %q", status, body)
	}
	a.wantError(t, 400, api.CodeBadRequest, "after", "GET", "/v1/events?after=x", nil)
	if status, body := a.do(t, "GET", "/v1/events", nil, "Last-Event-ID", "-3"); status != 400 || !strings.Contains(string(body), `"field":"Last-Event-ID"`) {
		t.Errorf("a bad Last-Event-ID = %d %s", status, body)
	}
	a.wantError(t, 400, api.CodeBadRequest, "type", "GET", "/v1/events?type=finished", nil)
	a.wantError(t, 400, api.CodeBadRequest, "queue", "GET", "/v1/events?queue=9x", nil)
	a.wantError(t, 400, api.CodeBadRequest, "kind", "GET", "/v1/events?kind=a%20b", nil)
	a.wantError(t, 400, api.CodeBadRequest, "task", "GET", "/v1/events?task=x", nil)
}

func feedLines(t *testing.T, body string) []api.Event {
	t.Helper()
	var out []api.Event
	for line := range strings.Lines(body) {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}
