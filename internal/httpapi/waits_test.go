package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// waitSnapshot is snapshot with the tasks' waitpoints and signals: what a
// wait or signal request could have written.
func waitSnapshot(t *testing.T, st store.Store, ids ...string) string {
	t.Helper()
	s := snapshot(t, st, ids...)
	for _, id := range ids {
		wps, err := st.Waitpoints(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(wps)
		s += string(b)
	}
	return s
}

// createWaitpoint creates a waitpoint for a claimed task and checks the
// answer's status.
func createWaitpoint(t *testing.T, a *testAPI, c api.ClaimedTask, status int, body map[string]any) api.Waitpoint {
	t.Helper()
	body["lease_token"] = c.LeaseToken
	var wp api.Waitpoint
	a.must(t, status, "POST", "/v1/tasks/"+c.ID+"/waitpoints", body, &wp)
	return wp
}

// A remote worker's wait from end to end: it creates a waitpoint (a
// repeat answers the same one), suspends, a signal by token resumes the
// task, a repeat of the signal changes nothing, and the next claim carries
// the signals; the resolved waitpoint then refuses signals.
func TestRemoteWorkerWait(t *testing.T) {
	a := newTestAPI(t, Config{})
	c := claimN(t, a, "approval", 1)[0]
	if c.Signals != nil {
		t.Fatalf("a task without waitpoints was claimed with signals %+v", c.Signals)
	}
	before := time.Now()
	wp := createWaitpoint(t, a, c, 201, map[string]any{"name": "approval", "allow": []string{"approve", "reject"}, "expires_in": "24h"})
	if wp.ID == "" || wp.TaskID != c.ID || wp.Name != "approval" || !strings.HasPrefix(wp.Token, "wp1.") || wp.State != "open" ||
		wp.Signals == nil || len(wp.Signals) != 0 || strings.Join(wp.Allow, ",") != "approve,reject" || wp.ExpiresAt == nil ||
		wp.ExpiresAt.Before(before.Add(24*time.Hour-time.Second)) || wp.ExpiresAt.After(time.Now().Add(24*time.Hour)) {
		t.Fatalf("waitpoint = %+v", wp)
	}
	// A repeat of the name is the waitpoint as created, whatever it asks.
	again := createWaitpoint(t, a, c, 200, map[string]any{"name": "approval", "allow": []string{"other"}})
	if again.ID != wp.ID || again.Token != wp.Token || strings.Join(again.Allow, ",") != "approve,reject" {
		t.Fatalf("repeat = %+v, want %+v", again, wp)
	}
	var list api.WaitpointList
	a.must(t, 200, "GET", "/v1/tasks/"+c.ID+"/waitpoints", nil, &list)
	if len(list.Waitpoints) != 1 || list.Waitpoints[0].Token != wp.Token {
		t.Fatalf("waitpoints = %+v", list)
	}

	var out api.Outcome
	a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/wait", map[string]any{"lease_token": c.LeaseToken, "waitpoints": []string{"approval"}, "timeout": "1h"}, &out)
	if out.ID != c.ID || out.State != "waiting" || out.RunAt != nil {
		t.Fatalf("wait = %+v", out)
	}
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+c.ID, nil, &task)
	if task.State != "waiting" || task.Attempt != 0 {
		t.Fatalf("suspended task = %+v", task)
	}
	// The lease went with the suspension.
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", "/v1/tasks/"+c.ID+"/complete", map[string]any{"lease_token": c.LeaseToken})

	var rec api.SignalReceipt
	a.must(t, 200, "POST", "/v1/signals", map[string]any{"token": wp.Token, "name": "approve", "payload": map[string]any{"by": "ada"}, "idempotency_key": "approve-1"}, &rec)
	if !rec.Resumed || rec.Duplicate || rec.TaskID != c.ID || rec.Signal.ID == "" || rec.Signal.Name != "approve" ||
		rec.Signal.Waitpoint != "approval" || rec.Signal.WaitpointID != wp.ID || string(rec.Signal.Payload) != `{"by":"ada"}` ||
		rec.Signal.IdempotencyKey != "approve-1" {
		t.Fatalf("receipt = %+v", rec)
	}
	var dup api.SignalReceipt
	a.must(t, 200, "POST", "/v1/signals", map[string]any{"token": wp.Token, "name": "reject", "idempotency_key": "approve-1"}, &dup)
	if !dup.Duplicate || dup.Resumed || dup.Signal.ID != rec.Signal.ID || dup.Signal.Name != "approve" {
		t.Fatalf("repeat = %+v", dup)
	}
	e := a.wantError(t, 409, api.CodeWaitpointClosed, "", "POST", "/v1/signals", map[string]any{"token": wp.Token, "name": "reject", "idempotency_key": "reject-1"})
	if !strings.Contains(e.Message, "resolved by signal") {
		t.Fatalf("closed: %q does not say how it was resolved", e.Message)
	}

	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "kinds": []string{"approval"}}, &resp)
	if len(resp.Tasks) != 1 || resp.Tasks[0].ID != c.ID || resp.Tasks[0].Attempt != 1 || len(resp.Tasks[0].Signals) != 1 {
		t.Fatalf("claim after the signal = %+v", resp)
	}
	got := resp.Tasks[0].Signals[0]
	if got.Name != "approval" || got.State != "resolved" || got.Resolution != "signal" || got.Token != "" ||
		len(got.Signals) != 1 || string(got.Signals[0].Payload) != `{"by":"ada"}` || got.Signals[0].ReceivedAt.IsZero() {
		t.Fatalf("claimed signals = %+v", got)
	}
	// Waiting again on the resolved waitpoint is a mistake, answered as
	// such; the task still runs.
	c2 := resp.Tasks[0]
	a.wantError(t, 422, api.CodeInvalid, "waitpoints[0]", "POST", "/v1/tasks/"+c.ID+"/wait", map[string]any{"lease_token": c2.LeaseToken, "waitpoints": []string{"approval"}})
	a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/complete", map[string]any{"lease_token": c2.LeaseToken}, &out)
	if out.State != "completed" {
		t.Fatalf("complete = %+v", out)
	}
}

// A suspension whose signals arrived before it resumes at once; one whose
// cancellation was requested ends cancelled; an operator signals by name.
func TestWaitEarlySignalsAndCancel(t *testing.T) {
	a := newTestAPI(t, Config{})
	cs := claimN(t, a, "k", 2)
	early, cancelled := cs[0], cs[1]
	createWaitpoint(t, a, early, 201, map[string]any{"name": "a"})
	createWaitpoint(t, a, early, 201, map[string]any{"name": "b"})
	var rec api.SignalReceipt
	for i, name := range []string{"a", "b"} {
		a.must(t, 200, "POST", "/v1/tasks/"+early.ID+"/signals", map[string]any{"waitpoint": name, "name": "go", "idempotency_key": fmt.Sprint("k", i)}, &rec)
		if rec.Resumed || rec.TaskID != early.ID || rec.Signal.Waitpoint != name || string(rec.Signal.Payload) != "null" {
			t.Fatalf("early signal = %+v", rec)
		}
	}
	var out api.Outcome
	a.must(t, 200, "POST", "/v1/tasks/"+early.ID+"/wait", map[string]any{"lease_token": early.LeaseToken, "waitpoints": []string{"a", "b"}, "mode": "all"}, &out)
	if out.State != "pending" || out.RunAt != nil {
		t.Fatalf("a wait already satisfied = %+v", out)
	}

	createWaitpoint(t, a, cancelled, 201, map[string]any{"name": "a"})
	a.must(t, 200, "POST", "/v1/tasks/"+cancelled.ID+"/cancel", nil, nil)
	a.must(t, 200, "POST", "/v1/tasks/"+cancelled.ID+"/wait", map[string]any{"lease_token": cancelled.LeaseToken, "waitpoints": []string{"a"}}, &out)
	if out.State != "cancelled" {
		t.Fatalf("a wait after a cancel request = %+v", out)
	}
	// Its task is final: 409, not waitpoint_closed.
	a.wantError(t, 409, api.CodeAlreadyFinished, "", "POST", "/v1/tasks/"+cancelled.ID+"/signals", map[string]any{"waitpoint": "a", "name": "go", "idempotency_key": "k"})
}

// Every refusal of the worker routes answers its status, code and field,
// and writes nothing.
func TestWaitRoutesRefusals(t *testing.T) {
	a := newTestAPI(t, Config{})
	cs := claimN(t, a, "k", 2)
	c, lost := cs[0], cs[1]
	createWaitpoint(t, a, c, 201, map[string]any{"name": "a"})
	createWaitpoint(t, a, lost, 201, map[string]any{"name": "a"})
	a.must(t, 200, "POST", "/v1/tasks/"+lost.ID+"/complete", map[string]any{"lease_token": lost.LeaseToken}, nil)
	unknown := "01a20000-0000-7000-8000-000000000000"
	before := waitSnapshot(t, a.st, c.ID, lost.ID)

	wp := func(fields string) string { return fmt.Sprintf(`{"lease_token": %q%s}`, c.LeaseToken, fields) }
	for _, tc := range []struct {
		path, body string
		status     int
		code       string
		field      string
	}{
		{"waitpoints", `{"name": "b"}`, 400, api.CodeBadRequest, "lease_token"},
		{"waitpoints", wp(`, "name": "3x"`), 422, api.CodeInvalid, "name"},
		{"waitpoints", wp(``), 422, api.CodeInvalid, "name"},
		{"waitpoints", wp(`, "name": "b", "allow": ["ok", "no way"]`), 422, api.CodeInvalid, "allow[1]"},
		{"waitpoints", wp(`, "name": "b", "expires_in": "tomorrow"`), 400, api.CodeBadRequest, "expires_in"},
		{"waitpoints", wp(`, "name": "b", "expires_in": "0s"`), 400, api.CodeBadRequest, "expires_in"},
		{"waitpoints", wp(`, "name": "b", "expires_in": "9000h"`), 400, api.CodeBadRequest, "expires_in"},
		{"waitpoints", wp(`, "name": "b", "allow": "ok"`), 400, api.CodeBadRequest, "allow"},
		{"waitpoints", wp(`, "name": "b", "expiry": "1h"`), 400, api.CodeBadRequest, "expiry"},

		{"wait", wp(``), 422, api.CodeInvalid, "waitpoints"},
		{"wait", wp(`, "waitpoints": ["b"]`), 422, api.CodeInvalid, "waitpoints[0]"},
		{"wait", wp(`, "waitpoints": ["a", "a"]`), 422, api.CodeInvalid, "waitpoints[1]"},
		{"wait", wp(`, "waitpoints": ["a"], "mode": "some"`), 422, api.CodeInvalid, "mode"},
		{"wait", wp(`, "waitpoints": ["a"], "count": 2`), 422, api.CodeInvalid, "count"},
		{"wait", wp(`, "waitpoints": ["a"], "mode": "count"`), 422, api.CodeInvalid, "count"},
		{"wait", wp(`, "waitpoints": ["a"], "on_timeout": "explode"`), 422, api.CodeInvalid, "on_timeout"},
		{"wait", wp(`, "waitpoints": ["a"], "timeout": "soon"`), 400, api.CodeBadRequest, "timeout"},
		{"wait", wp(`, "waitpoints": ["a"], "timeout": "9000h"`), 400, api.CodeBadRequest, "timeout"},
		{"wait", wp(`, "waitpoints": "a"`), 400, api.CodeBadRequest, "waitpoints"},
		{"wait", wp(`, "waitpoints": ["a"], "count": "2"`), 400, api.CodeBadRequest, "count"},
	} {
		a.wantError(t, tc.status, tc.code, tc.field, "POST", "/v1/tasks/"+c.ID+"/"+tc.path, tc.body)
	}
	// A lease that is gone.
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", "/v1/tasks/"+lost.ID+"/waitpoints", map[string]any{"lease_token": lost.LeaseToken, "name": "z"})
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", "/v1/tasks/"+lost.ID+"/wait", map[string]any{"lease_token": lost.LeaseToken, "waitpoints": []string{"a"}})
	if after := waitSnapshot(t, a.st, c.ID, lost.ID); after != before {
		t.Fatalf("a refused request wrote:\nbefore %s\nafter  %s", before, after)
	}
	a.wantError(t, 404, api.CodeNotFound, "", "POST", "/v1/tasks/"+unknown+"/waitpoints", map[string]any{"lease_token": leaseToken(unknown, 1, time.Minute, false), "name": "a"})
	a.wantError(t, 404, api.CodeNotFound, "", "POST", "/v1/tasks/"+unknown+"/wait", map[string]any{"lease_token": leaseToken(unknown, 1, time.Minute, false), "waitpoints": []string{"a"}})
}

// A task has at most store.MaxWaitpointsPerTask waitpoints: one more is
// 413, and is not created.
func TestWaitpointCap(t *testing.T) {
	a := newTestAPI(t, Config{})
	c := claimN(t, a, "k", 1)[0]
	for i := range store.MaxWaitpointsPerTask {
		createWaitpoint(t, a, c, 201, map[string]any{"name": fmt.Sprint("w", i)})
	}
	a.wantError(t, 413, api.CodeTooLarge, "name", "POST", "/v1/tasks/"+c.ID+"/waitpoints", map[string]any{"lease_token": c.LeaseToken, "name": "one-more"})
	// The ones it has are still answered.
	createWaitpoint(t, a, c, 200, map[string]any{"name": "w0"})
	var list api.WaitpointList
	a.must(t, 200, "GET", "/v1/tasks/"+c.ID+"/waitpoints", nil, &list)
	if len(list.Waitpoints) != store.MaxWaitpointsPerTask {
		t.Fatalf("%d waitpoints", len(list.Waitpoints))
	}
}

// Every refusal of the signal routes answers its status, code and field,
// and stores nothing. A bad token and one whose waitpoint does not exist
// get the very same answer.
func TestSignalRefusals(t *testing.T) {
	a := newTestAPI(t, Config{})
	cs := claimN(t, a, "k", 2)
	c, done := cs[0], cs[1]
	wp := createWaitpoint(t, a, c, 201, map[string]any{"name": "approval", "allow": []string{"approve"}})
	doneWP := createWaitpoint(t, a, done, 201, map[string]any{"name": "approval"})
	a.must(t, 200, "POST", "/v1/tasks/"+done.ID+"/complete", map[string]any{"lease_token": done.LeaseToken}, nil)
	before := waitSnapshot(t, a.st, c.ID, done.ID)
	ctx := context.Background()

	// Tokens that lead nowhere: forged, truncated, signed by other keys,
	// expired, and valid for a waitpoint that does not exist.
	ghost, err := a.api.cfg.Client.WaitpointToken(ctx, store.Waitpoint{ID: "01a20000-0000-7000-8000-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := weft.NewClient(a.st, &weft.Config{SigningKeys: "other:0123456789abcdef0123"})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.WaitpointToken(ctx, store.Waitpoint{ID: wp.ID, Allow: wp.Allow})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := a.api.cfg.Client.WaitpointToken(ctx, store.Waitpoint{ID: wp.ID, Allow: wp.Allow, ExpiresAt: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var first []byte
	for _, tok := range []string{ghost, foreign, expired, wp.Token[:len(wp.Token)-1], wp.Token + "x", "wp1", strings.Replace(wp.Token, "wp1.", "wp2.", 1)} {
		status, body := a.do(t, "POST", "/v1/signals", map[string]any{"token": tok, "name": "approve", "idempotency_key": "k"})
		if status != 404 || (first != nil && string(body) != string(first)) {
			t.Fatalf("token %q: %d %s, want 404 %s", tok, status, body, first)
		}
		first = body
	}
	var e api.Error
	if err := json.Unmarshal(first, &e); err != nil || e.Error.Code != api.CodeNotFound || e.Error.Field != "token" || e.Error.Message != ops.InvalidTokenMessage {
		t.Fatalf("invalid token answered %s", first)
	}

	for _, tc := range []struct {
		path   string
		body   any
		status int
		code   string
		field  string
	}{
		{"/v1/signals", map[string]any{"token": wp.Token, "name": "approve"}, 400, api.CodeBadRequest, "idempotency_key"},
		{"/v1/signals", map[string]any{"name": "approve", "idempotency_key": "k"}, 400, api.CodeBadRequest, "token"},
		{"/v1/signals", map[string]any{"token": wp.Token, "name": "reject", "idempotency_key": "k"}, 422, api.CodeInvalid, "name"},
		{"/v1/signals", map[string]any{"token": wp.Token, "name": "3x", "idempotency_key": "k"}, 422, api.CodeInvalid, "name"},
		{"/v1/signals", map[string]any{"token": wp.Token, "name": "approve", "idempotency_key": strings.Repeat("k", 513)}, 422, api.CodeInvalid, "idempotency_key"},
		{"/v1/signals", map[string]any{"token": wp.Token, "name": "approve", "idempotency_key": "k", "payload": strings.Repeat("x", 1<<20)}, 422, api.CodeInvalid, "payload"},
		{"/v1/signals", `{"token": "t", "name": "approve", "idempotency_key": "k", "waitpoint": "a"}`, 400, api.CodeBadRequest, "waitpoint"},
		{"/v1/signals", `{"token": "t", "name": "approve", "idempotency_key": "k", "payload": }`, 400, api.CodeBadRequest, ""},
		{"/v1/signals", map[string]any{"token": doneWP.Token, "name": "approve", "idempotency_key": "k"}, 409, api.CodeAlreadyFinished, ""},
		{"/v1/tasks/" + c.ID + "/signals", map[string]any{"name": "approve", "idempotency_key": "k"}, 400, api.CodeBadRequest, "waitpoint"},
		{"/v1/tasks/" + c.ID + "/signals", map[string]any{"waitpoint": "approval", "name": "approve"}, 400, api.CodeBadRequest, "idempotency_key"},
		{"/v1/tasks/" + c.ID + "/signals", map[string]any{"waitpoint": "nope", "name": "approve", "idempotency_key": "k"}, 404, api.CodeNotFound, ""},
		{"/v1/tasks/" + c.ID + "/signals", map[string]any{"waitpoint": "approval", "name": "reject", "idempotency_key": "k"}, 422, api.CodeInvalid, "name"},
		{"/v1/tasks/" + c.ID + "/signals", map[string]any{"waitpoint": "approval", "name": "approve", "idempotency_key": "k", "token": wp.Token}, 400, api.CodeBadRequest, "token"},
		{"/v1/tasks/" + done.ID + "/signals", map[string]any{"waitpoint": "approval", "name": "approve", "idempotency_key": "k"}, 409, api.CodeAlreadyFinished, ""},
		{"/v1/tasks/01a20000-0000-7000-8000-000000000000/signals", map[string]any{"waitpoint": "approval", "name": "approve", "idempotency_key": "k"}, 404, api.CodeNotFound, ""},
	} {
		a.wantError(t, tc.status, tc.code, tc.field, "POST", tc.path, tc.body)
	}
	if after := waitSnapshot(t, a.st, c.ID, done.ID); after != before {
		t.Fatalf("a refused signal wrote:\nbefore %s\nafter  %s", before, after)
	}
	a.wantError(t, 404, api.CodeNotFound, "", "GET", "/v1/tasks/01a20000-0000-7000-8000-000000000000/waitpoints", nil)
}

// A task stores at most store.MaxSignalsPerTask signals: one more is 413,
// and a repeat of a stored one is still answered.
func TestSignalCap(t *testing.T) {
	a := newTestAPI(t, Config{})
	c := claimN(t, a, "k", 1)[0]
	wp := createWaitpoint(t, a, c, 201, map[string]any{"name": "votes"})
	// The task runs and does not wait yet: every signal is kept. They are
	// sent concurrently, so that the store's commits group.
	var wg sync.WaitGroup
	errs := make(chan error, store.MaxSignalsPerTask)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < store.MaxSignalsPerTask; i += 16 {
				_, err := a.api.cfg.Client.Signal(context.Background(), wp.Token, weft.SignalParams{Name: "vote", Key: fmt.Sprint("v", i)})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a.wantError(t, 413, api.CodeTooLarge, "name", "POST", "/v1/signals", map[string]any{"token": wp.Token, "name": "vote", "idempotency_key": "one-more"})
	var rec api.SignalReceipt
	a.must(t, 200, "POST", "/v1/signals", map[string]any{"token": wp.Token, "name": "vote", "idempotency_key": "v7"}, &rec)
	if !rec.Duplicate {
		t.Fatalf("repeat at the cap = %+v", rec)
	}
}

// With an API token, a signal by waitpoint token needs no API token: the
// waitpoint's is its credential. Everything else about waits still does.
func TestSignalWithoutAPIToken(t *testing.T) {
	a := newTestAPI(t, Config{Token: "secret"})
	c := claimN(t, a, "k", 1)[0]
	wp := createWaitpoint(t, a, c, 201, map[string]any{"name": "approval"})
	post := func(path string, body map[string]any) (int, string) {
		b, _ := json.Marshal(body)
		resp, err := a.srv.Client().Post(a.srv.URL+path, "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error.Code
	}
	for _, path := range []string{"/v1/tasks/" + c.ID + "/signals", "/v1/tasks/" + c.ID + "/waitpoints", "/v1/tasks/" + c.ID + "/wait"} {
		if status, code := post(path, map[string]any{"waitpoint": "approval", "name": "go", "idempotency_key": "k"}); status != 401 || code != api.CodeUnauthorized {
			t.Errorf("POST %s without the API token = %d %s, want 401", path, status, code)
		}
	}
	if status, code := post("/v1/signals", map[string]any{"token": wp.Token, "name": "go", "idempotency_key": "k"}); status != 200 {
		t.Fatalf("a signal by token without the API token = %d %s", status, code)
	}
	if status, code := post("/v1/signals", map[string]any{"token": "wp1.forged", "name": "go", "idempotency_key": "k"}); status != 404 || code != api.CodeNotFound {
		t.Fatalf("a forged token = %d %s", status, code)
	}
}

// FuzzWaits drives the waitpoint, wait and signal decoders with arbitrary
// bodies, where LEASE stands for a claimed task's lease token and WPTOKEN
// for the token of its waitpoint "a" (which takes "go"): bad input never
// yields a 500, and a refused request writes nothing.
func FuzzWaits(f *testing.F) {
	for _, s := range []struct {
		op   uint8
		body string
	}{
		{0, `{"lease_token": "LEASE", "name": "b", "allow": ["x", "y"], "expires_in": "1h"}`},
		{0, `{"lease_token": "LEASE", "name": "a"}`},
		{0, `{"lease_token": "LEASE", "name": "b", "expires_in": "-1s"}`},
		{0, `{"lease_token": "LEASE", "name": "b", "allow": [""]}`},
		{1, `{"lease_token": "LEASE", "waitpoints": ["a"], "mode": "count", "count": 2, "timeout": "1m", "on_timeout": "resume"}`},
		{1, `{"lease_token": "LEASE", "waitpoints": ["a", "a"]}`},
		{1, `{"lease_token": "LEASE", "waitpoints": [], "count": -1}`},
		{1, `{"lease_token": "LEASE", "waitpoints": [null]}`},
		{2, `{"token": "WPTOKEN", "name": "go", "payload": {"x": [1, 2]}, "idempotency_key": "k", "source": "s"}`},
		{2, `{"token": "WPTOKEN", "name": "go", "payload": "\u0000", "idempotency_key": "k"}`},
		{2, `{"token": "WPTOKEN", "name": "stop", "idempotency_key": "k"}`},
		{2, `{"token": "wp1.a.b.c.0.d", "name": "go", "idempotency_key": "k"}`},
		{2, `{"token": "WPTOKEN", "name": "go", "idempotency_key": "\u0000"}`},
		{3, `{"waitpoint": "a", "name": "go", "payload": 1e400, "idempotency_key": "k"}`},
		{3, `{"waitpoint": "a'; --", "name": "go", "idempotency_key": "k"}`},
		{3, `{"waitpoint": "a", "name": "go", "idempotency_key": "k"} {}`},
		{2, `[]`}, {3, `{`}, {0, ``},
	} {
		f.Add(s.op, []byte(s.body))
	}
	a := newTestAPI(f, Config{})
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		c := enqueueAndClaim(t, a)
		rec := serve(a, "POST", "/v1/tasks/"+c.ID+"/waitpoints", []byte(`{"lease_token": "`+c.LeaseToken+`", "name": "a", "allow": ["go"]}`))
		var wp api.Waitpoint
		if err := json.Unmarshal(rec.Body.Bytes(), &wp); err != nil || rec.Code != 201 {
			t.Fatalf("setup waitpoint: %d %s", rec.Code, rec.Body)
		}
		body = bytes.ReplaceAll(body, []byte("WPTOKEN"), []byte(wp.Token))
		body = bytes.ReplaceAll(body, []byte("LEASE"), []byte(c.LeaseToken))
		path := []string{"/v1/tasks/" + c.ID + "/waitpoints", "/v1/tasks/" + c.ID + "/wait", "/v1/signals", "/v1/tasks/" + c.ID + "/signals"}[int(op)%4]
		before := waitSnapshot(t, a.st, c.ID)
		rec = serve(a, "POST", path, body)
		checkAnswer(t, rec, body)
		if rec.Code >= 400 && waitSnapshot(t, a.st, c.ID) != before {
			t.Fatalf("POST %s %q was refused (%d) but wrote", path, body, rec.Code)
		}
		// Leave nothing ready or running for the next iteration's claim.
		serve(a, "POST", "/v1/tasks/"+c.ID+"/cancel", nil)
		serve(a, "POST", "/v1/tasks/"+c.ID+"/complete", []byte(`{"lease_token": "`+c.LeaseToken+`"}`))
	})
}

// A wait that times out with on_timeout resume is claimed again with its
// waitpoint resolved by timeout, and later signals are refused so.
func TestWaitTimeoutResume(t *testing.T) {
	a := newTestAPI(t, Config{})
	c := claimN(t, a, "k", 1)[0]
	wp := createWaitpoint(t, a, c, 201, map[string]any{"name": "approval"})
	var out api.Outcome
	a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/wait", map[string]any{"lease_token": c.LeaseToken, "waitpoints": []string{"approval"},
		"timeout": "1s", "on_timeout": "resume"}, &out)
	if out.State != "waiting" {
		t.Fatalf("wait = %+v", out)
	}
	// The reconciler's pass, run here until the timeout is due.
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, _, err := a.st.ExpireWaits(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the wait did not time out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "kinds": []string{"k"}}, &resp)
	if len(resp.Tasks) != 1 || len(resp.Tasks[0].Signals) != 1 || resp.Tasks[0].Signals[0].Resolution != "timeout" || len(resp.Tasks[0].Signals[0].Signals) != 0 {
		t.Fatalf("claim after the timeout = %+v", resp)
	}
	e := a.wantError(t, 409, api.CodeWaitpointClosed, "", "POST", "/v1/signals", map[string]any{"token": wp.Token, "name": "late", "idempotency_key": "k"})
	if !strings.Contains(e.Message, "resolved by timeout") {
		t.Fatalf("late signal: %q", e.Message)
	}
}
