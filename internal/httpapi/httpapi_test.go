package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/internal/tracing"
	"github.com/weftworks/weft/store"
)

// testAPI is a real API server on a real SQLite file.
type testAPI struct {
	srv *httptest.Server
	api *Server
	st  store.Store
	tok string
}

func newTestAPI(t testing.TB, cfg Config) *testAPI {
	t.Helper()
	_, st := testenv.SQLite(t)
	cfg.Client = testenv.Client(t, st)
	if cfg.Logger == nil {
		cfg.Logger = testenv.Logger()
	}
	if cfg.EventPoll == 0 {
		cfg.EventPoll = 10 * time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testAPI{srv: hs, api: s, st: st, tok: cfg.Token}
}

// do sends a request with a JSON (or raw string) body and returns the
// status and body.
func (a *testAPI) do(t testing.TB, method, path string, body any, hdr ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if a.tok != "" {
		req.Header.Set("Authorization", "Bearer "+a.tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// must sends a request that must answer want, and decodes the answer.
func (a *testAPI) must(t testing.TB, want int, method, path string, body, out any) {
	t.Helper()
	status, b := a.do(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, status, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

func (a *testAPI) wantError(t *testing.T, status int, code, field, method, path string, body any) api.ErrorBody {
	t.Helper()
	got, b := a.do(t, method, path, body)
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s %s: error body %q is not JSON: %v", method, path, b, err)
	}
	if got != status || e.Error.Code != code || e.Error.Field != field || e.Error.Message == "" {
		t.Fatalf("%s %s = %d %+v, want %d code %q field %q", method, path, got, e.Error, status, code, field)
	}
	return e.Error
}

func (a *testAPI) count(t testing.TB) int {
	t.Helper()
	tasks, err := a.st.List(context.Background(), store.ListParams{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return len(tasks)
}

func TestEnqueueAndGet(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{
		"kind": "email", "args": map[string]any{"to": "ada@example.com"}, "queue": "mail", "priority": 3,
		"delay": "1h", "max_attempts": 4, "timeout": "30s", "unique_key": "welcome-ada", "metadata": map[string]any{"tenant": 7},
	}, &e)
	if e.ID == "" || e.Duplicate {
		t.Fatalf("enqueued %+v", e)
	}
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+e.ID, nil, &task)
	if task.Kind != "email" || task.Queue != "mail" || task.State != "pending" || task.Priority != 3 ||
		task.MaxAttempts != 4 || task.Timeout != "30s" || task.UniqueKey != "welcome-ada" ||
		string(task.Args) != `{"to":"ada@example.com"}` || string(task.Metadata) != `{"tenant":7}` {
		t.Fatalf("task = %+v", task)
	}
	if d := time.Until(task.RunAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("run_at %v is not an hour from now", task.RunAt)
	}
	var dup api.Enqueued
	a.must(t, 200, "POST", "/v1/tasks", map[string]any{"kind": "email", "unique_key": "welcome-ada"}, &dup)
	if dup.ID != e.ID || !dup.Duplicate {
		t.Fatalf("duplicate = %+v, want id %s duplicate", dup, e.ID)
	}
	runAt := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	var at api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "report", "run_at": runAt}, &at)
	a.must(t, 200, "GET", "/v1/tasks/"+at.ID, nil, &task)
	if !task.RunAt.Equal(runAt) || task.Queue != "default" || task.MaxAttempts != 25 || string(task.Args) != "{}" {
		t.Fatalf("defaults/run_at: %+v", task)
	}
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v1/tasks/0190a000-0000-7000-8000-000000000000", nil)
}

func TestBatchIsAtomic(t *testing.T) {
	a := newTestAPI(t, Config{})
	var b api.BatchEnqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"tasks": []map[string]any{{"kind": "a"}, {"kind": "b", "unique_key": "u"}}}, &b)
	if len(b.Tasks) != 2 || b.Tasks[0].ID == b.Tasks[1].ID {
		t.Fatalf("batch = %+v", b)
	}
	a.wantError(t, 422, api.CodeInvalid, "tasks[2].kind", "POST", "/v1/tasks",
		map[string]any{"tasks": []map[string]any{{"kind": "c"}, {"kind": "d"}, {"kind": "no spaces"}}})
	a.wantError(t, 422, api.CodeInvalid, "tasks[1].delay", "POST", "/v1/tasks",
		map[string]any{"tasks": []map[string]any{{"kind": "c"}, {"kind": "d", "delay": "soon"}}})
	a.wantError(t, 422, api.CodeInvalid, "tasks", "POST", "/v1/tasks", `{"tasks": []}`)
	a.wantError(t, 400, api.CodeBadRequest, "tasks", "POST", "/v1/tasks", `{"tasks": null}`)
	if n := a.count(t); n != 2 {
		t.Fatalf("%d tasks stored, want the first batch's 2 only", n)
	}
	var dup api.BatchEnqueued
	a.must(t, 200, "POST", "/v1/tasks", map[string]any{"tasks": []map[string]any{{"kind": "b", "unique_key": "u"}}}, &dup)
	if !dup.Tasks[0].Duplicate || dup.Tasks[0].ID != b.Tasks[1].ID {
		t.Fatalf("duplicate in batch = %+v", dup)
	}
}

func TestBadInput(t *testing.T) {
	a := newTestAPI(t, Config{MaxBodyBytes: 4096})
	cases := []struct {
		name, body, code, field string
		status                  int
		hdr                     []string
	}{
		{"empty body", "", api.CodeBadRequest, "", 400, nil},
		{"not JSON", "kind=email", api.CodeBadRequest, "", 400, nil},
		{"truncated", `{"kind": "a"`, api.CodeBadRequest, "", 400, nil},
		{"array", `[{"kind": "a"}]`, api.CodeBadRequest, "", 400, nil},
		{"trailing data", `{"kind": "a"} {"kind": "b"}`, api.CodeBadRequest, "", 400, nil},
		{"unknown field", `{"kind": "a", "prio": 1}`, api.CodeBadRequest, "prio", 400, nil},
		{"wrong type", `{"kind": "a", "priority": "high"}`, api.CodeBadRequest, "priority", 400, nil},
		{"missing kind", `{"args": {}}`, api.CodeInvalid, "kind", 422, nil},
		{"bad queue", `{"kind": "a", "queue": "x'; DROP TABLE weft_tasks; --"}`, api.CodeInvalid, "queue", 422, nil},
		{"NUL in kind", `{"kind": "a\u0000b"}`, api.CodeInvalid, "kind", 422, nil},
		{"NUL in args", `{"kind": "a", "args": {"s": "x\u0000y"}}`, api.CodeInvalid, "args", 422, nil},
		{"NUL in metadata", `{"kind": "a", "metadata": {"s": "\u0000"}}`, api.CodeInvalid, "metadata", 422, nil},
		{"NUL in unique key", `{"kind": "a", "unique_key": "k\u0000"}`, api.CodeInvalid, "unique_key", 422, nil},
		{"invalid UTF-8 in args", "{\"kind\": \"a\", \"args\": {\"s\": \"\xff\"}}", api.CodeInvalid, "args", 422, nil},
		{"delay and run_at", `{"kind": "a", "delay": "1s", "run_at": "2030-01-01T00:00:00Z"}`, api.CodeInvalid, "delay", 422, nil},
		{"negative delay", `{"kind": "a", "delay": "-1s"}`, api.CodeInvalid, "delay", 422, nil},
		{"bad run_at", `{"kind": "a", "run_at": "tomorrow"}`, api.CodeBadRequest, "run_at", 400, nil},
		{"batch type error", `{"tasks": [{"kind": "a"}, {"kind": "b", "priority": "high"}]}`, api.CodeBadRequest, "tasks[1].priority", 400, nil},
		{"batch unknown field", `{"tasks": [{"kind": "a"}, {"kind": "b", "prio": 1}]}`, api.CodeBadRequest, "tasks[1].prio", 400, nil},
		{"batch bad run_at", `{"tasks": [{"kind": "a", "run_at": "x"}]}`, api.CodeBadRequest, "tasks[0].run_at", 400, nil},
		{"run_at number", `{"tasks": [{"kind": "a", "run_at": 12}]}`, api.CodeBadRequest, "tasks[0].run_at", 400, nil},
		{"priority range", `{"kind": "a", "priority": 3000000000}`, api.CodeInvalid, "priority", 422, nil},
		{"negative timeout", `{"kind": "a", "timeout": "-1s"}`, api.CodeInvalid, "timeout", 422, nil},
		{"bad timeout", `{"kind": "a", "timeout": "soon"}`, api.CodeInvalid, "timeout", 422, nil},
		{"max attempts", `{"kind": "a", "max_attempts": -1}`, api.CodeInvalid, "max_attempts", 422, nil},
		{"metadata not object", `{"kind": "a", "metadata": [1]}`, api.CodeInvalid, "metadata", 422, nil},
		{"too large", `{"kind": "a", "args": "` + strings.Repeat("x", 5000) + `"}`, api.CodeTooLarge, "", 413, nil},
		{"content type", `{"kind": "a"}`, api.CodeUnsupportedType, "", 415, []string{"Content-Type", "multipart/form-data; boundary=x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, b := a.do(t, "POST", "/v1/tasks", tc.body, tc.hdr...)
			var e api.Error
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("body %q: %v", b, err)
			}
			if status != tc.status || e.Error.Code != tc.code || e.Error.Field != tc.field {
				t.Fatalf("= %d %+v, want %d %s field %q", status, e.Error, tc.status, tc.code, tc.field)
			}
		})
	}
	if n := a.count(t); n != 0 {
		t.Fatalf("bad input wrote %d tasks", n)
	}
}

func TestListPaging(t *testing.T) {
	a := newTestAPI(t, Config{})
	var ids []string
	for i := range 5 {
		kind := "even"
		if i%2 == 1 {
			kind = "odd"
		}
		var e api.Enqueued
		a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": kind}, &e)
		ids = append(ids, e.ID)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		var page api.TaskList
		a.must(t, 200, "GET", "/v1/tasks?limit=2&cursor="+cursor, nil, &page)
		for _, task := range page.Tasks {
			got = append(got, task.ID)
		}
		if page.NextCursor == "" {
			if pages != 2 {
				t.Fatalf("%d pages, want 3", pages+1)
			}
			break
		}
		cursor = page.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("paged ids %v, want %v", got, ids)
	}
	var odd api.TaskList
	a.must(t, 200, "GET", "/v1/tasks?kind=odd&state=pending,running", nil, &odd)
	if len(odd.Tasks) != 2 || odd.NextCursor != "" {
		t.Fatalf("kind filter: %+v", odd)
	}
	a.wantError(t, 400, api.CodeBadRequest, "state", "GET", "/v1/tasks?state=done", nil)
	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", "/v1/tasks?limit=0", nil)
	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", "/v1/tasks?limit=x", nil)
	a.wantError(t, 400, api.CodeBadRequest, "queue", "GET", "/v1/tasks?queue=a%20b", nil)
	a.wantError(t, 400, api.CodeBadRequest, "sort", "GET", "/v1/tasks?sort=id", nil)
}

func TestCancelAndRetry(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "a"}, &e)
	a.wantError(t, 409, api.CodeConflict, "", "POST", "/v1/tasks/"+e.ID+"/retry", nil)
	var task api.Task
	a.must(t, 200, "POST", "/v1/tasks/"+e.ID+"/cancel", nil, &task)
	if task.State != "cancelled" {
		t.Fatalf("cancelled task is %s", task.State)
	}
	a.wantError(t, 409, api.CodeConflict, "", "POST", "/v1/tasks/"+e.ID+"/cancel", nil)
	a.must(t, 200, "POST", "/v1/tasks/"+e.ID+"/retry", nil, &task)
	if task.State != "pending" || time.Until(task.RunAt) > time.Second {
		t.Fatalf("retried task: %+v", task)
	}
	a.wantError(t, 404, api.CodeNotFound, "", "POST", "/v1/tasks/nope/cancel", nil)
	a.wantError(t, 404, api.CodeNotFound, "", "POST", "/v1/tasks/nope/retry", nil)
}

func TestRemoteWorker(t *testing.T) {
	a := newTestAPI(t, Config{})
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "py-1"}, &resp)
	if len(resp.Tasks) != 0 {
		t.Fatalf("claimed %d tasks from an empty queue", len(resp.Tasks))
	}

	// A long poll returns as soon as a task is enqueued.
	done := make(chan api.ClaimResponse, 1)
	go func() {
		var r api.ClaimResponse
		a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "py-1", "kinds": []string{"resize"}, "wait": "10s", "lease_ttl": "5s"}, &r)
		done <- r
	}()
	time.Sleep(50 * time.Millisecond)
	var other, e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "other"}, &other)
	start := time.Now()
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "resize", "args": map[string]int{"w": 10}}, &e)
	select {
	case resp = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not return after a matching enqueue")
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("long poll woke after %v", waited)
	}
	if len(resp.Tasks) != 1 || resp.Tasks[0].ID != e.ID || resp.Tasks[0].LeaseToken == "" || resp.Tasks[0].Attempt != 1 || resp.Tasks[0].State != "running" {
		t.Fatalf("claim = %+v", resp)
	}
	tok := resp.Tasks[0].LeaseToken
	if d := time.Until(resp.Tasks[0].LeaseExpiresAt); d < 3*time.Second || d > 6*time.Second {
		t.Fatalf("lease expires in %v, want about 5s", d)
	}
	base := "/v1/tasks/" + e.ID
	var hb api.HeartbeatResponse
	a.must(t, 200, "POST", base+"/heartbeat", map[string]any{"lease_token": tok}, &hb)
	if d := time.Until(hb.LeaseExpiresAt); d < 3*time.Second || d > 6*time.Second {
		t.Fatalf("a heartbeat without lease_ttl extended the lease by %v, want the claim's 5s", d)
	}
	a.must(t, 200, "POST", base+"/heartbeat", map[string]any{"lease_token": tok, "lease_ttl": "1m"}, &hb)
	if hb.CancelRequested || time.Until(hb.LeaseExpiresAt) < 50*time.Second {
		t.Fatalf("heartbeat = %+v", hb)
	}
	a.must(t, 204, "POST", base+"/progress", map[string]any{"lease_token": tok, "progress": map[string]int{"done": 50}}, nil)
	a.wantError(t, 400, api.CodeBadRequest, "lease_token", "POST", "/v1/tasks/"+other.ID+"/complete", map[string]any{"lease_token": tok})
	a.wantError(t, 400, api.CodeBadRequest, "lease_token", "POST", base+"/complete", map[string]any{"lease_token": "garbage"})
	a.wantError(t, 404, api.CodeNotFound, "", "POST", "/v1/tasks/01a20000-0000-7000-8000-000000000000/complete",
		map[string]any{"lease_token": leaseToken("01a20000-0000-7000-8000-000000000000", 1, time.Minute, false)})
	a.wantError(t, 422, api.CodeInvalid, "result", "POST", base+"/complete", map[string]any{"lease_token": tok, "result": json.RawMessage(`{"big": "` + strings.Repeat("x", 1<<20) + `"}`)})
	var out api.Outcome
	a.must(t, 200, "POST", base+"/complete", map[string]any{"lease_token": tok, "result": map[string]string{"url": "s3://x"}}, &out)
	if out.State != "completed" || out.RunAt != nil {
		t.Fatalf("complete = %+v", out)
	}
	// The attempt is over: every further write with its token is refused.
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", base+"/complete", map[string]any{"lease_token": tok})
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", base+"/heartbeat", map[string]any{"lease_token": tok})
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", base+"/fail", map[string]any{"lease_token": tok, "error": "late"})
	var task api.Task
	a.must(t, 200, "GET", base, nil, &task)
	if task.State != "completed" || string(task.Result) != `{"url":"s3://x"}` || task.Worker != "py-1" {
		t.Fatalf("completed task = %+v", task)
	}
}

func claimOne(t *testing.T, a *testAPI, kind string) api.ClaimedTask {
	t.Helper()
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "kinds": []string{kind}}, &resp)
	if len(resp.Tasks) != 1 {
		t.Fatalf("claimed %d tasks of kind %s, want 1", len(resp.Tasks), kind)
	}
	return resp.Tasks[0]
}

func TestRemoteFailures(t *testing.T) {
	a := newTestAPI(t, Config{})
	enqueue := func(kind string, attempts int) {
		a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": kind, "max_attempts": attempts}, nil)
	}
	cases := []struct {
		kind     string
		attempts int
		body     map[string]any
		state    string
		pending  time.Duration // how far run_at lies ahead, for pending outcomes
	}{
		{"retry", 3, map[string]any{"error": "boom"}, "pending", 0},
		{"retryin", 3, map[string]any{"error": "busy", "retry_in": "1h"}, "pending", time.Hour},
		{"snooze", 3, map[string]any{"error": "later", "snooze": "2h"}, "pending", 2 * time.Hour},
		{"exhausted", 1, map[string]any{"error": "boom"}, "failed", 0},
		{"permanent", 3, map[string]any{"error": "bad input", "permanent": true}, "failed", 0},
		{"cancel", 3, map[string]any{"error": "not wanted", "cancel": true}, "cancelled", 0},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			enqueue(tc.kind, tc.attempts)
			c := claimOne(t, a, tc.kind)
			tc.body["lease_token"] = c.LeaseToken
			var out api.Outcome
			a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/fail", tc.body, &out)
			if out.State != tc.state {
				t.Fatalf("outcome %+v, want %s", out, tc.state)
			}
			if tc.pending > 0 {
				if d := time.Until(*out.RunAt); d < tc.pending-time.Minute || d > tc.pending {
					t.Fatalf("runs again in %v, want %v", d, tc.pending)
				}
			}
			var task api.Task
			a.must(t, 200, "GET", "/v1/tasks/"+c.ID, nil, &task)
			if task.State != tc.state {
				t.Fatalf("task is %s, want %s", task.State, tc.state)
			}
			if tc.kind == "snooze" && task.Attempt != 0 {
				t.Fatalf("a snooze spent the attempt: attempt %d", task.Attempt)
			}
			if tc.kind != "snooze" && (len(task.Errors) != 1 || task.Errors[0].Error != tc.body["error"]) {
				t.Fatalf("errors = %+v", task.Errors)
			}
		})
	}
	enqueue("bad", 3)
	c := claimOne(t, a, "bad")
	a.wantError(t, 400, api.CodeBadRequest, "error", "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken})
	a.wantError(t, 400, api.CodeBadRequest, "cancel", "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": "x", "permanent": true, "cancel": true})
	a.wantError(t, 400, api.CodeBadRequest, "retry_in", "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": "x", "retry_in": "-5s"})

	// A cancel requested while a remote worker runs the task turns its
	// failure into a cancellation, and the heartbeat tells the worker.
	var hb api.HeartbeatResponse
	a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/cancel", nil, nil)
	a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/heartbeat", map[string]any{"lease_token": c.LeaseToken}, &hb)
	if !hb.CancelRequested {
		t.Fatal("heartbeat did not report the cancel request")
	}
	var out api.Outcome
	a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": "stopped"}, &out)
	if out.State != "cancelled" {
		t.Fatalf("failing a cancel-requested task gave %s, want cancelled", out.State)
	}
}

// A remote failure of a kind the server registered follows the kind's
// backoff, and a claimed task of it gets the kind's timeout unless it has
// its own; a kind the server does not know gets the default backoff and no
// timeout.
func TestRemoteKindPolicy(t *testing.T) {
	const delay = 42 * time.Minute
	a := newTestAPI(t, Config{Kinds: map[string]engine.Kind{
		"known": {Timeout: 90 * time.Second, Backoff: func(attempt int) time.Duration { return time.Duration(attempt) * delay }},
	}})
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "known"}, nil)
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "known", "timeout": "5s"}, nil)
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "unknown"}, nil)
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "max": 3}, &resp)
	if len(resp.Tasks) != 3 {
		t.Fatalf("claimed %d tasks, want 3", len(resp.Tasks))
	}
	// The default backoff's first delay lies in [0.5s, 1s).
	type policy struct{ timeout, minDelay, maxDelay time.Duration }
	for i, want := range []policy{{90 * time.Second, delay, delay}, {5 * time.Second, delay, delay}, {0, time.Second / 2, time.Second}} {
		c := resp.Tasks[i]
		if got, _ := time.ParseDuration(c.Timeout); got != want.timeout {
			t.Errorf("%s: claimed with timeout %q, want %s", c.Kind, c.Timeout, want.timeout)
		}
		var out api.Outcome
		failed := time.Now()
		a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": "boom"}, &out)
		if out.State != "pending" || out.RunAt == nil {
			t.Fatalf("%s: outcome %+v, want pending", c.Kind, out)
		}
		if d := out.RunAt.Sub(failed); d < want.minDelay-time.Second || d > want.maxDelay+time.Second {
			t.Errorf("%s: runs again in %s, want %s to %s", c.Kind, d, want.minDelay, want.maxDelay)
		}
	}
}

func TestClaimValidation(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "a"}, nil)
	for _, tc := range []struct {
		body  string
		field string
	}{
		{`{}`, "worker_id"},
		{`{"worker_id": "w\u0000"}`, "worker_id"},
		{`{"worker_id": "w", "queues": ["../etc"]}`, "queues[0]"},
		{`{"worker_id": "w", "kinds": ["a", ""]}`, "kinds[1]"},
		{`{"worker_id": "w", "max": 101}`, "max"},
		{`{"worker_id": "w", "wait": "2m"}`, "wait"},
		{`{"worker_id": "w", "lease_ttl": "10ms"}`, "lease_ttl"},
		{`{"worker_id": "w", "max": "1"}`, "max"},
	} {
		a.wantError(t, 400, api.CodeBadRequest, tc.field, "POST", "/v1/claims", tc.body)
	}
	var task api.TaskList
	a.must(t, 200, "GET", "/v1/tasks?state=pending", nil, &task)
	if len(task.Tasks) != 1 {
		t.Fatal("a refused claim leased a task")
	}
}

func TestClaimMaxAcrossQueues(t *testing.T) {
	a := newTestAPI(t, Config{})
	for _, q := range []string{"a", "a", "b", "b"} {
		a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k", "queue": q}, nil)
	}
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "queues": []string{"a", "b"}, "max": 3}, &resp)
	if len(resp.Tasks) != 3 {
		t.Fatalf("claimed %d tasks, want max 3", len(resp.Tasks))
	}
}

func TestQueuesPauseResume(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k", "queue": "mail"}, nil)
	var q api.Queue
	a.must(t, 200, "POST", "/v1/queues/mail/pause", nil, &q)
	if !q.Paused || q.Counts["pending"] != 1 {
		t.Fatalf("paused queue = %+v", q)
	}
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "queues": []string{"mail"}}, &resp)
	if len(resp.Tasks) != 0 {
		t.Fatal("claimed from a paused queue")
	}
	var list api.QueueList
	a.must(t, 200, "GET", "/v1/queues", nil, &list)
	if len(list.Queues) != 1 || list.Queues[0].Name != "mail" || !list.Queues[0].Paused || list.Queues[0].OldestReadyAt == nil {
		t.Fatalf("queues = %+v", list)
	}
	a.must(t, 200, "POST", "/v1/queues/mail/resume", nil, &q)
	if q.Paused {
		t.Fatal("resumed queue still paused")
	}
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "queues": []string{"mail"}}, &resp)
	if len(resp.Tasks) != 1 {
		t.Fatal("resumed queue not claimed")
	}
	a.wantError(t, 400, api.CodeBadRequest, "name", "POST", "/v1/queues/a%20b/pause", nil)
}

func TestEventsFollow(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k"}, &e)
	resp, err := a.srv.Client().Get(a.srv.URL + "/v1/tasks/" + e.ID + "/events?follow=true")
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
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("line %q: %v", sc.Bytes(), err)
				return
			}
			lines <- ev
		}
	}()
	next := func() api.Event {
		t.Helper()
		select {
		case ev, ok := <-lines:
			if !ok {
				t.Fatal("stream ended early")
			}
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
		}
		return api.Event{}
	}
	if ev := next(); ev.Type != "created" || ev.TaskID != e.ID || ev.Seq <= 0 {
		t.Fatalf("first event %+v", ev)
	}
	c := claimOne(t, a, "k")
	if ev := next(); ev.Type != "started" || ev.Attempt != 1 {
		t.Fatalf("second event %+v", ev)
	}
	a.must(t, 204, "POST", "/v1/tasks/"+e.ID+"/progress", map[string]any{"lease_token": c.LeaseToken, "progress": 0.5}, nil)
	if ev := next(); ev.Type != "progress" || string(ev.Data) != "0.5" {
		t.Fatalf("progress event %+v", ev)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+e.ID+"/complete", map[string]any{"lease_token": c.LeaseToken}, nil)
	last := next()
	if last.Type != "completed" {
		t.Fatalf("terminal event %+v", last)
	}
	select {
	case _, ok := <-lines:
		if ok {
			t.Fatal("events after the terminal one")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the followed stream did not end at the terminal event")
	}

	// Resuming after a cursor, as Server-Sent Events.
	status, body := a.do(t, "GET", "/v1/tasks/"+e.ID+"/events", nil, "Accept", "text/event-stream", "Last-Event-ID", "0")
	if status != 200 || !strings.Contains(string(body), "event: created\n") || !strings.Contains(string(body), "event: completed\n") {
		t.Fatalf("SSE = %d %q", status, body)
	}
	// Past the end of a finished task, an EventSource is told to stop.
	if status, _ := a.do(t, "GET", "/v1/tasks/"+e.ID+"/events", nil, "Accept", "text/event-stream", "Last-Event-ID", itoa(last.Seq)); status != 204 {
		t.Fatalf("SSE after the terminal event = %d, want 204", status)
	}
	status, body = a.do(t, "GET", "/v1/tasks/"+e.ID+"/events?after="+itoa(last.Seq-1), nil)
	if status != 200 || strings.Count(string(body), "\n") != 1 || !strings.Contains(string(body), `"completed"`) {
		t.Fatalf("after cursor = %d %q", status, body)
	}
	a.wantError(t, 400, api.CodeBadRequest, "after", "GET", "/v1/tasks/"+e.ID+"/events?after=-1", nil)
	a.wantError(t, 400, api.CodeBadRequest, "follow", "GET", "/v1/tasks/"+e.ID+"/events?follow=maybe", nil)
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v1/tasks/nope/events", nil)
}

func itoa(n int64) string { return strings.TrimSpace(string(mustJSON(n))) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestAuth(t *testing.T) {
	a := newTestAPI(t, Config{Token: "s3cret"})
	a.must(t, 200, "GET", "/v1/queues", nil, nil)
	if status, _ := a.do(t, "GET", "/v1/queues", nil, "Authorization", "bearer s3cret"); status != 200 {
		t.Fatalf("a lower-case scheme was refused: %d", status)
	}
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret"}, {"Authorization", "Bearer s3cret-and-more"}} {
		req, _ := http.NewRequest("GET", a.srv.URL+"/v1/queues", nil)
		if hdr != nil {
			req.Header.Set(hdr[0], hdr[1])
		}
		resp, err := a.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%v: status %d", hdr, resp.StatusCode)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := a.srv.Client().Get(a.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s without a token: %d", path, resp.StatusCode)
		}
	}
}

func TestHealthMetricsRoutes(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k", "queue": "mail"}, nil)
	status, body := a.do(t, "GET", "/metrics", nil)
	for _, want := range []string{`weft_queue_tasks{queue="mail",state="pending"} 1`, `weft_api_tasks_enqueued_total 1`, `weft_http_requests_total{code="201",route="POST /v1/tasks"} 1`} {
		if status != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
	a.wantError(t, 405, api.CodeMethod, "", "DELETE", "/v1/tasks", nil)
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v2/tasks", nil)
	a.api.Drain()
	a.wantError(t, 503, api.CodeUnavailable, "", "GET", "/readyz", nil)
}

// TestOpenAPICoversRoutes keeps the OpenAPI document and the route table
// in step: every route is documented, and nothing else is.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for _, rt := range newTestAPI(t, Config{}).api.routeTable() {
		r := rt.pattern
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
		delete(documented, r)
	}
	for r := range documented {
		t.Errorf("openapi.json documents %s, which the server does not serve", r)
	}
}

// A full or read-only database is not the request's fault: 503 with a
// Retry-After, never a 500.
func TestStorageErrorsAre503(t *testing.T) {
	s := newTestAPI(t, Config{}).api
	for _, sentinel := range []error{store.ErrStorageFull, store.ErrReadOnly} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/tasks", nil)
		s.respondErr(rec, req, fmt.Errorf("%w: sqlite: commit: database or disk is full", sentinel))
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if rec.Code != 503 || e.Error.Code != api.CodeUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("%v: %d %+v, want 503 unavailable with Retry-After", sentinel, rec.Code, e.Error)
		}
	}
}

// The text \u0000 after an escaped backslash is not a NUL and is stored.
func TestEscapedBackslashIsNotNUL(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", `{"kind": "a", "args": {"s": "C:\\u0000.txt"}}`, &e)
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+e.ID, nil, &task)
	if string(task.Args) != `{"s": "C:\\u0000.txt"}` && string(task.Args) != `{"s":"C:\\u0000.txt"}` {
		t.Fatalf("args = %s", task.Args)
	}
}

// TestReadToken: the read-only token reads every GET route and is refused
// (403 forbidden) wherever a request would change something, remote
// workers' claims and /mcp included; nothing is written.
func TestReadToken(t *testing.T) {
	a := newTestAPI(t, Config{Token: "full", ReadToken: "look"})
	var enq api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k"}, &enq)
	read := []string{"Authorization", "Bearer look"}
	for _, p := range []string{"/v1/tasks", "/v1/tasks/" + enq.ID, "/v1/queues", "/metrics"} {
		if status, body := a.do(t, "GET", p, nil, read...); status != 200 {
			t.Errorf("GET %s with the read-only token: %d %s", p, status, body)
		}
	}
	for _, p := range []string{"/v1/tasks", "/v1/tasks/" + enq.ID + "/cancel", "/v1/queues/default/pause", "/v1/claims", "/mcp"} {
		status, body := a.do(t, "POST", p, map[string]any{"kind": "k"}, read...)
		var e struct{ Error api.ErrorBody }
		_ = json.Unmarshal(body, &e)
		if status != 403 || e.Error.Code != api.CodeForbidden {
			t.Errorf("POST %s with the read-only token: %d %s, want 403 forbidden", p, status, body)
		}
	}
	if n := a.count(t); n != 1 {
		t.Errorf("%d tasks after the refused writes, want 1", n)
	}
	var got api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+enq.ID, nil, &got)
	if got.State != "pending" {
		t.Errorf("the task is %s, want pending", got.State)
	}
	if _, err := New(Config{Client: a.api.cfg.Client, ReadToken: "look"}); err == nil {
		t.Error("a read-only token without a full token was accepted")
	}
}

// TestTaskMetrics: the per-queue-and-kind counters and histograms count
// every task's events, a remote worker's outcomes included.
func TestTaskMetrics(t *testing.T) {
	a := newTestAPI(t, Config{})
	for range 3 {
		a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "mail", "queue": "q1"}, nil)
	}
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "mail", "queue": "q1", "max_attempts": 2}, nil)
	var claim api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "queues": []string{"q1"}, "max": 4}, &claim)
	if len(claim.Tasks) != 4 {
		t.Fatalf("claimed %d", len(claim.Tasks))
	}
	for i, c := range claim.Tasks {
		switch {
		case c.MaxAttempts == 2:
			a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": "boom"}, nil)
		case i == 0:
			a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": "bad", "permanent": true}, nil)
		default:
			a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/complete", map[string]any{"lease_token": c.LeaseToken}, nil)
		}
	}
	_, body := a.do(t, "GET", "/metrics", nil)
	for _, want := range []string{
		`weft_tasks_enqueued_total{kind="mail",queue="q1"} 4`,
		`weft_tasks_completed_total{kind="mail",queue="q1"} `,
		`weft_tasks_failed_total{kind="mail",queue="q1"} `,
		`weft_tasks_retried_total{kind="mail",queue="q1"} 1`,
		`weft_task_wait_seconds_count{kind="mail",queue="q1"} 4`,
		`weft_task_run_seconds_count{kind="mail",queue="q1"} 4`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	completed, failed := metricValue(t, body, `weft_tasks_completed_total{kind="mail",queue="q1"}`), metricValue(t, body, `weft_tasks_failed_total{kind="mail",queue="q1"}`)
	if completed+failed != 3 || failed < 1 {
		t.Errorf("completed %v and failed %v, want 3 in all with at least one failure", completed, failed)
	}
}

func metricValue(t *testing.T, body []byte, series string) float64 {
	t.Helper()
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the metrics", series)
	return 0
}

// TestTracePropagation: an enqueue over the API continues the trace of
// its traceparent header, and the claim hands a remote worker the
// enqueue's trace context in the task's metadata, from which the
// worker's attempt span continues it.
func TestTracePropagation(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	a := newTestAPI(t, Config{TracerProvider: tp})
	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var enq api.Enqueued
	status, body := a.do(t, "POST", "/v1/tasks", map[string]any{"kind": "remote.job"}, "traceparent", incoming)
	if status != 201 || json.Unmarshal(body, &enq) != nil {
		t.Fatalf("enqueue: %d %s", status, body)
	}
	var claim api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w"}, &claim)
	if len(claim.Tasks) != 1 {
		t.Fatalf("claimed %d", len(claim.Tasks))
	}
	var md map[string]string
	if err := json.Unmarshal(claim.Tasks[0].Metadata, &md); err != nil || !strings.HasPrefix(md["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-") {
		t.Fatalf("the claimed task's metadata = %s, %v; want a traceparent in the caller's trace", claim.Tasks[0].Metadata, err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "weft.enqueue" || spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("spans = %+v, want the enqueue's, a child of the caller's", spans)
	}
	// The worker's side: its attempt continues the enqueue's span.
	_, span := tracing.StartAttempt(context.Background(), tp.Tracer("worker"), &store.Task{ID: enq.ID, Kind: "remote.job", Metadata: claim.Tasks[0].Metadata})
	span.End()
	if got := span.(sdktrace.ReadOnlySpan); got.Parent().SpanID() != spans[0].SpanContext.SpanID() || got.SpanContext().TraceID() != spans[0].SpanContext.TraceID() {
		t.Fatalf("the attempt's span %+v is not a child of the enqueue's", got)
	}
}
