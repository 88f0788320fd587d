package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Cases of store.Flows: dependencies between tasks.

var flowCases = []testCase{
	{"submit: roots pending, dependents blocked, counts exact", testFlowSubmit},
	{"submit: bad flows are refused whole with the field", testFlowRefused},
	{"join conditions over every combination of parent outcomes", testFlowJoins},
	{"a skip cascades three levels; a finalizer still runs", testFlowSkipCascade},
	{"a met quorum cancels the parents that only fed it", testFlowQuorumCancel},
	{"let_run keeps the other parents running", testFlowLetRun},
	{"flow state: succeeded, failed, absorbed by compensation", testFlowFinalStates},
	{"cancel a flow: pending and blocked at once, running by request", testFlowCancel},
	{"retry a flow: reopens what its failures skipped, keeps results", testFlowRetry},
	{"retry of one member reopens its skipped dependents", testFlowRetryMember},
	{"children read their parents' results and errors by key", testFlowParents},
	{"dynamic fan-out: members added at run time join the fan-in", testFlowFanOut},
	{"a rescued member that fails resolves its children once", testFlowRescue},
	{"parents finished together on two stores resolve a child once", testFlowConcurrentParents},
	{"a batch: completion callback over every member, progress", testFlowBatch},
	{"purge keeps unfinished flows and removes finished ones whole", testFlowPurge},
	{"flow events and listing", testFlowEventsAndList},
	{"bulk actions: a cancel resolves the flow; retry and delete leave members", testFlowBulk},
}

// member is a flow member whose queue is its key, so a test claims
// exactly the member it means.
func member(key string, deps ...string) store.NewFlowMember {
	return store.NewFlowMember{Key: key, Task: store.NewTask{Kind: "step", Queue: key, MaxAttempts: 1}, DependsOn: deps}
}

func joined(m store.NewFlowMember, j store.Join, quorum int) store.NewFlowMember {
	m.Join, m.Quorum = j, quorum
	return m
}

func (e *env) submit(t *testing.T, members ...store.NewFlowMember) store.FlowResult {
	t.Helper()
	res, err := e.st.EnqueueFlow(e.ctx, store.NewFlow{Name: t.Name(), Members: members})
	if err != nil {
		t.Fatalf("enqueue flow: %v", err)
	}
	return res
}

// run claims member key and records outcome state for it.
func (e *env) run(t *testing.T, key string, state store.State) *store.Task {
	t.Helper()
	c := e.claim(t, "n", time.Minute, q(key, 1))
	if len(c) != 1 {
		t.Fatalf("member %s was not ready to claim", key)
	}
	o := store.Outcome{TaskID: c[0].ID, Epoch: c[0].LeaseEpoch, State: state}
	switch state {
	case store.StateCompleted:
		o.Event, o.Result = store.EventCompleted, json.RawMessage(fmt.Sprintf(`{"from":%q}`, key))
	case store.StateFailed:
		o.Event, o.Error = store.EventFailed, &store.AttemptError{Attempt: c[0].Attempt, At: e.now(), Error: key + " broke"}
	case store.StateCancelled:
		o.Event = store.EventCancelled
	}
	finish(t, e, o)
	return c[0]
}

// states reads every member's state by key.
func (e *env) memberStates(t *testing.T, flowID string) map[string]store.State {
	t.Helper()
	ms, err := e.st.FlowMembers(e.ctx, flowID)
	if err != nil {
		t.Fatalf("flow members: %v", err)
	}
	out := map[string]store.State{}
	for _, m := range ms {
		out[m.Key] = m.State
	}
	return out
}

func (e *env) flow(t *testing.T, id string) *store.Flow {
	t.Helper()
	f, err := e.st.Flow(e.ctx, id)
	if err != nil {
		t.Fatalf("flow %s: %v", id, err)
	}
	return f
}

func assertStates(t *testing.T, e *env, flowID string, want map[string]store.State) {
	t.Helper()
	got := e.memberStates(t, flowID)
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("member %s is %s, want %s (all: %v)", k, got[k], w, got)
		}
	}
}

// assertFlowCounts checks the stored counts against the members' states:
// the counts are kept in the transactions that move members, so they must
// agree with a scan at every commit.
func assertFlowCounts(t *testing.T, e *env, flowID string) store.FlowCounts {
	t.Helper()
	f := e.flow(t, flowID)
	var want store.FlowCounts
	for _, s := range e.memberStates(t, flowID) {
		want.Total++
		want.CountFlowState(s, 1)
	}
	if f.Counts != want {
		t.Fatalf("flow counts %+v, members say %+v", f.Counts, want)
	}
	return f.Counts
}

func testFlowSubmit(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b"), member("c", "a", "b"))
	if len(res.Tasks) != 3 {
		t.Fatalf("tasks = %v", res.Tasks)
	}
	assertStates(t, e, res.ID, map[string]store.State{"a": store.StatePending, "b": store.StatePending, "c": store.StateBlocked})
	c := e.get(t, res.Tasks["c"])
	if c.FlowID != res.ID || c.FlowKey != "c" {
		t.Fatalf("task c: flow %q key %q, want %q c", c.FlowID, c.FlowKey, res.ID)
	}
	counts := assertFlowCounts(t, e, res.ID)
	if counts.Total != 3 || counts.Blocked != 1 || counts.Active != 2 {
		t.Fatalf("counts = %+v", counts)
	}
	if f := e.flow(t, res.ID); f.State != store.FlowRunning || f.Name != t.Name() {
		t.Fatalf("flow = %+v", f)
	}
	assertCounts(t, e, "c", map[store.State]int64{store.StateBlocked: 1})
	if got := e.claim(t, "n", time.Minute, q("c", 1)); len(got) != 0 {
		t.Fatal("a blocked member was claimed")
	}
	e.run(t, "a", store.StateCompleted)
	assertStates(t, e, res.ID, map[string]store.State{"c": store.StateBlocked})
	e.run(t, "b", store.StateCompleted)
	assertStates(t, e, res.ID, map[string]store.State{"c": store.StatePending})
	assertCounts(t, e, "c", map[store.State]int64{store.StatePending: 1})
	if evs := eventTypes(e.events(t, res.Tasks["c"])); !slices.Equal(evs, []store.EventType{store.EventCreated, store.EventUnblocked}) {
		t.Fatalf("events of c = %v", evs)
	}
	e.run(t, "c", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowSucceeded || f.FinalizedAt.IsZero() {
		t.Fatalf("flow after every member completed = %+v", f)
	}
	assertFlowCounts(t, e, res.ID)
}

func testFlowRefused(t *testing.T, e *env) {
	many := make([]store.NewFlowMember, store.DefaultMaxFlowMembers+1)
	for i := range many {
		many[i] = member(fmt.Sprintf("m%d", i))
	}
	cases := []struct {
		name    string
		members []store.NewFlowMember
		field   string
	}{
		{"cycle", []store.NewFlowMember{member("a", "c"), member("b", "a"), member("c", "b")}, "tasks[0].depends_on"},
		{"unknown key", []store.NewFlowMember{member("a"), member("b", "nope")}, "tasks[1].depends_on[0]"},
		{"duplicate key", []store.NewFlowMember{member("a"), member("a")}, "tasks[1].key"},
		{"self", []store.NewFlowMember{member("a", "a")}, "tasks[0].depends_on[0]"},
		{"quorum too high", []store.NewFlowMember{member("a"), member("b"), joined(member("c", "a", "b"), store.JoinQuorum, 3)}, "tasks[2].quorum"},
		{"quorum zero", []store.NewFlowMember{member("a"), joined(member("c", "a"), store.JoinQuorum, 0)}, "tasks[1].quorum"},
		{"join without parents", []store.NewFlowMember{joined(member("a"), store.JoinAllDone, 0)}, "tasks[0].join"},
		{"unknown join", []store.NewFlowMember{member("a"), joined(member("b", "a"), "most", 0)}, "tasks[1].join"},
		{"bad task", []store.NewFlowMember{member("a"), {Key: "b", Task: store.NewTask{Kind: ""}}}, "tasks[1].kind"},
		{"empty key", []store.NewFlowMember{{Task: store.NewTask{Kind: "k"}}}, "tasks[0].key"},
		{"too many", many, "tasks"},
	}
	for _, c := range cases {
		_, err := e.st.EnqueueFlow(e.ctx, store.NewFlow{Members: c.members})
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field {
			t.Fatalf("%s: error %v, want a validation error on %s", c.name, err, c.field)
		}
		if c.name == "too many" && !errors.Is(err, store.ErrTooLarge) {
			t.Fatalf("too many: %v does not match ErrTooLarge", err)
		}
		if c.name == "cycle" && ve.Message != "dependency cycle: a -> c -> b -> a" {
			t.Fatalf("cycle message = %q", ve.Message)
		}
	}
	if flows, err := e.st.ListFlows(e.ctx, store.FlowListParams{}); err != nil || len(flows) != 0 {
		t.Fatalf("after refusals: flows %v, %v; want none written", flows, err)
	}
	if stats, _ := e.st.Stats(e.ctx); len(stats) != 0 {
		t.Fatalf("after refusals: queues %v; want no task written", stats)
	}
	// A member whose unique key is held elsewhere refuses the flow whole.
	e.enqueue(t, store.NewTask{Kind: "k", UniqueKey: "held"})
	m := member("b")
	m.Task.UniqueKey = "held"
	if _, err := e.st.EnqueueFlow(e.ctx, store.NewFlow{Members: []store.NewFlowMember{member("a"), m}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("held unique key: %v, want ErrConflict", err)
	}
	if flows, _ := e.st.ListFlows(e.ctx, store.FlowListParams{}); len(flows) != 0 {
		t.Fatalf("a refused flow was written: %v", flows)
	}
}

func testFlowJoins(t *testing.T, e *env) {
	const (
		ok   = store.StateCompleted
		bad  = store.StateFailed
		stop = store.StateCancelled
	)
	cases := []struct {
		join    store.Join
		quorum  int
		parents []store.State
		want    store.State
		reason  string
	}{
		{store.JoinAllSucceeded, 0, []store.State{ok, ok, ok}, store.StatePending, ""},
		{store.JoinAllSucceeded, 0, []store.State{ok, bad}, store.StateSkipped, store.ReasonDependencyFailed},
		{store.JoinAllSucceeded, 0, []store.State{stop}, store.StateSkipped, store.ReasonDependencyCancelled},
		{store.JoinAnySucceeded, 0, []store.State{bad, bad, ok}, store.StatePending, ""},
		{store.JoinAnySucceeded, 0, []store.State{bad, stop}, store.StateSkipped, store.ReasonDependencyCancelled},
		{store.JoinQuorum, 2, []store.State{ok, bad, ok}, store.StatePending, ""},
		{store.JoinQuorum, 2, []store.State{bad, ok, bad}, store.StateSkipped, store.ReasonDependencyFailed},
		{store.JoinAllDone, 0, []store.State{bad, stop, ok}, store.StatePending, ""},
		{store.JoinNoneSucceeded, 0, []store.State{bad, stop}, store.StatePending, ""},
		{store.JoinNoneSucceeded, 0, []store.State{bad, ok}, store.StateSkipped, store.ReasonDependencySucceeded},
	}
	for i, c := range cases {
		name := fmt.Sprintf("%s/%d/%v", c.join, c.quorum, c.parents)
		var members []store.NewFlowMember
		var keys []string
		for p := range c.parents {
			k := fmt.Sprintf("j%d-p%d", i, p)
			keys = append(keys, k)
			members = append(members, member(k))
		}
		child := joined(member(fmt.Sprintf("j%d-c", i), keys...), c.join, c.quorum)
		child.LetRun = c.join == store.JoinAnySucceeded || c.join == store.JoinQuorum
		members = append(members, child)
		res := e.submit(t, members...)
		for p, s := range c.parents {
			if got := e.memberStates(t, res.ID)[child.Key]; got != store.StateBlocked {
				// Decided early: the remaining parents must not matter.
				if got != c.want {
					t.Fatalf("%s: child became %s after %d parents, want %s", name, got, p, c.want)
				}
				break
			}
			e.run(t, keys[p], s)
		}
		ms, _ := e.st.FlowMembers(e.ctx, res.ID)
		cm := ms[len(ms)-1]
		if cm.State != c.want || cm.Reason != c.reason {
			t.Fatalf("%s: child is %s (reason %q), want %s (reason %q)", name, cm.State, cm.Reason, c.want, c.reason)
		}
		if !slices.Equal(cm.DependsOn, keys) {
			t.Fatalf("%s: depends_on = %v, want %v", name, cm.DependsOn, keys)
		}
		assertFlowCounts(t, e, res.ID)
	}
}

func testFlowSkipCascade(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b", "a"), member("c", "b"), member("d", "c"),
		joined(member("fin", "d"), store.JoinAllDone, 0))
	e.run(t, "a", store.StateFailed)
	assertStates(t, e, res.ID, map[string]store.State{
		"b": store.StateSkipped, "c": store.StateSkipped, "d": store.StateSkipped, "fin": store.StatePending})
	ms, _ := e.st.FlowMembers(e.ctx, res.ID)
	for _, m := range ms {
		if m.Key == "d" && (m.Reason != store.ReasonDependencySkipped || m.ReasonKey != "c") {
			t.Fatalf("d skipped for %q by %q, want %q by c", m.Reason, m.ReasonKey, store.ReasonDependencySkipped)
		}
	}
	evs := e.events(t, res.Tasks["b"])
	last := evs[len(evs)-1]
	if last.Type != store.EventSkipped {
		t.Fatalf("b's events = %v", eventTypes(evs))
	}
	assertJSON(t, "b's skipped event", last.Data, json.RawMessage(`{"reason":"dependency_failed","dependency":"a"}`))
	assertCounts(t, e, "c", map[store.State]int64{store.StateSkipped: 1})
	assertFlowCounts(t, e, res.ID)
	e.run(t, "fin", store.StateCompleted)
	// The finalizer ran, but it depends on d, not a: a's failure stands.
	if f := e.flow(t, res.ID); f.State != store.FlowFailed {
		t.Fatalf("flow = %s, want failed", f.State)
	}
}

func testFlowQuorumCancel(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b"), member("c"), member("d"), member("other", "d"),
		joined(member("q", "a", "b", "c", "d"), store.JoinQuorum, 2))
	running := e.claim(t, "n", time.Minute, q("c", 1))[0]
	e.run(t, "a", store.StateCompleted)
	e.run(t, "b", store.StateCompleted)
	assertStates(t, e, res.ID, map[string]store.State{
		"q": store.StatePending, "c": store.StateRunning, "d": store.StatePending})
	// c only fed q, and runs: asked to stop. d also feeds "other": kept.
	if got := e.get(t, running.ID); !got.CancelRequested {
		t.Fatal("the running parent that only fed the met quorum was not asked to stop")
	}
	res2 := e.submit(t, member("x"), member("y"), joined(member("any", "x", "y"), store.JoinAnySucceeded, 0))
	e.run(t, "x", store.StateCompleted)
	assertStates(t, e, res2.ID, map[string]store.State{"any": store.StatePending, "y": store.StateCancelled})
	ms, _ := e.st.FlowMembers(e.ctx, res2.ID)
	for _, m := range ms {
		if m.Key == "y" && (m.Reason != store.ReasonJoinMet || m.ReasonKey != "any") {
			t.Fatalf("y cancelled for %q by %q", m.Reason, m.ReasonKey)
		}
	}
	assertFlowCounts(t, e, res2.ID)
	e.run(t, "any", store.StateCompleted)
	// y's cancellation was by design: the flow succeeded.
	if f := e.flow(t, res2.ID); f.State != store.FlowSucceeded {
		t.Fatalf("flow = %s, want succeeded", f.State)
	}
}

func testFlowLetRun(t *testing.T, e *env) {
	child := joined(member("any", "x", "y"), store.JoinAnySucceeded, 0)
	child.LetRun = true
	res := e.submit(t, member("x"), member("y"), child)
	e.run(t, "x", store.StateCompleted)
	assertStates(t, e, res.ID, map[string]store.State{"any": store.StatePending, "y": store.StatePending})
}

func testFlowFinalStates(t *testing.T, e *env) {
	// A failure absorbed by compensation that completed.
	res := e.submit(t, member("pay"), joined(member("refund", "pay"), store.JoinNoneSucceeded, 0),
		member("ship", "pay"))
	e.run(t, "pay", store.StateFailed)
	assertStates(t, e, res.ID, map[string]store.State{"refund": store.StatePending, "ship": store.StateSkipped})
	e.run(t, "refund", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowSucceeded {
		t.Fatalf("compensated flow = %s, want succeeded", f.State)
	}
	// Compensation skipped by design when the step succeeded.
	res = e.submit(t, member("pay2"), joined(member("refund2", "pay2"), store.JoinNoneSucceeded, 0))
	e.run(t, "pay2", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowSucceeded || f.Counts.Skipped != 1 {
		t.Fatalf("flow = %+v, want succeeded with one skipped", f)
	}
	// A failure nothing absorbs.
	res = e.submit(t, member("lone"))
	e.run(t, "lone", store.StateFailed)
	if f := e.flow(t, res.ID); f.State != store.FlowFailed {
		t.Fatalf("flow = %s, want failed", f.State)
	}
}

func testFlowCancel(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b"), member("c", "a"), member("d", "c"))
	running := e.claim(t, "n", time.Minute, q("a", 1))[0]
	f, err := e.st.CancelFlow(e.ctx, res.ID)
	if err != nil {
		t.Fatalf("cancel flow: %v", err)
	}
	if !f.CancelRequested || f.State != store.FlowRunning {
		t.Fatalf("flow after cancel = %+v, want running with cancel requested (a still runs)", f)
	}
	assertStates(t, e, res.ID, map[string]store.State{
		"a": store.StateRunning, "b": store.StateCancelled, "c": store.StateCancelled, "d": store.StateCancelled})
	if !e.get(t, running.ID).CancelRequested {
		t.Fatal("the running member was not asked to stop")
	}
	if _, err := e.st.CancelFlow(e.ctx, res.ID); err != nil {
		t.Fatalf("second cancel: %v (cancel is idempotent)", err)
	}
	finish(t, e, store.Outcome{TaskID: running.ID, Epoch: running.LeaseEpoch, State: store.StateCancelled, Event: store.EventCancelled})
	if f := e.flow(t, res.ID); f.State != store.FlowCancelled {
		t.Fatalf("flow = %s, want cancelled", f.State)
	}
	assertFlowCounts(t, e, res.ID)
	if _, err := e.st.CancelFlow(e.ctx, res.ID); err != nil {
		t.Fatalf("cancel of a cancelled flow: %v", err)
	}
	done := e.submit(t, member("z"))
	e.run(t, "z", store.StateCompleted)
	if f, err := e.st.CancelFlow(e.ctx, done.ID); !errors.Is(err, store.ErrAlreadyFinished) || f == nil || f.State != store.FlowSucceeded {
		t.Fatalf("cancel of a succeeded flow: %v, %v", f, err)
	}
	if _, err := e.st.CancelFlow(e.ctx, uuid.NewString()); !errors.Is(err, store.ErrFlowNotFound) {
		t.Fatalf("cancel of an unknown flow: %v", err)
	}
}

func testFlowRetry(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b", "a"), member("c", "b"), member("side"),
		joined(member("fin", "c"), store.JoinAllDone, 0))
	e.run(t, "side", store.StateCompleted)
	e.run(t, "a", store.StateCompleted)
	e.run(t, "b", store.StateFailed)
	e.run(t, "fin", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowFailed {
		t.Fatalf("flow = %s, want failed", f.State)
	}
	f, err := e.st.RetryFlow(e.ctx, res.ID)
	if err != nil {
		t.Fatalf("retry flow: %v", err)
	}
	if f.State != store.FlowRunning || !f.FinalizedAt.IsZero() {
		t.Fatalf("flow after retry = %+v", f)
	}
	// b runs again; c waits on it again; completed members keep results.
	assertStates(t, e, res.ID, map[string]store.State{
		"a": store.StateCompleted, "side": store.StateCompleted, "b": store.StatePending,
		"c": store.StateBlocked, "fin": store.StateCompleted})
	if a := e.get(t, res.Tasks["a"]); string(a.Result) == "" {
		t.Fatal("a's result was lost by the retry")
	}
	assertFlowCounts(t, e, res.ID)
	assertCounts(t, e, "c", map[store.State]int64{store.StateBlocked: 1})
	e.run(t, "b", store.StateCompleted)
	e.run(t, "c", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowSucceeded {
		t.Fatalf("flow after the retry's run = %s, want succeeded", f.State)
	}
	if _, err := e.st.RetryFlow(e.ctx, res.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("retry of a succeeded flow: %v, want ErrConflict", err)
	}
	if _, err := e.st.RetryFlow(e.ctx, uuid.NewString()); !errors.Is(err, store.ErrFlowNotFound) {
		t.Fatalf("retry of an unknown flow: %v", err)
	}
}

func testFlowRetryMember(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b", "a"), member("c", "b"))
	e.run(t, "a", store.StateFailed)
	assertStates(t, e, res.ID, map[string]store.State{"b": store.StateSkipped, "c": store.StateSkipped})
	got, err := e.st.Retry(e.ctx, res.Tasks["a"])
	if err != nil || got.State != store.StatePending {
		t.Fatalf("retry member: %+v, %v", got, err)
	}
	assertStates(t, e, res.ID, map[string]store.State{"a": store.StatePending, "b": store.StateBlocked, "c": store.StateBlocked})
	assertFlowCounts(t, e, res.ID)
	e.run(t, "a", store.StateCompleted)
	e.run(t, "b", store.StateCompleted)
	e.run(t, "c", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowSucceeded {
		t.Fatalf("flow = %s", f.State)
	}
}

func testFlowParents(t *testing.T, e *env) {
	res := e.submit(t, member("fetch"), member("parse"), joined(member("report", "fetch", "parse"), store.JoinAllDone, 0))
	e.run(t, "fetch", store.StateCompleted)
	e.run(t, "parse", store.StateFailed)
	ps, err := e.st.Parents(e.ctx, res.Tasks["report"])
	if err != nil || len(ps) != 2 {
		t.Fatalf("parents: %v, %v", ps, err)
	}
	if ps[0].Key != "fetch" || ps[0].State != store.StateCompleted || ps[0].TaskID != res.Tasks["fetch"] {
		t.Fatalf("parent 0 = %+v", ps[0])
	}
	assertJSON(t, "fetch's result", ps[0].Result, json.RawMessage(`{"from":"fetch"}`))
	if ps[1].Key != "parse" || ps[1].State != store.StateFailed || len(ps[1].Errors) != 1 || ps[1].Errors[0].Error != "parse broke" {
		t.Fatalf("parent 1 = %+v", ps[1])
	}
	if ps, err := e.st.Parents(e.ctx, res.Tasks["fetch"]); err != nil || len(ps) != 0 {
		t.Fatalf("parents of a root: %v, %v", ps, err)
	}
}

func testFlowFanOut(t *testing.T, e *env) {
	res := e.submit(t, member("split"), member("merge", "split/*"))
	sp := e.claim(t, "n", time.Minute, q("split", 1))[0]
	added, err := e.st.AddMembers(e.ctx, sp.ID, sp.LeaseEpoch, []store.NewFlowMember{
		member("part-1"), member("part-2"), member("part-3", "split")})
	if err != nil {
		t.Fatalf("add members: %v", err)
	}
	if added.ID != res.ID || len(added.Tasks) != 3 {
		t.Fatalf("added = %+v", added)
	}
	if _, err := e.st.AddMembers(e.ctx, sp.ID, sp.LeaseEpoch+1, []store.NewFlowMember{member("late")}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("add under a stale epoch: %v", err)
	}
	if _, err := e.st.AddMembers(e.ctx, sp.ID, sp.LeaseEpoch, []store.NewFlowMember{member("part-1")}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("add of an existing key: %v", err)
	}
	assertStates(t, e, res.ID, map[string]store.State{
		"part-1": store.StatePending, "part-2": store.StatePending, "part-3": store.StateBlocked, "merge": store.StateBlocked})
	counts := assertFlowCounts(t, e, res.ID)
	if counts.Total != 5 {
		t.Fatalf("total = %d, want 5", counts.Total)
	}
	finish(t, e, store.Outcome{TaskID: sp.ID, Epoch: sp.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	assertStates(t, e, res.ID, map[string]store.State{"part-3": store.StatePending, "merge": store.StateBlocked})
	e.run(t, "part-1", store.StateCompleted)
	e.run(t, "part-2", store.StateCompleted)
	assertStates(t, e, res.ID, map[string]store.State{"merge": store.StateBlocked})
	e.run(t, "part-3", store.StateCompleted)
	assertStates(t, e, res.ID, map[string]store.State{"merge": store.StatePending})
	ms, _ := e.st.FlowMembers(e.ctx, res.ID)
	for _, m := range ms {
		if m.Key == "part-1" && m.AddedBy != "split" {
			t.Fatalf("part-1 added by %q", m.AddedBy)
		}
		if m.Key == "merge" && len(m.DependsOn) != 4 {
			t.Fatalf("merge depends on %v, want split and its three parts", m.DependsOn)
		}
	}
	e.run(t, "merge", store.StateCompleted)
	if f := e.flow(t, res.ID); f.State != store.FlowSucceeded {
		t.Fatalf("flow = %s", f.State)
	}
	plain := e.enqueue(t, task("k"))[0].ID
	pc := e.claim(t, "n", time.Minute, q(store.DefaultQueue, 1))[0]
	if _, err := e.st.AddMembers(e.ctx, plain, pc.LeaseEpoch, []store.NewFlowMember{member("x")}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("add from a task outside any flow: %v", err)
	}
}

func testFlowRescue(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b", "a"))
	c := e.claim(t, "n", time.Second, q("a", 1))[0]
	e.clock.Advance(2 * time.Second)
	if n := e.rescue(t, store.RescueParams{}); n != 1 {
		t.Fatalf("rescued %d", n)
	}
	// MaxAttempts 1: the rescue fails it, and b is skipped in the same
	// transaction.
	assertStates(t, e, res.ID, map[string]store.State{"a": store.StateFailed, "b": store.StateSkipped})
	if _, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}}); err != nil {
		t.Fatal(err)
	}
	assertStates(t, e, res.ID, map[string]store.State{"a": store.StateFailed, "b": store.StateSkipped})
	skipped := 0
	for _, ev := range e.events(t, res.Tasks["b"]) {
		if ev.Type == store.EventSkipped {
			skipped++
		}
	}
	if skipped != 1 {
		t.Fatalf("b was skipped %d times", skipped)
	}
	assertFlowCounts(t, e, res.ID)
}

func testFlowConcurrentParents(t *testing.T, e *env) {
	other := e.open(t)
	const rounds = 10
	for r := range rounds {
		a, b := fmt.Sprintf("a%d", r), fmt.Sprintf("b%d", r)
		res := e.submit(t, member(a), member(b), member(fmt.Sprintf("c%d", r), a, b))
		ca := e.claim(t, "n", time.Minute, q(a, 1))[0]
		cb := e.claim(t, "n", time.Minute, q(b, 1))[0]
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, pair := range []struct {
			st store.Store
			t  *store.Task
		}{{e.st, ca}, {other, cb}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = pair.st.Finish(e.ctx, []store.Outcome{{TaskID: pair.t.ID, Epoch: pair.t.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}})
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		child := res.Tasks[fmt.Sprintf("c%d", r)]
		if got := e.get(t, child).State; got != store.StatePending {
			t.Fatalf("round %d: the child is %s, want pending", r, got)
		}
		unblocked := 0
		for _, ev := range e.events(t, child) {
			if ev.Type == store.EventUnblocked {
				unblocked++
			}
		}
		if unblocked != 1 {
			t.Fatalf("round %d: the child was unblocked %d times", r, unblocked)
		}
		assertFlowCounts(t, e, res.ID)
	}
}

func testFlowBatch(t *testing.T, e *env) {
	members := []store.NewFlowMember{joined(member("done", store.AllMembers), store.JoinAllDone, 0)}
	for i := range 6 {
		m := member(fmt.Sprintf("item-%d", i))
		m.Task.Queue = "items"
		members = append(members, m)
	}
	res := e.submit(t, members...)
	for i := range 6 {
		if f := e.flow(t, res.ID); i >= 3 && (f.Rate <= 0 || f.ETA <= 0) {
			t.Fatalf("after %d of 7 done: rate %v, eta %v; want an estimate", i, f.Rate, f.ETA)
		} else if i < 3 && f.ETA != 0 {
			t.Fatalf("an ETA after only %d done", i)
		}
		c := e.claim(t, "n", time.Minute, q("items", 1))[0]
		state := store.StateCompleted
		if i == 0 {
			state = store.StateFailed
		}
		finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: state, Event: store.EventCompleted})
		e.clock.Advance(time.Second)
	}
	assertStates(t, e, res.ID, map[string]store.State{"done": store.StatePending})
	if f := e.flow(t, res.ID); f.Counts.Done() != 6 || f.Counts.Failed != 1 {
		t.Fatalf("counts = %+v", f.Counts)
	}
}

func testFlowPurge(t *testing.T, e *env) {
	unfinished := e.submit(t, member("u1"), member("u2", "u1"))
	e.run(t, "u1", store.StateCompleted)
	finished := e.submit(t, member("f1"), member("f2", "f1"))
	e.run(t, "f1", store.StateCompleted)
	e.run(t, "f2", store.StateCompleted)
	e.clock.Advance(time.Hour)
	cut := map[store.State]time.Time{store.StateCompleted: e.now(), store.StateFailed: e.now(), store.StateCancelled: e.now(), store.StateSkipped: e.now()}
	for p := (store.PurgeParams{Before: cut}); ; {
		r, err := e.st.Purge(e.ctx, p)
		if err != nil {
			t.Fatalf("purge: %v", err)
		}
		if r.Done {
			break
		}
		p.After = r.Next
	}
	if _, err := e.st.Get(e.ctx, unfinished.Tasks["u1"]); err != nil {
		t.Fatalf("a completed member of an unfinished flow was purged: %v", err)
	}
	if _, err := e.st.Flow(e.ctx, finished.ID); !errors.Is(err, store.ErrFlowNotFound) {
		t.Fatalf("finished flow after purge: %v", err)
	}
	if _, err := e.st.Get(e.ctx, finished.Tasks["f1"]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("member of a purged flow: %v", err)
	}
	if evs, _ := e.st.Events(e.ctx, finished.Tasks["f2"], 0, 0); len(evs) != 0 {
		t.Fatalf("events of a purged member remain: %v", evs)
	}
	if c := countsOf(t, e, e.st)["f1"].Counts; len(c) != 0 {
		t.Fatalf("purged members still counted: %v", c)
	}
}

func testFlowEventsAndList(t *testing.T, e *env) {
	a := e.submit(t, member("e1"), member("e2", "e1"))
	b := e.submit(t, member("l1"))
	e.run(t, "e1", store.StateCompleted)
	e.run(t, "l1", store.StateCompleted)
	evs, err := e.st.FlowEvents(e.ctx, a.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, ev := range evs {
		if i > 0 && ev.Seq <= evs[i-1].Seq {
			t.Fatalf("flow events out of order: %v", evs)
		}
		got = append(got, string(ev.Type))
	}
	want := []string{"created", "created", "started", "completed", "unblocked"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("flow events = %v, want %v", got, want)
	}
	rest, _ := e.st.FlowEvents(e.ctx, a.ID, evs[2].Seq, 0)
	if len(rest) != 2 {
		t.Fatalf("events after a cursor = %v", rest)
	}
	all, err := e.st.ListFlows(e.ctx, store.FlowListParams{})
	if err != nil || len(all) != 2 || all[0].ID != a.ID {
		t.Fatalf("list = %v, %v", all, err)
	}
	done, _ := e.st.ListFlows(e.ctx, store.FlowListParams{States: []store.FlowState{store.FlowSucceeded}})
	if len(done) != 1 || done[0].ID != b.ID {
		t.Fatalf("list succeeded = %v", done)
	}
	page, _ := e.st.ListFlows(e.ctx, store.FlowListParams{After: a.ID, Limit: 1})
	if len(page) != 1 || page[0].ID != b.ID {
		t.Fatalf("second page = %v", page)
	}
}

func testFlowBulk(t *testing.T, e *env) {
	res := e.submit(t, member("a"), member("b", "a"), joined(member("fin", "b"), store.JoinAllDone, 0))
	r, err := e.st.Bulk(e.ctx, store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Queue: "a"}})
	if err != nil || r.Changed != 1 {
		t.Fatalf("bulk cancel: %+v %v", r, err)
	}
	assertStates(t, e, res.ID, map[string]store.State{"a": store.StateCancelled, "b": store.StateSkipped, "fin": store.StatePending})
	assertFlowCounts(t, e, res.ID)
	for _, a := range []store.BulkAction{store.BulkRetry, store.BulkDelete} {
		r, err := e.st.Bulk(e.ctx, store.BulkParams{Action: a, Filter: store.TaskFilter{IDs: []string{res.Tasks["a"], res.Tasks["b"]}}})
		if err != nil || r.Changed != 0 {
			t.Fatalf("bulk %s of flow members: %+v %v; want them left to their flow", a, r, err)
		}
	}
	assertStates(t, e, res.ID, map[string]store.State{"a": store.StateCancelled, "b": store.StateSkipped})
}
