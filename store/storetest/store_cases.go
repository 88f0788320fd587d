package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

var storeCases = []testCase{
	{"enqueue fills defaults and writes a created event", testEnqueueDefaults},
	{"enqueue keeps every field", testEnqueueFields},
	{"batch with one bad task writes nothing", testBatchAtomic},
	{"validation names the task and field", testValidation},
	{"unique key returns the existing task", testUniqueKey},
	{"unique key is released by failure and cancel", testUniqueKeyReleased},
	{"claim leases, bumps attempt and epoch", testClaim},
	{"claim order: priority, then run_at, then age", testClaimOrder},
	{"claim respects run_at, queues, limits and kinds", testClaimFilters},
	{"claim never hands one task to two owners", testClaimExclusive},
	{"finish records each outcome once under its epoch", testFinishFenced},
	{"finish: retry, snooze, release, fail, cancel", testFinishStates},
	{"cancel: pending, running, finished, missing", testCancel},
	{"cancel request wins over a retry", testCancelBeatsRetry},
	{"retry makes a failed task pending again", testRetryFailed},
	{"retry makes a cancelled task pending again", testRetryCancelled},
	{"retry refuses pending, running, completed and unknown tasks", testRetryRefused},
	{"retry refuses a task whose unique key is held again", testRetryUniqueKey},
	{"heartbeat and progress are fenced", testHeartbeatProgress},
	{"renew leases extends and reports cancels", testRenewLeases},
	{"rescue expired leases", testRescue},
	{"rescue the tasks of dead nodes", testRescueDeadNodes},
	{"rescue fails tasks that may not be resumed", testRescueNotResumable},
	{"purge finished tasks by age, window by window", testPurge},
	{"leadership: one holder, terms, expiry, resignation", testLead},
	{"queue statistics agree with the tasks after every kind of change", testStats},
	{"events resume after a cursor", testEventsCursor},
	{"next run_at across priorities and kinds", testNextRunAt},
	{"paused queues are not claimed, on any store, until resumed", testPauseQueue},
	{"list filters and pages", testList},
	{"subscribe wakes on work-making commits", testSubscribe},
	{"enqueue in the caller's transaction", testEnqueueTx},
	{"a second store on the same database sees and wakes", testSecondStore},
}

func testEnqueueDefaults(t *testing.T, e *env) {
	before := time.Now().Add(-time.Second)
	res := e.enqueue(t, store.NewTask{Kind: "email"})
	if len(res) != 1 || res[0].Duplicate {
		t.Fatalf("result = %+v, want one fresh task", res)
	}
	id, err := uuid.Parse(res[0].ID)
	if err != nil || id.Version() != 7 {
		t.Fatalf("id %q is not a UUIDv7 (err %v)", res[0].ID, err)
	}
	got := e.get(t, res[0].ID)
	if got.Kind != "email" || got.Queue != store.DefaultQueue || got.State != store.StatePending ||
		got.Attempt != 0 || got.MaxAttempts != store.DefaultMaxAttempts || string(got.Args) != "{}" {
		t.Fatalf("defaults not applied: %+v", got)
	}
	if got.RunAt.Before(before) || got.CreatedAt.Before(before) || got.RunAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("run_at %v / created_at %v not about now", got.RunAt, got.CreatedAt)
	}
	if evs := e.events(t, got.ID); !reflect.DeepEqual(eventTypes(evs), []store.EventType{store.EventCreated}) {
		t.Fatalf("events = %v, want [created]", eventTypes(evs))
	}
	if _, err := e.st.Get(e.ctx, uuid.NewString()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get of unknown id: err = %v, want ErrNotFound", err)
	}
}

func testEnqueueFields(t *testing.T, e *env) {
	runAt := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	in := store.NewTask{
		Kind: "report.build", Queue: "reports", Args: json.RawMessage(`{"month":"2026-11","ids":[1,2]}`),
		Priority: 7, RunAt: runAt, MaxAttempts: 3, AttemptTimeout: 90 * time.Second,
		UniqueKey: "report-2026-11", Metadata: json.RawMessage(`{"tenant":"acme"}`),
	}
	res := e.enqueue(t, in)
	got := e.get(t, res[0].ID)
	if got.Kind != in.Kind || got.Queue != in.Queue || got.Priority != 7 || !got.RunAt.Equal(runAt) ||
		got.MaxAttempts != 3 || got.AttemptTimeout != 90*time.Second || got.UniqueKey != in.UniqueKey {
		t.Fatalf("fields not kept: %+v", got)
	}
	assertJSON(t, "args", got.Args, in.Args)
	assertJSON(t, "metadata", got.Metadata, in.Metadata)
}

func assertJSON(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: stored value %q is not JSON: %v", what, got, err)
	}
	_ = json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func testBatchAtomic(t *testing.T, e *env) {
	batch := []store.NewTask{task("a"), task("b"), {Kind: "c", Args: json.RawMessage(`{not json`)}, task("d")}
	_, err := e.st.Enqueue(e.ctx, batch)
	var ve *store.ValidationError
	if !errors.As(err, &ve) || ve.Index != 2 || ve.Field != "args" || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("err = %v, want a ValidationError for task 2, field args", err)
	}
	if all, err := e.st.List(e.ctx, store.ListParams{}); err != nil || len(all) != 0 {
		t.Fatalf("after a rejected batch the store holds %d tasks (err %v), want 0", len(all), err)
	}
	// A large valid batch is all there afterwards, and keeps batch order.
	big := make([]store.NewTask, 500)
	for i := range big {
		big[i] = store.NewTask{Kind: "bulk", Args: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	res := e.enqueue(t, big...)
	all, err := e.st.List(e.ctx, store.ListParams{Limit: 1000})
	if err != nil || len(all) != 500 {
		t.Fatalf("list after batch of 500: %d tasks, err %v", len(all), err)
	}
	for i, r := range res {
		if all[i].ID != r.ID {
			t.Fatalf("task %d: listed %s, enqueued %s: ids are not in creation order", i, all[i].ID, r.ID)
		}
	}
}

func testValidation(t *testing.T, e *env) {
	huge := json.RawMessage(`{"x":"` + strings.Repeat("a", store.DefaultMaxArgsBytes) + `"}`)
	cases := []struct {
		task  store.NewTask
		field string
	}{
		{store.NewTask{}, "kind"},
		{store.NewTask{Kind: "9lives"}, "kind"},
		{store.NewTask{Kind: "has space"}, "kind"},
		{store.NewTask{Kind: "k", Queue: "bad/queue"}, "queue"},
		{store.NewTask{Kind: "k", Queue: strings.Repeat("q", store.MaxNameLength+1)}, "queue"},
		{store.NewTask{Kind: "k", Args: json.RawMessage(`{"a":`)}, "args"},
		{store.NewTask{Kind: "k", Args: huge}, "args"},
		{store.NewTask{Kind: "k", Metadata: json.RawMessage(`[1]`)}, "metadata"},
		{store.NewTask{Kind: "k", MaxAttempts: -1}, "max_attempts"},
		{store.NewTask{Kind: "k", AttemptTimeout: -time.Second}, "timeout"},
		{store.NewTask{Kind: "k", ID: "not-a-uuid"}, "id"},
		{store.NewTask{Kind: "k", UniqueKey: strings.Repeat("u", store.MaxUniqueKeyLength+1)}, "unique_key"},
	}
	for _, c := range cases {
		_, err := e.st.Enqueue(e.ctx, []store.NewTask{c.task})
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Field != c.field || ve.Index != -1 {
			t.Errorf("enqueue %+v: err = %v, want a ValidationError on %q", c.task.Kind, err, c.field)
		}
	}
	if _, err := e.st.Enqueue(e.ctx, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty batch: err = %v, want ErrInvalid", err)
	}
	if all, _ := e.st.List(e.ctx, store.ListParams{}); len(all) != 0 {
		t.Fatalf("rejected input wrote %d tasks", len(all))
	}
}

func testUniqueKey(t *testing.T, e *env) {
	first := e.enqueue(t, store.NewTask{Kind: "sync", UniqueKey: "user-42"})[0]
	again := e.enqueue(t, store.NewTask{Kind: "sync", UniqueKey: "user-42"})[0]
	if !again.Duplicate || again.ID != first.ID {
		t.Fatalf("second enqueue = %+v, want duplicate of %s", again, first.ID)
	}
	// Within one batch: the second of two equal keys is the duplicate.
	batch := e.enqueue(t, store.NewTask{Kind: "sync", UniqueKey: "user-7"}, store.NewTask{Kind: "sync", UniqueKey: "user-7"}, task("other"))
	if batch[0].Duplicate || !batch[1].Duplicate || batch[1].ID != batch[0].ID || batch[2].Duplicate {
		t.Fatalf("batch results = %+v", batch)
	}
	// Still held while running and once completed.
	claimed := e.claim(t, "n1", time.Minute, q(store.DefaultQueue, 10))
	for _, c := range claimed {
		if c.ID == first.ID {
			if res := e.enqueue(t, store.NewTask{Kind: "sync", UniqueKey: "user-42"})[0]; !res.Duplicate {
				t.Fatalf("running task's key was not held")
			}
			finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
		}
	}
	if res := e.enqueue(t, store.NewTask{Kind: "sync", UniqueKey: "user-42"})[0]; !res.Duplicate || res.ID != first.ID {
		t.Fatalf("completed task's key was not held: %+v", res)
	}
	all, _ := e.st.List(e.ctx, store.ListParams{Kind: "sync"})
	if len(all) != 2 {
		t.Fatalf("%d sync tasks stored, want 2", len(all))
	}
}

func testUniqueKeyReleased(t *testing.T, e *env) {
	a := e.enqueue(t, store.NewTask{Kind: "k", UniqueKey: "once"})[0]
	if _, err := e.st.Cancel(e.ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	b := e.enqueue(t, store.NewTask{Kind: "k", UniqueKey: "once"})[0]
	if b.Duplicate || b.ID == a.ID {
		t.Fatalf("key of a cancelled task still held: %+v", b)
	}
	c := e.claim(t, "n1", time.Minute, q(store.DefaultQueue, 1))[0]
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateFailed, Event: store.EventFailed,
		Error: &store.AttemptError{Attempt: 1, At: time.Now(), Error: "boom"}})
	if d := e.enqueue(t, store.NewTask{Kind: "k", UniqueKey: "once"})[0]; d.Duplicate {
		t.Fatalf("key of a failed task still held")
	}
}

func finish(t *testing.T, e *env, outcomes ...store.Outcome) {
	t.Helper()
	res, err := e.st.Finish(e.ctx, outcomes)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("finish outcome %d (%s): %v", i, outcomes[i].TaskID, r.Err)
		}
	}
}

func testClaim(t *testing.T, e *env) {
	id := e.enqueue(t, task("k"))[0].ID
	before := time.Now()
	got := e.claim(t, "node-a", time.Minute, q(store.DefaultQueue, 5))
	if len(got) != 1 || got[0].ID != id {
		t.Fatalf("claimed %v, want the one task", got)
	}
	c := got[0]
	if c.State != store.StateRunning || c.Attempt != 1 || c.LeaseEpoch < 1 || c.LeaseOwner != "node-a" {
		t.Fatalf("claimed task = state %s attempt %d epoch %d owner %q", c.State, c.Attempt, c.LeaseEpoch, c.LeaseOwner)
	}
	if c.LeaseExpiresAt.Before(before.Add(59*time.Second)) || c.AttemptedAt.IsZero() {
		t.Fatalf("lease expiry %v / attempted_at %v not set", c.LeaseExpiresAt, c.AttemptedAt)
	}
	if again := e.claim(t, "node-b", time.Minute, q(store.DefaultQueue, 5)); len(again) != 0 {
		t.Fatalf("a running task was claimed again: %v", again)
	}
	if evs := eventTypes(e.events(t, id)); !reflect.DeepEqual(evs, []store.EventType{store.EventCreated, store.EventStarted}) {
		t.Fatalf("events = %v", evs)
	}
	if _, err := e.st.Claim(e.ctx, store.ClaimRequest{Queues: []store.QueueClaim{q("default", 1)}, LeaseTTL: time.Second}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("claim without owner: err = %v, want ErrInvalid", err)
	}
}

func testClaimOrder(t *testing.T, e *env) {
	now := time.Now()
	var order []string
	add := func(prio int, runAt time.Time) string {
		id := e.enqueue(t, store.NewTask{Kind: "k", Priority: prio, RunAt: runAt})[0].ID
		return id
	}
	low := add(0, now.Add(-time.Minute))
	highLate := add(5, now.Add(-time.Second))
	highEarly := add(5, now.Add(-time.Hour))
	lowSameA := add(0, now.Add(-30*time.Second))
	lowSameB := add(0, now.Add(-30*time.Second))
	neg := add(-3, now.Add(-2*time.Hour))
	for {
		got := e.claim(t, "n", time.Minute, q(store.DefaultQueue, 1))
		if len(got) == 0 {
			break
		}
		order = append(order, got[0].ID)
	}
	want := []string{highEarly, highLate, low, lowSameA, lowSameB, neg}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("claim order = %v\nwant %v", order, want)
	}
	// A batch claim returns the same order.
	for i := 0; i < 3; i++ {
		add(i, now.Add(-time.Minute))
	}
	batch := e.claim(t, "n", time.Minute, q(store.DefaultQueue, 10))
	if len(batch) != 3 || batch[0].Priority != 2 || batch[2].Priority != 0 {
		t.Fatalf("batch claim not in priority order: %v", batch)
	}
}

func testClaimFilters(t *testing.T, e *env) {
	e.enqueue(t,
		store.NewTask{Kind: "a", Queue: "q1"}, store.NewTask{Kind: "a", Queue: "q1"}, store.NewTask{Kind: "a", Queue: "q1"},
		store.NewTask{Kind: "b", Queue: "q2"}, store.NewTask{Kind: "c", Queue: "q2"},
		store.NewTask{Kind: "a", Queue: "q3", RunAt: time.Now().Add(time.Hour)},
	)
	got, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Minute,
		Queues: []store.QueueClaim{q("q1", 2), q("q2", 5), q("q3", 5)}, Kinds: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, c := range got {
		count[c.Queue+"/"+c.Kind]++
	}
	if !reflect.DeepEqual(count, map[string]int{"q1/a": 2, "q2/b": 1}) {
		t.Fatalf("claimed %v, want 2 of q1/a (limit), 1 of q2/b (kind filter), none of q3 (future)", count)
	}
	if got := e.claim(t, "n", time.Minute, q("q1", 0)); len(got) != 0 {
		t.Fatalf("a zero limit claimed %d", len(got))
	}
}

func testClaimExclusive(t *testing.T, e *env) {
	const n = 400
	batch := make([]store.NewTask, n)
	for i := range batch {
		batch[i] = task("k")
	}
	e.enqueue(t, batch...)
	other := e.open(t)
	seen := make(chan string, 2*n)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		st := e.st
		if w%2 == 1 {
			st = other
		}
		go func(w int) {
			for {
				got, err := st.Claim(e.ctx, store.ClaimRequest{Owner: fmt.Sprintf("w%d", w), LeaseTTL: time.Minute, Queues: []store.QueueClaim{q("default", 7)}})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					errs <- nil
					return
				}
				for _, c := range got {
					seen <- c.ID
				}
			}
		}(w)
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Fatalf("claim: %v", err)
		}
	}
	close(seen)
	ids := map[string]bool{}
	for id := range seen {
		if ids[id] {
			t.Fatalf("task %s claimed twice", id)
		}
		ids[id] = true
	}
	if len(ids) != n {
		t.Fatalf("claimed %d distinct tasks, want %d", len(ids), n)
	}
}

func testFinishFenced(t *testing.T, e *env) {
	id := e.enqueue(t, task("k"))[0].ID
	c := e.claim(t, "n", time.Minute, q("default", 1))[0]
	ok := store.Outcome{TaskID: id, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted, Result: json.RawMessage(`{"ok":true}`)}
	stale := ok
	stale.Epoch = c.LeaseEpoch - 1
	res, err := e.st.Finish(e.ctx, []store.Outcome{stale, ok, ok})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, store.ErrLeaseLost) || res[1].Err != nil || !errors.Is(res[2].Err, store.ErrLeaseLost) {
		t.Fatalf("results = %v, want [lease lost, nil, lease lost]", res)
	}
	got := e.get(t, id)
	if got.State != store.StateCompleted || got.FinalizedAt.IsZero() {
		t.Fatalf("task = %s finalized %v", got.State, got.FinalizedAt)
	}
	assertJSON(t, "result", got.Result, json.RawMessage(`{"ok":true}`))
	completed := 0
	for _, ev := range e.events(t, id) {
		if ev.Type == store.EventCompleted {
			completed++
		}
	}
	if completed != 1 {
		t.Fatalf("%d completed events, want exactly 1", completed)
	}
}

func testFinishStates(t *testing.T, e *env) {
	mk := func() *store.Task {
		e.enqueue(t, store.NewTask{Kind: "k", MaxAttempts: 5})
		return e.claim(t, "n", time.Minute, q("default", 1))[0]
	}
	at := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	boom := &store.AttemptError{Attempt: 1, At: time.Now().UTC().Truncate(time.Microsecond), Error: "boom", Stack: "goroutine 1"}
	cases := []struct {
		o           store.Outcome
		state       store.State
		attempt     int
		errs        int
		event       store.EventType
		runAt       time.Time
		ownerKept   bool
		finalized   bool
		description string
	}{
		{store.Outcome{State: store.StatePending, RunAt: at, Error: boom, Event: store.EventRetryScheduled}, store.StatePending, 1, 1, store.EventRetryScheduled, at, false, false, "retry"},
		{store.Outcome{State: store.StatePending, RunAt: at, Refund: true, Event: store.EventSnoozed}, store.StatePending, 0, 0, store.EventSnoozed, at, false, false, "snooze"},
		{store.Outcome{State: store.StatePending, RunAt: at, Refund: true, Event: store.EventReleased}, store.StatePending, 0, 0, store.EventReleased, at, false, false, "release"},
		{store.Outcome{State: store.StateFailed, Error: boom, Event: store.EventFailed}, store.StateFailed, 1, 1, store.EventFailed, time.Time{}, true, true, "fail"},
		{store.Outcome{State: store.StateCancelled, Error: boom, Event: store.EventCancelled}, store.StateCancelled, 1, 1, store.EventCancelled, time.Time{}, true, true, "cancel"},
	}
	for _, c := range cases {
		tk := mk()
		o := c.o
		o.TaskID, o.Epoch = tk.ID, tk.LeaseEpoch
		finish(t, e, o)
		got := e.get(t, tk.ID)
		if got.State != c.state || got.Attempt != c.attempt || len(got.Errors) != c.errs {
			t.Errorf("%s: state %s attempt %d errors %d, want %s %d %d", c.description, got.State, got.Attempt, len(got.Errors), c.state, c.attempt, c.errs)
		}
		if c.errs > 0 && (got.Errors[0].Error != "boom" || got.Errors[0].Stack != "goroutine 1" || got.Errors[0].Attempt != 1) {
			t.Errorf("%s: error history = %+v", c.description, got.Errors)
		}
		if !c.runAt.IsZero() && !got.RunAt.Equal(c.runAt) {
			t.Errorf("%s: run_at %v, want %v", c.description, got.RunAt, c.runAt)
		}
		if (got.LeaseOwner != "") != c.ownerKept || got.FinalizedAt.IsZero() == c.finalized {
			t.Errorf("%s: owner %q finalized %v", c.description, got.LeaseOwner, got.FinalizedAt)
		}
		evs := e.events(t, tk.ID)
		if last := evs[len(evs)-1]; last.Type != c.event {
			t.Errorf("%s: last event %s, want %s", c.description, last.Type, c.event)
		}
		if c.state == store.StatePending {
			// Out of the way of the next case's claim.
			if _, err := e.st.Cancel(e.ctx, tk.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: "x", State: store.StateRunning}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("finish to running: err = %v, want ErrInvalid", err)
	}
}

func testCancel(t *testing.T, e *env) {
	pending := e.enqueue(t, store.NewTask{Kind: "k", Queue: "p"})[0].ID
	got, err := e.st.Cancel(e.ctx, pending)
	if err != nil || got.State != store.StateCancelled {
		t.Fatalf("cancel pending: %v, %v", got, err)
	}
	if evs := eventTypes(e.events(t, pending)); evs[len(evs)-1] != store.EventCancelled {
		t.Fatalf("events = %v", evs)
	}
	if c := e.claim(t, "n", time.Minute, q("p", 1)); len(c) != 0 {
		t.Fatalf("a cancelled task was claimed")
	}
	running := e.enqueue(t, store.NewTask{Kind: "k", Queue: "r"})[0].ID
	c := e.claim(t, "n", time.Minute, q("r", 1))[0]
	got, err = e.st.Cancel(e.ctx, running)
	if err != nil || got.State != store.StateRunning || !got.CancelRequested {
		t.Fatalf("cancel running: %+v, %v; want running with cancel requested", got, err)
	}
	if ids, err := e.st.CancelRequests(e.ctx, "n"); err != nil || !reflect.DeepEqual(ids, []string{running}) {
		t.Fatalf("CancelRequested = %v, %v", ids, err)
	}
	finish(t, e, store.Outcome{TaskID: running, Epoch: c.LeaseEpoch, State: store.StateCancelled, Event: store.EventCancelled})
	got, err = e.st.Cancel(e.ctx, running)
	if !errors.Is(err, store.ErrAlreadyFinished) || got == nil || got.State != store.StateCancelled {
		t.Fatalf("cancel finished: %v, %v; want ErrAlreadyFinished with the task", got, err)
	}
	if _, err := e.st.Cancel(e.ctx, uuid.NewString()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel missing: %v", err)
	}
}

func testCancelBeatsRetry(t *testing.T, e *env) {
	id := e.enqueue(t, task("k"))[0].ID
	c := e.claim(t, "n", time.Minute, q("default", 1))[0]
	if _, err := e.st.Cancel(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	finish(t, e, store.Outcome{TaskID: id, Epoch: c.LeaseEpoch, State: store.StatePending, RunAt: time.Now(), Event: store.EventRetryScheduled,
		Error: &store.AttemptError{Attempt: 1, At: time.Now(), Error: "interrupted"}})
	if got := e.get(t, id); got.State != store.StateCancelled || got.FinalizedAt.IsZero() {
		t.Fatalf("state = %s, want cancelled", got.State)
	}
	evs := eventTypes(e.events(t, id))
	if evs[len(evs)-1] != store.EventCancelled {
		t.Fatalf("events = %v, want a final cancelled", evs)
	}
}

func testHeartbeatProgress(t *testing.T, e *env) {
	id := e.enqueue(t, task("k"))[0].ID
	c := e.claim(t, "n", time.Second, q("default", 1))[0]
	cancel, err := e.st.ExtendLease(e.ctx, id, c.LeaseEpoch, time.Hour)
	if err != nil || cancel {
		t.Fatalf("heartbeat = %v, %v", cancel, err)
	}
	if got := e.get(t, id); got.LeaseExpiresAt.Before(time.Now().Add(50 * time.Minute)) {
		t.Fatalf("heartbeat did not extend the lease: %v", got.LeaseExpiresAt)
	}
	if err := e.st.Progress(e.ctx, id, c.LeaseEpoch, json.RawMessage(`{"done":3,"of":10}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ExtendLease(e.ctx, id, c.LeaseEpoch+1, time.Hour); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale heartbeat: %v, want ErrLeaseLost", err)
	}
	if err := e.st.Progress(e.ctx, id, c.LeaseEpoch-1, json.RawMessage(`{}`)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale progress: %v, want ErrLeaseLost", err)
	}
	if err := e.st.Progress(e.ctx, id, c.LeaseEpoch, json.RawMessage(`{nope`)); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad progress JSON: %v, want ErrInvalid", err)
	}
	if _, err := e.st.ExtendLease(e.ctx, uuid.NewString(), 1, time.Hour); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("heartbeat of a missing task: %v, want ErrNotFound", err)
	}
	if _, err := e.st.Cancel(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if cancel, err := e.st.ExtendLease(e.ctx, id, c.LeaseEpoch, time.Hour); err != nil || !cancel {
		t.Fatalf("heartbeat after cancel = %v, %v; want cancel requested", cancel, err)
	}
	evs := e.events(t, id)
	var progress []store.Event
	for _, ev := range evs {
		if ev.Type == store.EventProgress {
			progress = append(progress, ev)
		}
	}
	if len(progress) != 1 || progress[0].Attempt != 1 {
		t.Fatalf("progress events = %+v", progress)
	}
	assertJSON(t, "progress", progress[0].Data, json.RawMessage(`{"done":3,"of":10}`))
}

func testRenewLeases(t *testing.T, e *env) {
	e.enqueue(t, task("k"), task("k"), task("k"))
	mine := e.claim(t, "me", time.Second, q("default", 2))
	theirs := e.claim(t, "them", time.Second, q("default", 1))
	if _, err := e.st.Cancel(e.ctx, mine[0].ID); err != nil {
		t.Fatal(err)
	}
	leases, err := e.st.ExtendLeases(e.ctx, "me", time.Hour)
	if err != nil || len(leases) != 2 {
		t.Fatalf("renew = %v, %v; want my 2 leases", leases, err)
	}
	for _, l := range leases {
		if l.CancelRequested != (l.TaskID == mine[0].ID) {
			t.Fatalf("lease %+v: wrong cancel flag", l)
		}
		if got := e.get(t, l.TaskID); got.LeaseExpiresAt.Before(time.Now().Add(50 * time.Minute)) {
			t.Fatalf("lease of %s not extended", l.TaskID)
		}
	}
	if got := e.get(t, theirs[0].ID); got.LeaseExpiresAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("another owner's lease was extended")
	}
}

func testRescue(t *testing.T, e *env) {
	e.enqueue(t,
		store.NewTask{Kind: "k", Queue: "retry", MaxAttempts: 3},
		store.NewTask{Kind: "k", Queue: "last", MaxAttempts: 1},
		store.NewTask{Kind: "k", Queue: "cancel", MaxAttempts: 3},
		store.NewTask{Kind: "k", Queue: "alive", MaxAttempts: 3},
	)
	retry := e.claim(t, "dead", time.Millisecond, q("retry", 1))[0]
	last := e.claim(t, "dead", time.Millisecond, q("last", 1))[0]
	cancel := e.claim(t, "dead", time.Millisecond, q("cancel", 1))[0]
	alive := e.claim(t, "live", time.Hour, q("alive", 1))[0]
	if _, err := e.st.Cancel(e.ctx, cancel.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	n, err := e.st.Rescue(e.ctx, store.RescueParams{Limit: 100})
	if err != nil || n != 3 {
		t.Fatalf("rescued %d (err %v), want 3", n, err)
	}
	for _, c := range []struct {
		task  *store.Task
		state store.State
		event store.EventType
	}{{retry, store.StatePending, store.EventRescued}, {last, store.StateFailed, store.EventFailed}, {cancel, store.StateCancelled, store.EventCancelled}, {alive, store.StateRunning, store.EventStarted}} {
		got := e.get(t, c.task.ID)
		evs := e.events(t, c.task.ID)
		if got.State != c.state || evs[len(evs)-1].Type != c.event {
			t.Errorf("%s: state %s last event %s, want %s / %s", c.task.Queue, got.State, evs[len(evs)-1].Type, c.state, c.event)
		}
		if c.state != store.StateRunning {
			if got.LeaseEpoch != c.task.LeaseEpoch+1 || len(got.Errors) != 1 || !strings.Contains(got.Errors[0].Error, "lease expired") {
				t.Errorf("%s: epoch %d errors %+v; want epoch bumped and the lost attempt recorded", c.task.Queue, got.LeaseEpoch, got.Errors)
			}
		}
	}
	// The dead owner's late completion is refused.
	res, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: retry.ID, Epoch: retry.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}})
	if err != nil || !errors.Is(res[0].Err, store.ErrLeaseLost) {
		t.Fatalf("late completion: %v %v, want ErrLeaseLost", res, err)
	}
	// The rescued task runs again as attempt 2.
	again := e.claim(t, "live", time.Hour, q("retry", 1))
	// Rescue stepped the epoch by one; the claim steps it again.
	if len(again) != 1 || again[0].Attempt != 2 || again[0].LeaseEpoch <= retry.LeaseEpoch+1 {
		t.Fatalf("re-claim = %+v", again)
	}
}

func testEventsCursor(t *testing.T, e *env) {
	id := e.enqueue(t, task("k"))[0].ID
	c := e.claim(t, "n", time.Minute, q("default", 1))[0]
	for i := 0; i < 5; i++ {
		if err := e.st.Progress(e.ctx, id, c.LeaseEpoch, json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	finish(t, e, store.Outcome{TaskID: id, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	all := e.events(t, id)
	if len(all) != 8 {
		t.Fatalf("%d events, want 8 (created, started, 5 progress, completed)", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Fatalf("event cursors not increasing: %d then %d", all[i-1].Seq, all[i].Seq)
		}
	}
	rest, err := e.st.Events(e.ctx, id, all[3].Seq, 2)
	if err != nil || len(rest) != 2 || rest[0].Seq != all[4].Seq || rest[1].Seq != all[5].Seq {
		t.Fatalf("events after %d limit 2 = %+v, %v", all[3].Seq, rest, err)
	}
	if none, _ := e.st.Events(e.ctx, id, all[7].Seq, 0); len(none) != 0 {
		t.Fatalf("events after the last = %v", none)
	}
}

func testNextRunAt(t *testing.T, e *env) {
	if _, ok, err := e.st.NextRunAt(e.ctx, []string{"default"}, nil); ok || err != nil {
		t.Fatalf("empty queue: ok %v err %v", ok, err)
	}
	base := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	e.enqueue(t,
		store.NewTask{Kind: "a", Priority: 9, RunAt: base.Add(3 * time.Minute)},
		store.NewTask{Kind: "a", Priority: 0, RunAt: base.Add(2 * time.Minute)},
		store.NewTask{Kind: "b", Priority: -4, RunAt: base.Add(time.Minute)},
		store.NewTask{Kind: "a", Queue: "other", RunAt: base},
	)
	got, ok, err := e.st.NextRunAt(e.ctx, []string{"default"}, nil)
	if err != nil || !ok || !got.Equal(base.Add(time.Minute)) {
		t.Fatalf("next = %v %v %v, want %v", got, ok, err, base.Add(time.Minute))
	}
	got, _, _ = e.st.NextRunAt(e.ctx, []string{"default"}, []string{"a"})
	if !got.Equal(base.Add(2 * time.Minute)) {
		t.Fatalf("next for kind a = %v, want %v", got, base.Add(2*time.Minute))
	}
	got, _, _ = e.st.NextRunAt(e.ctx, []string{"default", "other"}, nil)
	if !got.Equal(base) {
		t.Fatalf("next over two queues = %v, want %v", got, base)
	}
}

func testList(t *testing.T, e *env) {
	var ids []string
	for i := 0; i < 7; i++ {
		kind := "a"
		if i%2 == 1 {
			kind = "b"
		}
		ids = append(ids, e.enqueue(t, store.NewTask{Kind: kind, Queue: "l"})[0].ID)
	}
	c := e.claim(t, "n", time.Minute, q("l", 1))[0]
	page1, err := e.st.List(e.ctx, store.ListParams{Queue: "l", Limit: 3})
	if err != nil || len(page1) != 3 || page1[0].ID != ids[0] {
		t.Fatalf("page 1 = %d tasks, %v", len(page1), err)
	}
	page2, _ := e.st.List(e.ctx, store.ListParams{Queue: "l", Limit: 3, After: page1[2].ID})
	if len(page2) != 3 || page2[0].ID != ids[3] {
		t.Fatalf("page 2 does not resume after page 1")
	}
	bs, _ := e.st.List(e.ctx, store.ListParams{Kind: "b"})
	if len(bs) != 3 {
		t.Fatalf("kind filter: %d, want 3", len(bs))
	}
	running, _ := e.st.List(e.ctx, store.ListParams{States: []store.State{store.StateRunning}})
	if len(running) != 1 || running[0].ID != c.ID {
		t.Fatalf("state filter: %v", running)
	}
	if _, err := e.st.List(e.ctx, store.ListParams{States: []store.State{"sleeping"}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("unknown state: %v, want ErrInvalid", err)
	}
}

func testSubscribe(t *testing.T, e *env) {
	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	e.enqueue(t, task("k"))
	expectWake(t, ch, "enqueue")
	c := e.claim(t, "n", time.Minute, q("default", 1))[0]
	drain(ch)
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StatePending, RunAt: time.Now(), Refund: true, Event: store.EventReleased})
	expectWake(t, ch, "a task released to pending")
	// Many commits coalesce into at most one pending signal.
	for i := 0; i < 20; i++ {
		e.enqueue(t, task("k"))
	}
	expectWake(t, ch, "burst")
	select {
	case <-ch:
		select {
		case <-ch:
			t.Fatal("more than one pending signal after a burst")
		case <-time.After(20 * time.Millisecond):
		}
	case <-time.After(20 * time.Millisecond):
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond):
			return
		}
	}
}

// expectWake asserts a wakeup within a generous bound: it proves the path
// exists; its speed is measured in benchmarks.
func expectWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(200 * time.Millisecond):
		t.Fatalf("no wakeup within 200ms after %s", what)
	}
}

func testEnqueueTx(t *testing.T, e *env) {
	if e.h.EnqueueInOwnTx == nil {
		t.Skip("backend has no caller-transaction enqueue")
	}
	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{task("tx")}, false); err != nil {
		t.Fatal(err)
	}
	if all, _ := e.st.List(e.ctx, store.ListParams{Kind: "tx"}); len(all) != 0 {
		t.Fatalf("a rolled-back transaction left %d tasks", len(all))
	}
	res, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{task("tx"), task("tx")}, true)
	if err != nil || len(res) != 2 {
		t.Fatalf("enqueue in tx: %v %v", res, err)
	}
	expectWake(t, ch, "a commit on the caller's own connection")
	if all, _ := e.st.List(e.ctx, store.ListParams{Kind: "tx"}); len(all) != 2 {
		t.Fatalf("committed transaction: %d tasks, want 2", len(all))
	}
	if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{{Kind: ""}}, true); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("invalid task in tx: %v, want ErrInvalid", err)
	}
}

func testSecondStore(t *testing.T, e *env) {
	other := e.open(t)
	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	res, err := other.Enqueue(e.ctx, []store.NewTask{task("x")})
	if err != nil {
		t.Fatal(err)
	}
	expectWake(t, ch, "a commit by another store on the same database")
	if got := e.get(t, res[0].ID); got.State != store.StatePending {
		t.Fatalf("task written by the other store: %s", got.State)
	}
}

func testPurge(t *testing.T, e *env) {
	// 6 completed, 2 failed, 2 cancelled, 2 pending, 1 running.
	var completed []string
	for i := 0; i < 6; i++ {
		completed = append(completed, e.enqueue(t, store.NewTask{Kind: "k", Queue: "done"})[0].ID)
	}
	for _, c := range e.claim(t, "n", time.Minute, q("done", 10)) {
		finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	}
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "bad"}, store.NewTask{Kind: "k", Queue: "bad"})
	for _, c := range e.claim(t, "n", time.Minute, q("bad", 10)) {
		finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateFailed, Event: store.EventFailed,
			Error: &store.AttemptError{Attempt: 1, At: time.Now(), Error: "x"}})
	}
	for _, r := range e.enqueue(t, store.NewTask{Kind: "k", Queue: "gone"}, store.NewTask{Kind: "k", Queue: "gone"}) {
		if _, err := e.st.Cancel(e.ctx, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "wait"}, store.NewTask{Kind: "k", Queue: "wait"}, store.NewTask{Kind: "k", Queue: "run"})
	e.claim(t, "n", time.Minute, q("run", 1))

	if _, err := e.st.Purge(e.ctx, store.PurgeParams{Before: map[store.State]time.Time{store.StatePending: time.Now()}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("purging pending tasks: %v, want ErrInvalid", err)
	}
	// A cutoff before the tasks finished deletes nothing.
	if res, err := e.st.Purge(e.ctx, store.PurgeParams{Before: map[store.State]time.Time{store.StateFailed: time.Now().Add(-time.Hour)}}); err != nil || res.Deleted != 0 || !res.Done {
		t.Fatalf("purge with an old cutoff = %+v (err %v), want nothing deleted and the sweep done", res, err)
	}
	later := time.Now().Add(time.Hour)
	// A limit stops a pass early and keeps the cursor on its window.
	res, err := e.st.Purge(e.ctx, store.PurgeParams{Before: map[store.State]time.Time{store.StateCompleted: later}, Limit: 2})
	if err != nil || res.Deleted != 2 || res.Next != "" || res.Done {
		t.Fatalf("limited purge = %+v, %v; want 2 deleted, the same (start) cursor, not done", res, err)
	}
	// Small windows walk the table to the end of the sweep.
	total, cursor := 2, ""
	for pass := 0; ; pass++ {
		res, err := e.st.Purge(e.ctx, store.PurgeParams{Before: map[store.State]time.Time{store.StateCompleted: later, store.StateCancelled: later}, After: cursor, Window: 3})
		if err != nil {
			t.Fatal(err)
		}
		total += res.Deleted
		if res.Done {
			break
		}
		if res.Next <= cursor || pass > 20 {
			t.Fatalf("cursor did not advance: %q after %q", res.Next, cursor)
		}
		cursor = res.Next
	}
	if total != 8 {
		t.Fatalf("purged %d tasks, want 8 (6 completed, 2 cancelled)", total)
	}
	for _, id := range completed {
		if _, err := e.st.Get(e.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("purged task %s still readable: %v", id, err)
		}
		if evs := e.events(t, id); len(evs) != 0 {
			t.Fatalf("purged task %s kept %d events", id, len(evs))
		}
	}
	left := map[store.State]int{}
	all, _ := e.st.List(e.ctx, store.ListParams{})
	for _, task := range all {
		left[task.State]++
	}
	if want := map[store.State]int{store.StateFailed: 2, store.StatePending: 2, store.StateRunning: 1}; !reflect.DeepEqual(left, want) {
		t.Fatalf("left after purge: %v, want %v", left, want)
	}
}

func testLead(t *testing.T, e *env) {
	lead := func(st store.Store, holder string, ttl time.Duration) (int64, bool) {
		t.Helper()
		term, held, err := st.Lead(e.ctx, "maintenance", holder, ttl)
		if err != nil {
			t.Fatalf("lead by %s: %v", holder, err)
		}
		return term, held
	}
	other := e.open(t)
	if _, err := e.st.Leader(e.ctx, "maintenance"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("leader before anyone led: %v, want ErrNotFound", err)
	}
	if term, held := lead(e.st, "a", time.Hour); !held || term != 1 {
		t.Fatalf("first leader: term %d held %v", term, held)
	}
	if l, err := e.st.Leader(e.ctx, "maintenance"); err != nil || l.Holder != "a" || l.Term != 1 || !l.Current(time.Now()) {
		t.Fatalf("leader = %+v, %v", l, err)
	}
	if term, held := lead(other, "b", time.Hour); held || term != 1 {
		t.Fatalf("a second candidate: term %d held %v; want refused, term 1", term, held)
	}
	if term, held := lead(e.st, "a", 5*time.Millisecond); !held || term != 1 {
		t.Fatalf("renewal: term %d held %v", term, held)
	}
	time.Sleep(10 * time.Millisecond)
	if term, held := lead(other, "b", time.Hour); !held || term != 2 {
		t.Fatalf("takeover after expiry: term %d held %v; want term 2", term, held)
	}
	if _, held := lead(e.st, "a", time.Hour); held {
		t.Fatal("the old leader renewed over the new one")
	}
	if err := other.Resign(e.ctx, "maintenance", "b"); err != nil {
		t.Fatal(err)
	}
	if term, held := lead(e.st, "a", time.Hour); !held || term != 3 {
		t.Fatalf("after resignation: term %d held %v; want term 3 at once", term, held)
	}
	if _, _, err := e.st.Lead(e.ctx, "", "a", time.Hour); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("lead without a role: %v", err)
	}
	// Many candidates on two stores: exactly one wins a free role.
	var (
		mu      sync.Mutex
		winners = map[string]bool{}
		wg      sync.WaitGroup
	)
	for i := 0; i < 8; i++ {
		st := e.st
		if i%2 == 1 {
			st = other
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			holder := fmt.Sprintf("n%d", i)
			for j := 0; j < 5; j++ {
				if _, held, err := st.Lead(e.ctx, "race", holder, time.Hour); err == nil && held {
					mu.Lock()
					winners[holder] = true
					mu.Unlock()
				}
			}
		}(i)
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d candidates held the role: %v", len(winners), winners)
	}
}

func testRescueDeadNodes(t *testing.T, e *env) {
	for _, id := range []string{"dead", "alive"} {
		if err := e.st.TouchNode(e.ctx, store.Node{ID: id, Host: "h", PID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "d"}, store.NewTask{Kind: "k", Queue: "a"}, store.NewTask{Kind: "k", Queue: "x"})
	// Long leases: only the owner's death can free these tasks.
	dead := e.claim(t, "dead", time.Hour, q("d", 1))[0]
	alive := e.claim(t, "alive", time.Hour, q("a", 1))[0]
	remote := e.claim(t, "remote-worker", time.Hour, q("x", 1))[0]
	time.Sleep(30 * time.Millisecond)
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "alive"}); err != nil {
		t.Fatal(err)
	}
	n, err := e.st.Rescue(e.ctx, store.RescueParams{DeadAfter: 20 * time.Millisecond})
	if err != nil || n != 1 {
		t.Fatalf("rescued %d (err %v), want only the dead node's task", n, err)
	}
	got := e.get(t, dead.ID)
	evs := e.events(t, dead.ID)
	last := evs[len(evs)-1]
	if got.State != store.StatePending || last.Type != store.EventRescued || !strings.Contains(string(last.Data), "owner_died") ||
		!strings.Contains(got.Errors[0].Error, "owner died") {
		t.Fatalf("dead node's task: %s, last event %s %s, errors %+v", got.State, last.Type, last.Data, got.Errors)
	}
	// An owner that is not a registered node (a remote worker) is judged
	// by its lease alone.
	for _, id := range []string{alive.ID, remote.ID} {
		if got := e.get(t, id); got.State != store.StateRunning {
			t.Fatalf("task %s of a live owner was rescued", id)
		}
	}
	nodes, err := e.st.Nodes(e.ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "alive" || nodes[0].PID != 1 {
		t.Fatalf("nodes after rescue = %+v, %v; want the dead node removed", nodes, err)
	}
	if err := e.st.RemoveNode(e.ctx, "alive"); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := e.st.Nodes(e.ctx); len(nodes) != 0 {
		t.Fatalf("nodes after removal = %+v", nodes)
	}
}

func testRescueNotResumable(t *testing.T, e *env) {
	once := e.enqueue(t, store.NewTask{Kind: "charge", MaxAttempts: 5})[0].ID
	again := e.enqueue(t, store.NewTask{Kind: "resize", MaxAttempts: 5})[0].ID
	claimed, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Millisecond,
		Queues: []store.QueueClaim{q("default", 10)}, NotResumable: []string{"charge"}})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	time.Sleep(5 * time.Millisecond)
	if n, err := e.st.Rescue(e.ctx, store.RescueParams{}); err != nil || n != 2 {
		t.Fatalf("rescued %d, %v", n, err)
	}
	got := e.get(t, once)
	evs := e.events(t, once)
	last := evs[len(evs)-1]
	if got.State != store.StateFailed || last.Type != store.EventFailed || !strings.Contains(string(last.Data), "owner_died") {
		t.Fatalf("not-resumable task: %s, last event %s %s", got.State, last.Type, last.Data)
	}
	if got := e.get(t, again); got.State != store.StatePending {
		t.Fatalf("resumable task: %s, want pending", got.State)
	}
	if _, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Second,
		Queues: []store.QueueClaim{q("default", 1)}, NotResumable: []string{"bad'kind"}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a bad kind name in NotResumable: %v, want ErrInvalid", err)
	}
}

func testStats(t *testing.T, e *env) {
	past := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	e.enqueue(t,
		store.NewTask{Kind: "k", Queue: "alpha", RunAt: past},
		store.NewTask{Kind: "k", Queue: "alpha", Priority: 3},
		store.NewTask{Kind: "k", Queue: "alpha", RunAt: time.Now().Add(time.Hour)},
		store.NewTask{Kind: "k", Queue: "beta"}, store.NewTask{Kind: "k", Queue: "beta"},
		store.NewTask{Kind: "k", Queue: "beta"}, store.NewTask{Kind: "k", Queue: "beta"},
		store.NewTask{Kind: "k", Queue: "beta"}, store.NewTask{Kind: "k", Queue: "beta"},
	)
	if e.h.EnqueueInOwnTx != nil {
		if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{{Kind: "k", Queue: "gamma"}}, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{{Kind: "k", Queue: "gamma"}}, false); err != nil {
			t.Fatal(err)
		}
	}
	beta := e.claim(t, "n", time.Minute, q("beta", 5))
	finish(t, e,
		store.Outcome{TaskID: beta[0].ID, Epoch: beta[0].LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted},
		store.Outcome{TaskID: beta[1].ID, Epoch: beta[1].LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted},
		store.Outcome{TaskID: beta[2].ID, Epoch: beta[2].LeaseEpoch, State: store.StateFailed, Event: store.EventFailed,
			Error: &store.AttemptError{Attempt: 1, At: time.Now(), Error: "x"}},
		store.Outcome{TaskID: beta[3].ID, Epoch: beta[3].LeaseEpoch, State: store.StatePending, RunAt: time.Now().Add(time.Hour), Event: store.EventRetryScheduled},
	)
	// A stale outcome changes nothing.
	if _, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: beta[0].ID, Epoch: 99, State: store.StateFailed, Event: store.EventFailed}}); err != nil {
		t.Fatal(err)
	}
	rest, _ := e.st.List(e.ctx, store.ListParams{Queue: "beta", States: []store.State{store.StatePending}})
	for _, task := range rest {
		if task.RunAt.Before(time.Now()) {
			if _, err := e.st.Cancel(e.ctx, task.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A retry moves beta[2] from failed back to pending.
	if _, err := e.st.Retry(e.ctx, beta[2].ID); err != nil {
		t.Fatal(err)
	}
	// beta[4] is left running under a short lease and rescued.
	if _, err := e.st.ExtendLease(e.ctx, beta[4].ID, beta[4].LeaseEpoch, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := e.st.Rescue(e.ctx, store.RescueParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Purge(e.ctx, store.PurgeParams{Before: map[store.State]time.Time{store.StateCompleted: time.Now().Add(time.Hour)}, Limit: 1}); err != nil {
		t.Fatal(err)
	}

	want := map[string]map[store.State]int64{}
	oldest := map[string]time.Time{}
	all, err := e.st.List(e.ctx, store.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, task := range all {
		if want[task.Queue] == nil {
			want[task.Queue] = map[store.State]int64{}
		}
		want[task.Queue][task.State]++
		if task.State == store.StatePending && !task.RunAt.After(now) {
			if o, ok := oldest[task.Queue]; !ok || task.RunAt.Before(o) {
				oldest[task.Queue] = task.RunAt
			}
		}
	}
	stats, err := e.st.Stats(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The backend's housekeeping changes nothing the statistics show.
	if err := e.st.Maintain(e.ctx); err != nil {
		t.Fatal(err)
	}
	if again, err := e.st.Stats(e.ctx); err != nil || !reflect.DeepEqual(again, stats) {
		t.Fatalf("stats after Maintain = %+v, %v; before %+v", again, err, stats)
	}
	got := map[string]map[store.State]int64{}
	for _, qs := range stats {
		got[qs.Queue] = qs.Counts
		if !qs.OldestReadyAt.Equal(oldest[qs.Queue]) {
			t.Errorf("queue %s: oldest ready %v, want %v", qs.Queue, qs.OldestReadyAt, oldest[qs.Queue])
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stats = %v\nwant %v", got, want)
	}
	if !oldest["alpha"].Equal(past) {
		t.Fatalf("test setup: alpha's oldest ready task should be the one due a minute ago")
	}
}

// countsOf reads the statistics of every queue through st, by queue name.
func countsOf(t *testing.T, e *env, st store.Store) map[string]store.QueueStats {
	t.Helper()
	stats, err := st.Stats(e.ctx)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	out := make(map[string]store.QueueStats, len(stats))
	for _, qs := range stats {
		out[qs.Queue] = qs
	}
	return out
}

// assertCounts checks one queue's counts as Stats reports them.
func assertCounts(t *testing.T, e *env, queue string, want map[store.State]int64) {
	t.Helper()
	if got := countsOf(t, e, e.st)[queue].Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("queue %s: counts %v, want %v", queue, got, want)
	}
}

func testRetryFailed(t *testing.T, e *env) {
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "r", MaxAttempts: 1}, store.NewTask{Kind: "k", Queue: "r", MaxAttempts: 5})
	claimed := e.claim(t, "n", time.Minute, q("r", 2))
	if len(claimed) != 2 {
		t.Fatalf("claimed %d, want 2", len(claimed))
	}
	byMax := map[int]*store.Task{}
	for _, c := range claimed {
		byMax[c.MaxAttempts] = c
		finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateFailed, Event: store.EventFailed,
			Error: &store.AttemptError{Attempt: 1, At: time.Now(), Error: "boom"}})
	}
	exhausted, permanent := byMax[1], byMax[5]
	assertCounts(t, e, "r", map[store.State]int64{store.StateFailed: 2})

	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	before := time.Now().Add(-time.Second)
	got, err := e.st.Retry(e.ctx, exhausted.ID)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	expectWake(t, ch, "a retry")
	if got.State != store.StatePending || got.Attempt != 1 || got.MaxAttempts != 2 || got.LeaseEpoch != exhausted.LeaseEpoch+1 ||
		got.LeaseOwner != "" || !got.LeaseExpiresAt.IsZero() || !got.FinalizedAt.IsZero() || got.CancelRequested {
		t.Fatalf("retried task = %+v; want pending, attempt 1 of 2, epoch bumped, no lease, not finalized", got)
	}
	if got.RunAt.Before(before) || got.RunAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("run_at %v is not about now", got.RunAt)
	}
	if len(got.Errors) != 1 || got.Errors[0].Error != "boom" {
		t.Fatalf("error history = %+v, want the failed attempt kept", got.Errors)
	}
	if stored := e.get(t, exhausted.ID); !reflect.DeepEqual(stored, got) {
		t.Fatalf("stored task %+v differs from the returned %+v", stored, got)
	}
	evs := e.events(t, exhausted.ID)
	last := evs[len(evs)-1]
	if last.Type != store.EventRetried || last.Attempt != 1 {
		t.Fatalf("last event = %s (attempt %d), want retried (attempt 1)", last.Type, last.Attempt)
	}
	assertJSON(t, "retried event", last.Data, json.RawMessage(`{"from":"failed"}`))
	assertCounts(t, e, "r", map[store.State]int64{store.StatePending: 1, store.StateFailed: 1})

	// Attempts left: MaxAttempts is kept.
	if got, err := e.st.Retry(e.ctx, permanent.ID); err != nil || got.MaxAttempts != 5 || got.Attempt != 1 {
		t.Fatalf("retry with attempts left = %+v, %v; want attempt 1 of 5", got, err)
	}
	assertCounts(t, e, "r", map[store.State]int64{store.StatePending: 2})

	// Both run again, as their second attempt, under a new epoch.
	again := e.claim(t, "n", time.Minute, q("r", 5))
	if len(again) != 2 {
		t.Fatalf("claimed %d after the retries, want 2", len(again))
	}
	first := map[string]int64{exhausted.ID: exhausted.LeaseEpoch, permanent.ID: permanent.LeaseEpoch}
	for _, c := range again {
		if c.Attempt != 2 || c.LeaseEpoch <= first[c.ID]+1 {
			t.Fatalf("re-claimed %s: attempt %d epoch %d", c.ID, c.Attempt, c.LeaseEpoch)
		}
	}
	// The first run's epoch stays fenced.
	res, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: exhausted.ID, Epoch: exhausted.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}})
	if err != nil || !errors.Is(res[0].Err, store.ErrLeaseLost) {
		t.Fatalf("completion under the first run's epoch: %v %v, want ErrLeaseLost", res, err)
	}
	assertCounts(t, e, "r", map[store.State]int64{store.StateRunning: 2})
	if err := e.st.Maintain(e.ctx); err != nil {
		t.Fatal(err)
	}
	assertCounts(t, e, "r", map[store.State]int64{store.StateRunning: 2})
}

func testRetryCancelled(t *testing.T, e *env) {
	// Cancelled while pending: it never ran.
	pending := e.enqueue(t, store.NewTask{Kind: "k", Queue: "c", MaxAttempts: 3})[0].ID
	if _, err := e.st.Cancel(e.ctx, pending); err != nil {
		t.Fatal(err)
	}
	// Cancelled while running: the request is cleared by the retry.
	running := e.enqueue(t, store.NewTask{Kind: "k", Queue: "c", MaxAttempts: 3})[0].ID
	c := e.claim(t, "n", time.Minute, q("c", 1))[0]
	if _, err := e.st.Cancel(e.ctx, running); err != nil {
		t.Fatal(err)
	}
	finish(t, e, store.Outcome{TaskID: running, Epoch: c.LeaseEpoch, State: store.StateCancelled, Event: store.EventCancelled})
	if got := e.get(t, running); !got.CancelRequested || got.State != store.StateCancelled {
		t.Fatalf("test setup: %s cancel requested %v", got.State, got.CancelRequested)
	}
	assertCounts(t, e, "c", map[store.State]int64{store.StateCancelled: 2})
	for _, w := range []struct {
		id      string
		attempt int
	}{{pending, 0}, {running, 1}} {
		got, err := e.st.Retry(e.ctx, w.id)
		if err != nil {
			t.Fatalf("retry of a cancelled task: %v", err)
		}
		if got.State != store.StatePending || got.Attempt != w.attempt || got.MaxAttempts != 3 || got.CancelRequested || !got.FinalizedAt.IsZero() {
			t.Fatalf("retried task = %+v; want pending, attempt %d of 3, no cancel request", got, w.attempt)
		}
		evs := e.events(t, w.id)
		assertJSON(t, "retried event", evs[len(evs)-1].Data, json.RawMessage(`{"from":"cancelled"}`))
	}
	assertCounts(t, e, "c", map[store.State]int64{store.StatePending: 2})
	claimed := e.claim(t, "n", time.Minute, q("c", 5))
	if len(claimed) != 2 {
		t.Fatalf("claimed %d retried tasks, want 2", len(claimed))
	}
	for _, c := range claimed {
		if c.CancelRequested {
			t.Fatalf("task %s claimed with its old cancel request", c.ID)
		}
	}
}

func testRetryRefused(t *testing.T, e *env) {
	ids := e.enqueue(t, store.NewTask{Kind: "k", Queue: "x"}, store.NewTask{Kind: "k", Queue: "x"}, store.NewTask{Kind: "k", Queue: "x"})
	running := e.claim(t, "n", time.Minute, q("x", 2))
	finish(t, e, store.Outcome{TaskID: running[0].ID, Epoch: running[0].LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	wantCounts := map[store.State]int64{store.StatePending: 1, store.StateRunning: 1, store.StateCompleted: 1}
	assertCounts(t, e, "x", wantCounts)
	for _, r := range ids {
		before := e.get(t, r.ID)
		evs := len(e.events(t, r.ID))
		got, err := e.st.Retry(e.ctx, r.ID)
		if !errors.Is(err, store.ErrConflict) || got == nil || got.ID != r.ID || got.State != before.State {
			t.Fatalf("retry of a %s task: %+v, %v; want ErrConflict with the task", before.State, got, err)
		}
		if after := e.get(t, r.ID); !reflect.DeepEqual(after, before) || len(e.events(t, r.ID)) != evs {
			t.Fatalf("a refused retry changed the %s task: %+v", before.State, after)
		}
	}
	assertCounts(t, e, "x", wantCounts)
	if got, err := e.st.Retry(e.ctx, uuid.NewString()); !errors.Is(err, store.ErrNotFound) || got != nil {
		t.Fatalf("retry of an unknown task: %+v, %v; want ErrNotFound", got, err)
	}
}

func testRetryUniqueKey(t *testing.T, e *env) {
	old := e.enqueue(t, store.NewTask{Kind: "k", Queue: "u", UniqueKey: "report-7"})[0].ID
	if _, err := e.st.Cancel(e.ctx, old); err != nil {
		t.Fatal(err)
	}
	// The cancellation released the key, and a new task took it.
	holder := e.enqueue(t, store.NewTask{Kind: "k", Queue: "u", UniqueKey: "report-7"})[0]
	if holder.Duplicate {
		t.Fatal("test setup: the cancelled task still holds its key")
	}
	before := e.get(t, old)
	evs := len(e.events(t, old))
	got, err := e.st.Retry(e.ctx, old)
	if !errors.Is(err, store.ErrConflict) || got == nil || got.State != store.StateCancelled {
		t.Fatalf("retry while another task holds the key: %+v, %v; want ErrConflict with the cancelled task", got, err)
	}
	if after := e.get(t, old); !reflect.DeepEqual(after, before) || len(e.events(t, old)) != evs {
		t.Fatalf("a refused retry changed the task: %+v", after)
	}
	assertCounts(t, e, "u", map[store.State]int64{store.StatePending: 1, store.StateCancelled: 1})
	// Once the holder lets the key go, the retry goes through and the key
	// is held again.
	if _, err := e.st.Cancel(e.ctx, holder.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.st.Retry(e.ctx, old); err != nil || got.State != store.StatePending {
		t.Fatalf("retry once the key is free: %+v, %v", got, err)
	}
	if dup := e.enqueue(t, store.NewTask{Kind: "k", Queue: "u", UniqueKey: "report-7"})[0]; !dup.Duplicate || dup.ID != old {
		t.Fatalf("enqueue after the retry = %+v; want a duplicate of the retried task", dup)
	}
	assertCounts(t, e, "u", map[store.State]int64{store.StatePending: 1, store.StateCancelled: 1})
}

func testPauseQueue(t *testing.T, e *env) {
	future := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	e.enqueue(t,
		store.NewTask{Kind: "k", Queue: "held"}, store.NewTask{Kind: "k", Queue: "held"},
		store.NewTask{Kind: "k", Queue: "held", RunAt: future},
		store.NewTask{Kind: "k", Queue: "open"},
	)
	other := e.open(t)
	// Paused through one store, twice (not an error), and through the
	// other store for a queue that has no task yet.
	for _, st := range []store.Store{e.st, e.st} {
		if err := st.PauseQueue(e.ctx, "held", true); err != nil {
			t.Fatalf("pause: %v", err)
		}
	}
	if err := other.PauseQueue(e.ctx, "empty", true); err != nil {
		t.Fatalf("pause an empty queue: %v", err)
	}
	// Paused for every store on the database.
	for i, st := range []store.Store{e.st, other} {
		got, err := st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Minute, Queues: []store.QueueClaim{q("held", 10), q("open", 10), q("empty", 10)}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && (len(got) != 1 || got[0].Queue != "open") {
			t.Fatalf("claim with held paused = %d tasks, want only the one of open", len(got))
		}
		if i == 1 && len(got) != 0 {
			t.Fatalf("the second store claimed %d tasks of a paused queue", len(got))
		}
		if _, ok, err := st.NextRunAt(e.ctx, []string{"held"}, nil); ok || err != nil {
			t.Fatalf("next run_at of a paused queue: ok %v, err %v", ok, err)
		}
		if _, ok, err := st.NextRunAt(e.ctx, []string{"held"}, []string{"k"}); ok || err != nil {
			t.Fatalf("next run_at of a paused queue, by kind: ok %v, err %v", ok, err)
		}
	}
	// Enqueueing into a paused queue still works.
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "open", RunAt: future}, store.NewTask{Kind: "k", Queue: "held"})
	if got, ok, err := e.st.NextRunAt(e.ctx, []string{"held", "open"}, nil); err != nil || !ok || !got.Equal(future) {
		t.Fatalf("next run_at over a paused and an open queue = %v %v %v; want open's %v", got, ok, err, future)
	}
	for _, st := range []store.Store{e.st, other} {
		stats, err := st.Stats(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, qs := range stats {
			names = append(names, qs.Queue)
		}
		if !reflect.DeepEqual(names, []string{"empty", "held", "open"}) {
			t.Fatalf("stats list queues %v, want [empty held open]", names)
		}
		if !stats[0].Paused || stats[0].Counts == nil || len(stats[0].Counts) != 0 {
			t.Fatalf("paused empty queue = %+v; want paused, with empty counts", stats[0])
		}
		if !stats[1].Paused || stats[1].Counts[store.StatePending] != 4 || stats[1].OldestReadyAt.IsZero() {
			t.Fatalf("paused queue = %+v; want paused, 4 pending, its ready work shown", stats[1])
		}
		if stats[2].Paused {
			t.Fatalf("open queue reported paused")
		}
	}
	var ve *store.ValidationError
	if err := e.st.PauseQueue(e.ctx, "bad/queue", true); !errors.As(err, &ve) || ve.Field != "queue" || ve.Index != -1 || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("pause of an invalid name: %v, want a ValidationError on queue", err)
	}

	// Resuming wakes the subscribers of both stores.
	own, stopOwn := e.st.Subscribe()
	defer stopOwn()
	theirs, stopTheirs := other.Subscribe()
	defer stopTheirs()
	drain(own)
	drain(theirs)
	if err := e.st.PauseQueue(e.ctx, "held", false); err != nil {
		t.Fatalf("resume: %v", err)
	}
	expectWake(t, own, "a queue was resumed by this store")
	expectWake(t, theirs, "a queue was resumed by another store")
	if got, ok, err := other.NextRunAt(e.ctx, []string{"held"}, nil); err != nil || !ok || got.After(time.Now()) {
		t.Fatalf("next run_at after resume = %v %v %v; want ready work", got, ok, err)
	}
	if got := e.claim(t, "n", time.Minute, q("held", 10)); len(got) != 3 {
		t.Fatalf("claimed %d tasks of the resumed queue, want its 3 ready ones", len(got))
	}
	// Resuming a queue that is not paused, or never was, is no error.
	for _, name := range []string{"held", "never"} {
		if err := e.st.PauseQueue(e.ctx, name, false); err != nil {
			t.Fatalf("resume %s again: %v", name, err)
		}
	}
	stats := countsOf(t, e, other)
	if stats["held"].Paused || !stats["empty"].Paused {
		t.Fatalf("after resuming held: %+v", stats)
	}
	if _, listed := stats["never"]; listed {
		t.Fatal("a queue that was never paused and holds no task is listed")
	}
	if err := other.PauseQueue(e.ctx, "empty", false); err != nil {
		t.Fatal(err)
	}
	if _, listed := countsOf(t, e, e.st)["empty"]; listed {
		t.Fatal("a resumed queue without tasks is still listed")
	}
}
