package httpapi

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// finishCounter counts the store's Finish calls.
type finishCounter struct {
	store.Store
	calls atomic.Int32
}

func (f *finishCounter) Finish(ctx context.Context, outcomes []store.Outcome) ([]store.FinishResult, error) {
	f.calls.Add(1)
	return f.Store.Finish(ctx, outcomes)
}

// claimN enqueues n tasks of kind and claims them.
func claimN(t *testing.T, a *testAPI, kind string, n int) []api.ClaimedTask {
	t.Helper()
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"kind": kind, "max_attempts": 3}
	}
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"tasks": tasks}, nil)
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "kinds": []string{kind}, "max": n}, &resp)
	if len(resp.Tasks) != n {
		t.Fatalf("claimed %d tasks of kind %s, want %d", len(resp.Tasks), kind, n)
	}
	return resp.Tasks
}

// One request records every valid outcome with one store write, and
// answers each entry in order: its state, or its own error with a path
// from the request's root, while the refused ones stay as they were.
func TestOutcomesBatch(t *testing.T) {
	a := newTestAPI(t, Config{})
	counter := &finishCounter{Store: a.st}
	a.api.st = counter
	c := claimN(t, a, "mixed", 14)

	// c[7]'s lease is lost before the batch: its attempt was reported.
	a.must(t, 200, "POST", "/v1/tasks/"+c[7].ID+"/complete", map[string]any{"lease_token": c[7].LeaseToken}, nil)
	// c[8]'s cancellation is requested while it runs.
	a.must(t, 200, "POST", "/v1/tasks/"+c[8].ID+"/cancel", nil, nil)
	counter.calls.Store(0)

	unknown := "01a20000-0000-7000-8000-000000000000"
	entry := func(tc api.ClaimedTask, fields string) string {
		return fmt.Sprintf(`{"id": %q, "lease_token": %q%s}`, tc.ID, tc.LeaseToken, fields)
	}
	entries := []string{
		entry(c[0], `, "result": {"n": 0}`),
		entry(c[1], `, "error": "boom"`),
		entry(c[2], `, "error": "busy", "retry_in": "1h"`),
		entry(c[3], `, "error": "later", "snooze": "2h"`),
		entry(c[4], `, "error": "bad input", "permanent": true`),
		entry(c[5], `, "error": "not wanted", "cancel": true`),
		entry(c[6], ``),
		entry(c[7], ``),
		entry(c[8], `, "error": "stopped"`),
		fmt.Sprintf(`{"id": %q, "lease_token": %q}`, unknown, leaseToken(unknown, 1, time.Minute, false)),
		entry(c[9], `, "error": "boom", "retry_in": "soon"`),
		entry(c[10], `, "error": "boom", "permanent": "yes"`),
		entry(c[11], `, "retry_in": "1m"`),
		entry(c[12], `, "error": " "`),
		entry(c[13], `, "error": "boom", "permanent": true, "cancel": true`),
		fmt.Sprintf(`{"id": %q, "lease_token": %q}`, c[13].ID, c[12].LeaseToken),
		entry(c[0], ``),
		`{"lease_token": "x"}`,
		`[]`,
		entry(c[9], `, "result": 1, "error": "boom"`),
		entry(c[10], `, "prio": 1`),
	}
	var resp api.OutcomesResponse
	a.must(t, 200, "POST", "/v1/outcomes", `{"outcomes": [`+strings.Join(entries, ",\n")+`]}`, &resp)
	if n := counter.calls.Load(); n != 1 {
		t.Errorf("the batch took %d Finish calls, want 1", n)
	}
	type want struct {
		state   string
		pending time.Duration // how far run_at lies ahead, or -1 for ready about now
		code    string
		field   string
	}
	wants := []want{
		{state: "completed"},
		{state: "pending", pending: -1},
		{state: "pending", pending: time.Hour},
		{state: "pending", pending: 2 * time.Hour},
		{state: "failed"},
		{state: "cancelled"},
		{state: "completed"},
		{code: api.CodeLeaseLost, field: "outcomes[7].lease_token"},
		{state: "cancelled"},
		{code: api.CodeNotFound, field: "outcomes[9].id"},
		{code: api.CodeBadRequest, field: "outcomes[10].retry_in"},
		{code: api.CodeBadRequest, field: "outcomes[11].permanent"},
		{code: api.CodeBadRequest, field: "outcomes[12].retry_in"},
		{code: api.CodeBadRequest, field: "outcomes[13].error"},
		{code: api.CodeBadRequest, field: "outcomes[14].cancel"},
		{code: api.CodeBadRequest, field: "outcomes[15].lease_token"},
		{code: api.CodeBadRequest, field: "outcomes[16].id"},
		{code: api.CodeBadRequest, field: "outcomes[17].id"},
		{code: api.CodeBadRequest, field: "outcomes[18]"},
		{code: api.CodeBadRequest, field: "outcomes[19].result"},
		{code: api.CodeBadRequest, field: "outcomes[20].prio"},
	}
	if len(resp.Outcomes) != len(wants) {
		t.Fatalf("%d results for %d outcomes: %+v", len(resp.Outcomes), len(wants), resp.Outcomes)
	}
	for i, w := range wants {
		got := resp.Outcomes[i]
		if w.code != "" {
			if got.Error == nil || got.Error.Code != w.code || got.Error.Field != w.field || got.Error.Message == "" || got.State != "" {
				t.Errorf("outcomes[%d] = %+v (error %+v), want %s at %s", i, got, got.Error, w.code, w.field)
			}
			continue
		}
		if got.Error != nil || got.State != w.state || (got.RunAt != nil) != (w.state == "pending") {
			t.Errorf("outcomes[%d] = %+v (error %+v), want %s", i, got, got.Error, w.state)
			continue
		}
		if got.RunAt == nil {
			continue
		}
		if d := time.Until(*got.RunAt); w.pending > 0 && (d < w.pending-time.Minute || d > w.pending) || w.pending < 0 && d > time.Minute {
			t.Errorf("outcomes[%d] runs again in %v, want %v", i, d, w.pending)
		}
	}
	if got := resp.Outcomes[9].ID; got != unknown {
		t.Errorf("the unknown task's result names %q", got)
	}
	if got := resp.Outcomes[11].ID; got != c[10].ID {
		t.Errorf("the result of an entry with a field of the wrong type names %q, want its id", got)
	}

	// What was recorded is what was answered; what was refused still runs.
	states := map[int]string{0: "completed", 1: "pending", 4: "failed", 5: "cancelled", 6: "completed", 7: "completed", 8: "cancelled"}
	for i := 9; i <= 13; i++ {
		states[i] = "running"
	}
	for i, st := range states {
		var task api.Task
		a.must(t, 200, "GET", "/v1/tasks/"+c[i].ID, nil, &task)
		if task.State != st {
			t.Errorf("task %d is %s, want %s", i, task.State, st)
		}
	}
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+c[0].ID, nil, &task)
	if string(task.Result) != `{"n":0}` {
		t.Errorf("result = %s", task.Result)
	}
	a.must(t, 200, "GET", "/v1/tasks/"+c[1].ID, nil, &task)
	if len(task.Errors) != 1 || task.Errors[0].Error != "boom" {
		t.Errorf("errors = %+v", task.Errors)
	}
	a.must(t, 200, "GET", "/v1/tasks/"+c[3].ID, nil, &task)
	if task.Attempt != 0 || len(task.Errors) != 0 {
		t.Errorf("a snooze spent the attempt: %+v", task)
	}

	// Reported twice, an outcome is lease_lost the second time.
	a.must(t, 200, "POST", "/v1/outcomes", map[string]any{"outcomes": []map[string]any{{"id": c[0].ID, "lease_token": c[0].LeaseToken}}}, &resp)
	if len(resp.Outcomes) != 1 || resp.Outcomes[0].Error == nil || resp.Outcomes[0].Error.Code != api.CodeLeaseLost {
		t.Errorf("a repeated report = %+v", resp.Outcomes)
	}
}

// A batch failure follows the kind's backoff, as a single fail does.
func TestOutcomesKindBackoff(t *testing.T) {
	const delay = 42 * time.Minute
	a := newTestAPI(t, Config{Kinds: map[string]engine.Kind{
		"known": {Backoff: func(attempt int) time.Duration { return time.Duration(attempt) * delay }},
	}})
	known, unknown := claimN(t, a, "known", 2), claimN(t, a, "unknown", 1)
	var in []api.OutcomeInput
	boom := "boom"
	for _, c := range append(known, unknown...) {
		in = append(in, api.OutcomeInput{ID: c.ID, LeaseToken: c.LeaseToken, Error: &boom})
	}
	var resp api.OutcomesResponse
	failed := time.Now()
	a.must(t, 200, "POST", "/v1/outcomes", api.OutcomesRequest{Outcomes: in}, &resp)
	// The default backoff's first delay lies in [0.5s, 1s).
	for i, w := range []struct{ lo, hi time.Duration }{{delay, delay}, {delay, delay}, {time.Second / 2, time.Second}} {
		o := resp.Outcomes[i]
		if o.State != "pending" || o.RunAt == nil {
			t.Fatalf("outcomes[%d] = %+v, want pending", i, o)
		}
		if d := o.RunAt.Sub(failed); d < w.lo-time.Second || d > w.hi+time.Second {
			t.Errorf("outcomes[%d] runs again in %s, want %s to %s", i, d, w.lo, w.hi)
		}
	}
}

// A body that is not a list of outcomes, an empty one and one over the
// limit are refused whole, and nothing is recorded.
func TestOutcomesRefusedWhole(t *testing.T) {
	a := newTestAPI(t, Config{})
	c := claimN(t, a, "k", 1)[0]
	ok := fmt.Sprintf(`{"id": %q, "lease_token": %q}`, c.ID, c.LeaseToken)
	over := strings.TrimSuffix(strings.Repeat(ok+",", api.MaxOutcomes+1), ",")
	for _, tc := range []struct {
		body   string
		status int
		code   string
		field  string
	}{
		{`{"outcomes": [` + over + `]}`, 413, api.CodeTooLarge, "outcomes"},
		{`{"outcomes": []}`, 422, api.CodeInvalid, "outcomes"},
		{`{}`, 422, api.CodeInvalid, "outcomes"},
		{`{"outcomes": {}}`, 400, api.CodeBadRequest, "outcomes"},
		{`{"outcomes": [` + ok + `], "worker_id": "w"}`, 400, api.CodeBadRequest, "worker_id"},
		{`{"outcomes": [` + ok + `,]}`, 400, api.CodeBadRequest, ""},
		{`[` + ok + `]`, 400, api.CodeBadRequest, ""},
	} {
		a.wantError(t, tc.status, tc.code, tc.field, "POST", "/v1/outcomes", tc.body)
	}
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+c.ID, nil, &task)
	if task.State != "running" {
		t.Fatalf("a refused batch left the task %s", task.State)
	}
	// The limit itself is accepted: the task once, and the rest refused
	// as repeats of it.
	var resp api.OutcomesResponse
	a.must(t, 200, "POST", "/v1/outcomes", `{"outcomes": [`+strings.TrimSuffix(strings.Repeat(ok+",", api.MaxOutcomes), ",")+`]}`, &resp)
	if len(resp.Outcomes) != api.MaxOutcomes || resp.Outcomes[0].State != "completed" || resp.Outcomes[api.MaxOutcomes-1].Error == nil {
		t.Fatalf("a batch at the limit: %d results, first %+v, last %+v", len(resp.Outcomes), resp.Outcomes[0], resp.Outcomes[len(resp.Outcomes)-1])
	}
}

// The answer is JSON one line long, like every other.
func TestOutcomesAnswerShape(t *testing.T) {
	a := newTestAPI(t, Config{})
	c := claimN(t, a, "k", 1)[0]
	status, body := a.do(t, "POST", "/v1/outcomes", map[string]any{"outcomes": []map[string]any{{"id": c.ID, "lease_token": c.LeaseToken, "result": "ok"}}})
	want := fmt.Sprintf(`{"outcomes":[{"id":%q,"state":"completed"}]}`+"\n", c.ID)
	if status != 200 || string(body) != want {
		t.Fatalf("answer = %d %s, want %s", status, body, want)
	}
}
