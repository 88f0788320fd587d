package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// serve starts a test server running h and a client for it with token.
func serve(t *testing.T, token string, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return New(srv.URL+"/", token, srv.Client())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiErr(w http.ResponseWriter, status int, code, field, msg string) {
	writeJSON(w, status, api.Error{Error: api.ErrorBody{Code: code, Field: field, Message: msg}})
}

func TestEnqueueSendsTaskAndToken(t *testing.T) {
	c := serve(t, "s3cret", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/tasks" {
			t.Errorf("request = %s %s, want POST /v1/tasks", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer s3cret" {
			t.Errorf("Authorization = %q", got)
		}
		if got := r.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
		var in api.TaskInput
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			t.Errorf("decode body: %v", err)
		}
		if in.Kind != "email" || string(in.Args) != `{"to":"a@example.com"}` || in.Delay != "10s" {
			t.Errorf("body = %+v", in)
		}
		writeJSON(w, http.StatusCreated, api.Enqueued{ID: "id-1"})
	})
	res, err := c.Enqueue(context.Background(), api.TaskInput{Kind: "email", Args: json.RawMessage(`{"to":"a@example.com"}`), Delay: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "id-1" || res.Duplicate {
		t.Fatalf("res = %+v", res)
	}
}

func TestNoTokenNoAuthorizationHeader(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Authorization"]; ok {
			t.Errorf("Authorization sent without a token")
		}
		w.WriteHeader(http.StatusOK)
	})
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueBatchDuplicates(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		var in api.BatchInput
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Tasks) != 2 {
			t.Errorf("batch body: %v %+v", err, in)
		}
		writeJSON(w, http.StatusOK, api.BatchEnqueued{Tasks: []api.Enqueued{{ID: "a", Duplicate: true}, {ID: "b", Duplicate: true}}})
	})
	res, err := c.EnqueueBatch(context.Background(), []api.TaskInput{{Kind: "a"}, {Kind: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tasks) != 2 || !res.Tasks[0].Duplicate || res.Tasks[1].ID != "b" {
		t.Fatalf("res = %+v", res)
	}
}

func TestErrorResponses(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		code     string
		field    string
		msg      string
		text     string
		is, isnt []error
	}{
		{"invalid", 422, api.CodeInvalid, "tasks[1].kind", "must not be empty",
			"422 invalid: tasks[1].kind: must not be empty", []error{ErrInvalid}, []error{ErrNotFound, ErrConflict}},
		{"not found", 404, api.CodeNotFound, "", "task x not found",
			"404 not_found: task x not found", []error{ErrNotFound}, []error{ErrConflict}},
		{"conflict", 409, api.CodeConflict, "", "task x is already completed",
			"409 conflict: task x is already completed", []error{ErrConflict}, []error{ErrLeaseLost}},
		{"lease lost", 409, api.CodeLeaseLost, "", "the lease token is stale",
			"409 lease_lost: the lease token is stale", []error{ErrLeaseLost}, []error{ErrConflict}},
		{"unauthorized", 401, api.CodeUnauthorized, "", "missing bearer token",
			"401 unauthorized: missing bearer token", []error{ErrUnauthorized}, []error{ErrNotFound}},
		{"unavailable", 503, api.CodeUnavailable, "", "shutting down",
			"503 unavailable: shutting down", []error{ErrUnavailable}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
				apiErr(w, tc.status, tc.code, tc.field, tc.msg)
			})
			_, err := c.Get(context.Background(), "x")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %T %v, want *Error", err, err)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Field != tc.field || e.Message != tc.msg {
				t.Errorf("err = %+v", e)
			}
			if err.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.text)
			}
			wrapped := fmt.Errorf("context: %w", err)
			for _, s := range tc.is {
				if !errors.Is(wrapped, s) {
					t.Errorf("errors.Is(err, %v) = false", s)
				}
			}
			for _, s := range tc.isnt {
				if errors.Is(wrapped, s) {
					t.Errorf("errors.Is(err, %v) = true", s)
				}
			}
		})
	}
}

func TestErrorWithoutAPIBody(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	})
	_, err := c.Queues(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Status != 502 {
		t.Fatalf("err = %v", err)
	}
	if got := err.Error(); got != "502 Bad Gateway: upstream down" {
		t.Errorf("Error() = %q", got)
	}

	c = serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r) // a router that is not Weft's
	})
	_, err = c.Get(context.Background(), "x")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("plain 404: errors.Is(ErrNotFound) = false: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	c := New("http://"+addr, "", nil)
	_, err = c.Get(context.Background(), "x")
	if err == nil {
		t.Fatal("no error")
	}
	want := "cannot reach the Weft server at http://" + addr + " (connection refused): is `weft serve` running? (set --server or WEFT_SERVER)"
	if err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is(ErrUnreachable, ECONNREFUSED) false for %v", err)
	}
}

func TestCancelledContextIsNotUnreachable(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		// The server notices a closed connection only once the body
		// was read.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Claim(ctx, api.ClaimRequest{WorkerID: "w"})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
}

func TestListQuery(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/v1/tasks" || q.Get("queue") != "q 1" || q.Get("kind") != "k" ||
			q.Get("state") != "pending,failed" || q.Get("limit") != "5" || q.Get("cursor") != "c" {
			t.Errorf("query = %s %s", r.URL.Path, r.URL.RawQuery)
		}
		writeJSON(w, 200, api.TaskList{Tasks: []api.Task{{ID: "t1"}}, NextCursor: "t1"})
	})
	page, err := c.List(context.Background(), api.ListParams{Queue: "q 1", Kind: "k", States: []string{"pending", "failed"}, Limit: 5, Cursor: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Tasks) != 1 || page.NextCursor != "t1" {
		t.Fatalf("page = %+v", page)
	}
}

func TestTaskAndQueueRoutes(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		route := r.Method + " " + r.URL.EscapedPath()
		switch route {
		case "GET /v1/tasks/a%2Fb":
			writeJSON(w, 200, api.Task{ID: "a/b"})
		case "POST /v1/tasks/t/cancel":
			writeJSON(w, 200, api.Task{ID: "t", State: "cancelled"})
		case "POST /v1/tasks/t/retry":
			writeJSON(w, 200, api.Task{ID: "t", State: "pending"})
		case "GET /v1/queues":
			writeJSON(w, 200, api.QueueList{Queues: []api.Queue{{Name: "default"}}})
		case "POST /v1/queues/q/pause":
			writeJSON(w, 200, api.Queue{Name: "q", Paused: true})
		case "POST /v1/queues/q/resume":
			writeJSON(w, 200, api.Queue{Name: "q"})
		default:
			t.Errorf("unexpected %s", route)
			http.NotFound(w, r)
		}
	})
	ctx := context.Background()
	if tk, err := c.Get(ctx, "a/b"); err != nil || tk.ID != "a/b" {
		t.Errorf("Get = %+v, %v", tk, err)
	}
	if tk, err := c.Cancel(ctx, "t"); err != nil || tk.State != "cancelled" {
		t.Errorf("Cancel = %+v, %v", tk, err)
	}
	if tk, err := c.Retry(ctx, "t"); err != nil || tk.State != "pending" {
		t.Errorf("Retry = %+v, %v", tk, err)
	}
	if ql, err := c.Queues(ctx); err != nil || len(ql.Queues) != 1 {
		t.Errorf("Queues = %+v, %v", ql, err)
	}
	if q, err := c.PauseQueue(ctx, "q"); err != nil || !q.Paused {
		t.Errorf("PauseQueue = %+v, %v", q, err)
	}
	if q, err := c.ResumeQueue(ctx, "q"); err != nil || q.Paused {
		t.Errorf("ResumeQueue = %+v, %v", q, err)
	}
}

func TestWorkerRoutes(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		route := r.Method + " " + r.URL.Path
		switch route {
		case "POST /v1/claims":
			var req api.ClaimRequest
			_ = json.Unmarshal(body, &req)
			if req.WorkerID != "w1" || req.Max != 3 || req.Wait != "30s" {
				t.Errorf("claim = %+v", req)
			}
			writeJSON(w, 200, api.ClaimResponse{Tasks: []api.ClaimedTask{{Task: api.Task{ID: "t"}, LeaseToken: "tok"}}})
		case "POST /v1/tasks/t/heartbeat":
			writeJSON(w, 200, api.HeartbeatResponse{CancelRequested: true})
		case "POST /v1/tasks/t/progress":
			if !strings.Contains(string(body), `"progress":{"n":1}`) {
				t.Errorf("progress body = %s", body)
			}
			w.WriteHeader(http.StatusNoContent)
		case "POST /v1/tasks/t/complete":
			writeJSON(w, 200, api.Outcome{ID: "t", State: "completed"})
		case "POST /v1/tasks/t/fail":
			var req api.FailRequest
			_ = json.Unmarshal(body, &req)
			if !req.Permanent || req.Error != "boom" {
				t.Errorf("fail = %+v", req)
			}
			writeJSON(w, 200, api.Outcome{ID: "t", State: "failed"})
		default:
			t.Errorf("unexpected %s", route)
		}
	})
	ctx := context.Background()
	cr, err := c.Claim(ctx, api.ClaimRequest{WorkerID: "w1", Max: 3, Wait: "30s"})
	if err != nil || len(cr.Tasks) != 1 || cr.Tasks[0].LeaseToken != "tok" {
		t.Fatalf("Claim = %+v, %v", cr, err)
	}
	if hb, err := c.Heartbeat(ctx, "t", api.HeartbeatRequest{LeaseToken: "tok"}); err != nil || !hb.CancelRequested {
		t.Errorf("Heartbeat = %+v, %v", hb, err)
	}
	if err := c.Progress(ctx, "t", api.ProgressRequest{LeaseToken: "tok", Progress: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Errorf("Progress: %v", err)
	}
	if o, err := c.Complete(ctx, "t", api.CompleteRequest{LeaseToken: "tok"}); err != nil || o.State != "completed" {
		t.Errorf("Complete = %+v, %v", o, err)
	}
	if o, err := c.Fail(ctx, "t", api.FailRequest{LeaseToken: "tok", Error: "boom", Permanent: true}); err != nil || o.State != "failed" {
		t.Errorf("Fail = %+v, %v", o, err)
	}
}

// ReportOutcomes sends the outcomes as given, and OutcomeErr reads each
// refused one as the error a single report would have been answered with.
func TestReportOutcomes(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/outcomes" {
			t.Errorf("request = %s %s, want POST /v1/outcomes", r.Method, r.URL.Path)
		}
		want := `{"outcomes":[{"id":"a","lease_token":"ta","result":{"n":1}},{"id":"b","lease_token":"tb","error":"boom","retry_in":"1m"},{"id":"c","lease_token":"tc"}]}`
		if strings.TrimSpace(string(body)) != want {
			t.Errorf("body = %s, want %s", body, want)
		}
		writeJSON(w, 200, api.OutcomesResponse{Outcomes: []api.OutcomeResult{
			{ID: "a", State: "completed"},
			{ID: "b", Error: &api.ErrorBody{Code: api.CodeInvalid, Message: "too big", Field: "outcomes[1].result"}},
			{ID: "c", Error: &api.ErrorBody{Code: api.CodeLeaseLost, Message: "gone", Field: "outcomes[2].lease_token"}},
		}})
	})
	boom := "boom"
	res, err := c.ReportOutcomes(context.Background(), []api.OutcomeInput{
		{ID: "a", LeaseToken: "ta", Result: json.RawMessage(`{"n":1}`)},
		{ID: "b", LeaseToken: "tb", Error: &boom, RetryIn: "1m"},
		{ID: "c", LeaseToken: "tc"},
	})
	if err != nil || len(res.Outcomes) != 3 {
		t.Fatalf("ReportOutcomes = %+v, %v", res, err)
	}
	if err := OutcomeErr(res.Outcomes[0]); err != nil {
		t.Errorf("a recorded outcome's error: %v", err)
	}
	invalid, lost := OutcomeErr(res.Outcomes[1]), OutcomeErr(res.Outcomes[2])
	if !errors.Is(invalid, ErrInvalid) || invalid.Error() != "422 invalid: outcomes[1].result: too big" {
		t.Errorf("an invalid outcome's error: %v", invalid)
	}
	if !errors.Is(lost, ErrLeaseLost) || lost.Error() != "409 lease_lost: outcomes[2].lease_token: gone" {
		t.Errorf("a lost lease's error: %v", lost)
	}
}

// TestEventsIncremental checks that events are yielded as their lines
// arrive: the server sends the second event only after the client has
// seen the first.
func TestEventsIncremental(t *testing.T) {
	next := make(chan struct{})
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/tasks/t/events" || r.URL.Query().Get("after") != "5" || r.URL.Query().Get("follow") != "true" {
			t.Errorf("request = %s?%s", r.URL.Path, r.URL.RawQuery)
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		_ = enc.Encode(api.Event{Seq: 6, TaskID: "t", Type: "started"})
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-time.After(5 * time.Second):
			t.Error("the client did not see the first event before the stream ended")
			return
		}
		_, _ = io.WriteString(w, "\n") // a keep-alive blank line is skipped
		_ = enc.Encode(api.Event{Seq: 7, TaskID: "t", Type: "completed"})
	})
	var seqs []int64
	for ev, err := range c.Events(context.Background(), "t", 5, true) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
		if ev.Seq == 6 {
			close(next)
		}
	}
	if fmt.Sprint(seqs) != "[6 7]" {
		t.Fatalf("seqs = %v", seqs)
	}
}

func TestEventsErrors(t *testing.T) {
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		apiErr(w, 404, api.CodeNotFound, "", "task nope not found")
	})
	n := 0
	for _, err := range c.Events(context.Background(), "nope", 0, false) {
		n++
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("err = %v", err)
		}
	}
	if n != 1 {
		t.Errorf("yielded %d elements, want 1 error", n)
	}

	// A connection dropped mid-stream is an error, after the events that
	// arrived whole.
	c = serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, `{"seq":1,"type":"created"}`+"\n"+`{"seq":2,"ty`)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	})
	var (
		got     []int64
		lastErr error
	)
	for ev, err := range c.Events(context.Background(), "t", 0, true) {
		if err != nil {
			lastErr = err
			continue
		}
		got = append(got, ev.Seq)
	}
	if fmt.Sprint(got) != "[1]" || lastErr == nil {
		t.Fatalf("got %v, err %v; want [1] and an error", got, lastErr)
	}
}

func TestEventsBreakClosesStream(t *testing.T) {
	closed := make(chan struct{})
	c := serve(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_ = json.NewEncoder(w).Encode(api.Event{Seq: 1})
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the client went away
		close(closed)
	})
	for range c.Events(context.Background(), "t", 0, true) {
		break
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("breaking out of the loop did not close the stream")
	}
}
