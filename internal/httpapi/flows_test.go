package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// step is a flow member whose queue is its key, so that a test claims
// exactly the member it means.
func step(key string, deps ...string) map[string]any {
	m := map[string]any{"key": key, "kind": "step", "queue": key, "max_attempts": 1}
	if len(deps) > 0 {
		m["depends_on"] = deps
	}
	return m
}

func (a *testAPI) submitFlow(t *testing.T, tasks ...map[string]any) api.FlowEnqueued {
	t.Helper()
	var res api.FlowEnqueued
	a.must(t, 201, "POST", "/v1/flows", map[string]any{"name": t.Name(), "tasks": tasks}, &res)
	if res.ID == "" || len(res.Tasks) != len(tasks) {
		t.Fatalf("submitted flow = %+v", res)
	}
	return res
}

func (a *testAPI) flow(t *testing.T, id string) api.Flow {
	t.Helper()
	var f api.Flow
	a.must(t, 200, "GET", "/v1/flows/"+id, nil, &f)
	return f
}

// memberStates reads a flow's members' states by key.
func (a *testAPI) memberStates(t *testing.T, id string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range a.flow(t, id).Members {
		out[m.Key] = m.State
	}
	return out
}

// claimKey claims the member of queue key as a remote worker would.
func (a *testAPI) claimKey(t *testing.T, key string) api.ClaimedTask {
	t.Helper()
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": "w", "queues": []string{key}}, &resp)
	if len(resp.Tasks) != 1 {
		t.Fatalf("claimed %d tasks of %s, want 1", len(resp.Tasks), key)
	}
	return resp.Tasks[0]
}

// runKey claims member key and completes it with result, or fails it
// for good when result is nil.
func (a *testAPI) runKey(t *testing.T, key string, result any) api.ClaimedTask {
	t.Helper()
	c := a.claimKey(t, key)
	if result == nil {
		a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/fail", map[string]any{"lease_token": c.LeaseToken, "error": key + " broke", "permanent": true}, nil)
	} else {
		a.must(t, 200, "POST", "/v1/tasks/"+c.ID+"/complete", map[string]any{"lease_token": c.LeaseToken, "result": result}, nil)
	}
	return c
}

func TestFlowSubmitGetList(t *testing.T) {
	a := newTestAPI(t, Config{})
	fetch := step("fetch")
	fetch["args"], fetch["priority"], fetch["timeout"], fetch["metadata"] = map[string]any{"url": "u"}, 5, "30s", map[string]any{"team": "x"}
	quorum := step("report", "parse-a", "parse-b", "parse-c")
	quorum["join"], quorum["quorum"], quorum["let_run"] = "quorum", 2, true
	res := a.submitFlow(t, fetch, step("parse-a", "fetch"), step("parse-b", "fetch"), step("parse-c", "fetch"), quorum)

	f := a.flow(t, res.ID)
	if f.State != "running" || f.Name != t.Name() || f.Counts.Total != 5 || f.Counts.Active != 1 || f.Counts.Blocked != 4 ||
		f.Progress != 0 || f.ETA != "" || f.FinalizedAt != nil || time.Since(f.CreatedAt) > time.Minute {
		t.Fatalf("flow = %+v", f)
	}
	if len(f.Members) != 5 {
		t.Fatalf("members = %+v", f.Members)
	}
	r := f.Members[4]
	if r.Key != "report" || r.TaskID != res.Tasks["report"] || r.Kind != "step" || r.Queue != "report" || r.State != "blocked" ||
		strings.Join(r.DependsOn, ",") != "parse-a,parse-b,parse-c" || r.Join != "quorum" || r.Quorum != 2 || !r.LetRun {
		t.Fatalf("report member = %+v", r)
	}
	if m := f.Members[0]; m.Key != "fetch" || m.State != "pending" || m.DependsOn != nil || m.Join != "" {
		t.Fatalf("fetch member = %+v", m)
	}

	// A member is a full task, and shows its flow and key.
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+res.Tasks["fetch"], nil, &task)
	if task.FlowID != res.ID || task.Key != "fetch" || task.Priority != 5 || task.Timeout != "30s" ||
		string(task.Args) != `{"url":"u"}` || string(task.Metadata) != `{"team":"x"}` {
		t.Fatalf("member task = %+v", task)
	}
	var lean api.Flow
	a.must(t, 200, "GET", "/v1/flows/"+res.ID+"?members=false", nil, &lean)
	if lean.Members != nil || lean.Counts != f.Counts {
		t.Fatalf("flow without members = %+v", lean)
	}

	a.runKey(t, "fetch", map[string]any{"pages": 3})
	a.runKey(t, "parse-a", 1)
	a.runKey(t, "parse-b", 2)
	a.runKey(t, "parse-c", 3)
	a.runKey(t, "report", "ok")
	f = a.flow(t, res.ID)
	if f.State != "succeeded" || f.Progress != 1 || f.FinalizedAt == nil || f.Counts.Completed != 5 {
		t.Fatalf("finished flow = %+v", f)
	}

	other := a.submitFlow(t, step("lone"))
	var list api.FlowList
	a.must(t, 200, "GET", "/v1/flows", nil, &list)
	if len(list.Flows) != 2 || list.Flows[0].ID != res.ID || list.Flows[1].ID != other.ID || list.Flows[0].Members != nil || list.NextCursor != "" {
		t.Fatalf("list = %+v", list)
	}
	a.must(t, 200, "GET", "/v1/flows?state=running", nil, &list)
	if len(list.Flows) != 1 || list.Flows[0].ID != other.ID {
		t.Fatalf("running flows = %+v", list)
	}
	a.must(t, 200, "GET", "/v1/flows?limit=1", nil, &list)
	if len(list.Flows) != 1 || list.NextCursor != res.ID {
		t.Fatalf("first page = %+v", list)
	}
	a.must(t, 200, "GET", "/v1/flows?limit=1&cursor="+list.NextCursor, nil, &list)
	if len(list.Flows) != 1 || list.Flows[0].ID != other.ID {
		t.Fatalf("second page = %+v", list)
	}
	a.wantError(t, 400, api.CodeBadRequest, "state", "GET", "/v1/flows?state=done", nil)
	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", "/v1/flows?limit=0", nil)
	a.wantError(t, 400, api.CodeBadRequest, "cursor", "GET", "/v1/flows?cursor=x", nil)
	a.wantError(t, 400, api.CodeBadRequest, "queue", "GET", "/v1/flows?queue=a", nil)
	a.wantError(t, 400, api.CodeBadRequest, "members", "GET", "/v1/flows/"+res.ID+"?members=some", nil)
	a.wantError(t, 400, api.CodeBadRequest, "sort", "GET", "/v1/flows/"+res.ID+"?sort=key", nil)
}

func TestFlowBadInput(t *testing.T) {
	a := newTestAPI(t, Config{})
	// A task outside any flow holds a unique key.
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "k", "unique_key": "held"}, nil)
	held := step("b")
	held["unique_key"] = "held"
	many := make([]map[string]any, store.DefaultMaxFlowMembers+1)
	for i := range many {
		many[i] = map[string]any{"key": fmt.Sprintf("m%d", i), "kind": "k"}
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
		msg    string
	}{
		{"cycle", []any{step("a", "c"), step("b", "a"), step("c", "b")}, 422, api.CodeInvalid, "tasks[0].depends_on", "dependency cycle: a -> c -> b -> a"},
		{"unknown key", []any{step("a"), step("b", "nope")}, 422, api.CodeInvalid, "tasks[1].depends_on[0]", `"nope"`},
		{"unknown group", []any{step("a"), step("b", "nope/*")}, 422, api.CodeInvalid, "tasks[1].depends_on[0]", `"nope"`},
		{"duplicate key", []any{step("a"), step("a")}, 422, api.CodeInvalid, "tasks[1].key", "tasks[0]"},
		{"listed twice", []any{step("a"), step("b", "a", "a")}, 422, api.CodeInvalid, "tasks[1].depends_on[1]", "twice"},
		{"self", []any{step("a", "a")}, 422, api.CodeInvalid, "tasks[0].depends_on[0]", "itself"},
		{"empty key", []any{map[string]any{"kind": "k"}}, 422, api.CodeInvalid, "tasks[0].key", ""},
		{"bad key", []any{map[string]any{"key": "no spaces", "kind": "k"}}, 422, api.CodeInvalid, "tasks[0].key", ""},
		{"quorum above parents", []any{step("a"), step("b"), with(step("c", "a", "b"), "join", "quorum", "quorum", 3)}, 422, api.CodeInvalid, "tasks[2].quorum", "out of range"},
		{"quorum below 1", []any{step("a"), with(step("c", "a"), "join", "quorum")}, 422, api.CodeInvalid, "tasks[1].quorum", "out of range"},
		{"quorum without its join", []any{step("a"), with(step("c", "a"), "quorum", 1)}, 422, api.CodeInvalid, "tasks[1].quorum", ""},
		{"join without parents", []any{with(step("a"), "join", "all_done")}, 422, api.CodeInvalid, "tasks[0].join", "without depends_on"},
		{"unknown join", []any{step("a"), with(step("b", "a"), "join", "most")}, 422, api.CodeInvalid, "tasks[1].join", "most"},
		{"let_run without a cancelling join", []any{step("a"), with(step("b", "a"), "let_run", true)}, 422, api.CodeInvalid, "tasks[1].let_run", ""},
		{"star with others", []any{step("a"), step("b"), step("c", "*", "a")}, 422, api.CodeInvalid, "tasks[2].depends_on", ""},
		{"star alone", []any{step("c", "*")}, 422, api.CodeInvalid, "tasks[0].depends_on", ""},
		{"bad kind", []any{step("a"), with(step("b"), "kind", "")}, 422, api.CodeInvalid, "tasks[1].kind", ""},
		{"bad delay", []any{step("a"), with(step("b"), "delay", "soon")}, 422, api.CodeInvalid, "tasks[1].delay", ""},
		{"delay and run_at", []any{with(step("a"), "delay", "1s", "run_at", "2030-01-01T00:00:00Z")}, 422, api.CodeInvalid, "tasks[0].delay", ""},
		{"unknown field", []any{step("a"), with(step("b"), "prio", 1)}, 400, api.CodeBadRequest, "tasks[1].prio", ""},
		{"depends_on not a list", []any{with(step("a"), "depends_on", "b")}, 400, api.CodeBadRequest, "tasks[0].depends_on", ""},
		{"too many", many, 413, api.CodeTooLarge, "tasks", "10000"},
		{"held unique key", []any{step("a"), held}, 409, api.CodeConflict, "", "held"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := a.wantError(t, tc.status, tc.code, tc.field, "POST", "/v1/flows", map[string]any{"tasks": tc.body})
			if !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("message %q lacks %q", e.Message, tc.msg)
			}
		})
	}
	for _, tc := range []struct {
		name, body  string
		status      int
		code, field string
	}{
		{"no tasks", `{"name": "x"}`, 400, api.CodeBadRequest, "tasks"},
		{"empty tasks", `{"tasks": []}`, 422, api.CodeInvalid, "tasks"},
		{"unknown top-level field", `{"tasks": [{"key": "a", "kind": "k"}], "owner": "x"}`, 400, api.CodeBadRequest, "owner"},
		{"long name", `{"name": "` + strings.Repeat("n", 257) + `", "tasks": [{"key": "a", "kind": "k"}]}`, 422, api.CodeInvalid, "name"},
		{"metadata not an object", `{"metadata": [1], "tasks": [{"key": "a", "kind": "k"}]}`, 422, api.CodeInvalid, "metadata"},
		{"not JSON", `{"tasks": [`, 400, api.CodeBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.wantError(t, tc.status, tc.code, tc.field, "POST", "/v1/flows", tc.body)
		})
	}
	var list api.FlowList
	a.must(t, 200, "GET", "/v1/flows", nil, &list)
	if n := a.count(t); len(list.Flows) != 0 || n != 1 {
		t.Fatalf("bad flows wrote %d flows and %d tasks besides the one with the unique key", len(list.Flows), n-1)
	}
}

// TestFlowRemoteWorker runs a flow on a remote worker: a child reads its
// parents' outcomes from its claim, and a running member fans out under
// its lease, with a fan-in that waits for what it added.
func TestFlowRemoteWorker(t *testing.T) {
	a := newTestAPI(t, Config{})
	done := step("done", "split/*", "check")
	done["join"] = "all_done"
	res := a.submitFlow(t, step("split"), step("check"), done)

	root := a.claimKey(t, "split")
	if root.Parents != nil || root.FlowID != res.ID || root.Key != "split" {
		t.Fatalf("claimed root = %+v", root)
	}
	var added api.FlowEnqueued
	a.must(t, 201, "POST", "/v1/tasks/"+root.ID+"/members", map[string]any{"lease_token": root.LeaseToken,
		"tasks": []any{step("part-1", "split"), step("part-2", "split"), with(step("sum", "part-1", "part-2"), "join", "any_succeeded")}}, &added)
	if added.ID != res.ID || len(added.Tasks) != 3 || added.Tasks["sum"] == "" {
		t.Fatalf("added = %+v", added)
	}
	a.wantError(t, 422, api.CodeInvalid, "tasks[0].key", "POST", "/v1/tasks/"+root.ID+"/members",
		map[string]any{"lease_token": root.LeaseToken, "tasks": []any{step("part-1")}})
	a.wantError(t, 422, api.CodeInvalid, "tasks[0].depends_on[0]", "POST", "/v1/tasks/"+root.ID+"/members",
		map[string]any{"lease_token": root.LeaseToken, "tasks": []any{step("late", "*")}})
	a.wantError(t, 400, api.CodeBadRequest, "lease_token", "POST", "/v1/tasks/"+root.ID+"/members",
		map[string]any{"lease_token": "garbage", "tasks": []any{step("x")}})
	l, err := parseLeaseToken(root.ID, root.LeaseToken)
	if err != nil {
		t.Fatal(err)
	}
	// The token of another claim than the task's current one.
	stale := leaseToken(root.ID, l.epoch+1, time.Minute, false)
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", "/v1/tasks/"+root.ID+"/members",
		map[string]any{"lease_token": stale, "tasks": []any{step("x")}})
	if states := a.memberStates(t, res.ID); states["part-1"] != "blocked" || states["sum"] != "blocked" || len(states) != 6 {
		t.Fatalf("after adding: %v", states)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+root.ID+"/complete", map[string]any{"lease_token": root.LeaseToken, "result": map[string]int{"parts": 2}}, nil)
	// The attempt is over: so is its right to add members.
	a.wantError(t, 409, api.CodeLeaseLost, "lease_token", "POST", "/v1/tasks/"+root.ID+"/members",
		map[string]any{"lease_token": root.LeaseToken, "tasks": []any{step("x")}})

	p1 := a.claimKey(t, "part-1")
	if p := p1.Parents["split"]; len(p1.Parents) != 1 || p.TaskID != root.ID || p.State != "completed" || string(p.Result) != `{"parts":2}` || p.Errors == nil {
		t.Fatalf("part-1's parents = %+v", p1.Parents)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+p1.ID+"/complete", map[string]any{"lease_token": p1.LeaseToken, "result": 1}, nil)
	a.runKey(t, "part-2", nil)
	a.runKey(t, "check", "fine")
	if states := a.memberStates(t, res.ID); states["done"] != "blocked" {
		t.Fatalf("the fan-in did not wait for sum, which split added: %v", states)
	}
	sum := a.claimKey(t, "sum")
	if len(sum.Parents) != 2 || sum.Parents["part-1"].State != "completed" || sum.Parents["part-2"].State != "failed" ||
		len(sum.Parents["part-2"].Errors) != 1 || sum.Parents["part-2"].Errors[0].Error != "part-2 broke" {
		t.Fatalf("sum's parents = %+v", sum.Parents)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+sum.ID+"/complete", map[string]any{"lease_token": sum.LeaseToken}, nil)
	fin := a.claimKey(t, "done")
	if want := "check,part-1,part-2,split,sum"; strings.Join(keysOf(fin.Parents), ",") != want {
		t.Fatalf("done's parents = %v, want %s", keysOf(fin.Parents), want)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+fin.ID+"/complete", map[string]any{"lease_token": fin.LeaseToken}, nil)
	f := a.flow(t, res.ID)
	// part-2's failure was absorbed by sum (any_succeeded), which completed.
	if f.State != "succeeded" || f.Counts.Total != 6 || f.Counts.Failed != 1 {
		t.Fatalf("flow = %+v", f)
	}
	for _, m := range f.Members {
		if (m.Key == "part-1" || m.Key == "sum") && m.AddedBy != "split" {
			t.Fatalf("%s added by %q", m.Key, m.AddedBy)
		}
	}

	// A task outside any flow has nothing to add to.
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "plain", "queue": "plain"}, nil)
	plain := a.claimKey(t, "plain")
	a.wantError(t, 409, api.CodeConflict, "", "POST", "/v1/tasks/"+plain.ID+"/members",
		map[string]any{"lease_token": plain.LeaseToken, "tasks": []any{step("x")}})
}

// with sets fields of a member.
func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestFlowCancelRetry(t *testing.T) {
	a := newTestAPI(t, Config{})
	res := a.submitFlow(t, step("a"), step("b", "a"), step("c", "b"), step("side"))
	running := a.claimKey(t, "a")
	var f api.Flow
	a.must(t, 200, "POST", "/v1/flows/"+res.ID+"/cancel", nil, &f)
	if f.State != "running" || !f.CancelRequested || f.Members != nil || f.Counts.Cancelled != 3 {
		t.Fatalf("cancelled flow = %+v", f)
	}
	var hb api.HeartbeatResponse
	a.must(t, 200, "POST", "/v1/tasks/"+running.ID+"/heartbeat", map[string]any{"lease_token": running.LeaseToken}, &hb)
	if !hb.CancelRequested {
		t.Fatal("the running member was not asked to stop")
	}
	a.must(t, 200, "POST", "/v1/flows/"+res.ID+"/cancel", nil, nil)
	a.must(t, 200, "POST", "/v1/tasks/"+running.ID+"/fail", map[string]any{"lease_token": running.LeaseToken, "error": "stopped", "cancel": true}, nil)
	if f = a.flow(t, res.ID); f.State != "cancelled" || f.FinalizedAt == nil {
		t.Fatalf("flow = %+v", f)
	}

	a.must(t, 200, "POST", "/v1/flows/"+res.ID+"/retry", nil, &f)
	if f.State != "running" || f.CancelRequested {
		t.Fatalf("retried flow = %+v", f)
	}
	if states := a.memberStates(t, res.ID); states["a"] != "pending" || states["b"] != "blocked" || states["c"] != "blocked" || states["side"] != "pending" {
		t.Fatalf("after retry: %v", states)
	}
	a.wantError(t, 409, api.CodeConflict, "", "POST", "/v1/flows/"+res.ID+"/retry", nil)
	for _, k := range []string{"a", "b", "c", "side"} {
		a.runKey(t, k, k)
	}
	if f = a.flow(t, res.ID); f.State != "succeeded" {
		t.Fatalf("flow = %+v", f)
	}
	e := a.wantError(t, 409, api.CodeAlreadyFinished, "", "POST", "/v1/flows/"+res.ID+"/cancel", nil)
	if !strings.Contains(e.Message, "already succeeded") {
		t.Fatalf("message %q", e.Message)
	}

	unknown := "01a20000-0000-7000-8000-000000000000"
	for _, r := range []struct{ method, path string }{
		{"GET", ""}, {"POST", "/cancel"}, {"POST", "/retry"}, {"GET", "/events"},
	} {
		a.wantError(t, 404, api.CodeFlowNotFound, "", r.method, "/v1/flows/"+unknown+r.path, nil)
	}
	a.wantError(t, 404, api.CodeFlowNotFound, "", "GET", "/v1/flows/nope", nil)
}

// TestFlowEventsFollow follows a flow's events, each named by its
// member's key, until the flow is final.
func TestFlowEventsFollow(t *testing.T) {
	a := newTestAPI(t, Config{})
	res := a.submitFlow(t, step("a"), step("b", "a"))
	resp, err := a.srv.Client().Get(a.srv.URL + "/v1/flows/" + res.ID + "/events?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
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
	var got []string
	next := func(want string) {
		t.Helper()
		select {
		case ev, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended after %v, want %s", got, want)
			}
			got = append(got, ev.Key+":"+ev.Type)
			if ev.Key+":"+ev.Type != want || ev.TaskID != res.Tasks[ev.Key] {
				t.Fatalf("events %v (task %s), want %s last", got, ev.TaskID, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event within 5s after %v, want %s", got, want)
		}
	}
	next("a:created")
	next("b:created")
	a.runKey(t, "a", 1)
	next("a:started")
	next("a:completed")
	next("b:unblocked")
	// A member added at run time is named too.
	b := a.claimKey(t, "b")
	next("b:started")
	var added api.FlowEnqueued
	a.must(t, 201, "POST", "/v1/tasks/"+b.ID+"/members", map[string]any{"lease_token": b.LeaseToken, "tasks": []any{step("c")}}, &added)
	res.Tasks["c"] = added.Tasks["c"]
	next("c:created")
	a.must(t, 200, "POST", "/v1/tasks/"+b.ID+"/complete", map[string]any{"lease_token": b.LeaseToken}, nil)
	next("b:completed")
	a.runKey(t, "c", 1)
	next("c:started")
	next("c:completed")
	select {
	case ev, ok := <-lines:
		if ok {
			t.Fatalf("an event after the flow ended: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the followed stream did not end when the flow did")
	}
	status, body := a.do(t, "GET", "/v1/flows/"+res.ID+"/events", nil, "Accept", "text/event-stream")
	if status != 200 || strings.Count(string(body), "event: completed\n") != 3 {
		t.Fatalf("SSE = %d %q", status, body)
	}
	var flow api.Flow
	a.must(t, 200, "GET", "/v1/flows/"+res.ID, nil, &flow)
	last, err := a.st.FlowEvents(context.Background(), res.ID, 0, 0)
	if err != nil || flow.State != "succeeded" {
		t.Fatalf("flow %s, events %v", flow.State, err)
	}
	if status, _ := a.do(t, "GET", "/v1/flows/"+res.ID+"/events", nil, "Accept", "text/event-stream", "Last-Event-ID", itoa(last[len(last)-1].Seq)); status != 204 {
		t.Fatalf("SSE past the end of a finished flow = %d, want 204", status)
	}
	a.wantError(t, 400, api.CodeBadRequest, "after", "GET", "/v1/flows/"+res.ID+"/events?after=x", nil)
}
