package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Cases of store.Runner: claims, fenced outcomes, leases and progress,
// the next run_at, and wakeups.

var runCases = []testCase{
	{"claim leases, bumps attempt and epoch", testClaim},
	{"claim order: priority, then run_at, then age", testClaimOrder},
	{"claim respects run_at, queues, limits and kinds", testClaimFilters},
	{"claim never hands one task to two owners", testClaimExclusive},
	{"claim with StartLater does not start; Started does, once, under the epoch", testStartLater},
	{"a start reported with its outcome is recorded with it", testStartedWithOutcome},
	{"finish records each outcome once under its epoch", testFinishFenced},
	{"finish: retry, snooze, release, fail, cancel", testFinishStates},
	{"cancel request wins over a retry", testCancelBeatsRetry},
	{"heartbeat and progress are fenced", testHeartbeatProgress},
	{"renew leases extends and reports cancels", testRenewLeases},
	{"next run_at across priorities and kinds", testNextRunAt},
	{"subscribe wakes on work-making commits", testSubscribe},
	{"a second store on the same database sees and wakes", testSecondStore},
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
	// Many commits coalesce: a burst that nobody reads meanwhile never
	// waits for the subscriber, and leaves it one pending signal — the
	// channel has room for no more.
	drain(ch)
	for i := 0; i < 20; i++ {
		e.enqueue(t, task("k"))
	}
	if n := cap(ch); n > 1 {
		t.Fatalf("a subscription buffers %d signals, want at most one pending", n)
	}
	expectWake(t, ch, "burst")
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

func testStartLater(t *testing.T, e *env) {
	ids := []string{e.enqueue(t, task("k"))[0].ID, e.enqueue(t, task("k"))[0].ID}
	got, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Minute, StartLater: true,
		Queues: []store.QueueClaim{q(store.DefaultQueue, 2)}})
	if err != nil || len(got) != 2 {
		t.Fatalf("claim = %v, %v; want both tasks", got, err)
	}
	for _, c := range got {
		if c.State != store.StateRunning || c.Attempt != 1 || !c.AttemptedAt.IsZero() {
			t.Fatalf("claimed ahead: state %s attempt %d attempted_at %v; want running, attempt 1, not started", c.State, c.Attempt, c.AttemptedAt)
		}
	}
	for _, id := range ids {
		if evs := eventTypes(e.events(t, id)); !reflect.DeepEqual(evs, []store.EventType{store.EventCreated}) {
			t.Fatalf("events of a task claimed ahead = %v; want no started event yet", evs)
		}
		if got := e.get(t, id); !got.AttemptedAt.IsZero() || got.State != store.StateRunning {
			t.Fatalf("stored task claimed ahead: state %s attempted_at %v", got.State, got.AttemptedAt)
		}
	}
	first, second := got[0], got[1]
	at := time.Now().Add(-time.Second).Truncate(time.Microsecond)
	// A stale epoch is skipped; the current one is recorded, once.
	starts := []store.Start{{TaskID: second.ID, Epoch: second.LeaseEpoch + 1, At: at}, {TaskID: first.ID, Epoch: first.LeaseEpoch, At: at}}
	for range 2 {
		if err := e.st.Started(e.ctx, starts); err != nil {
			t.Fatalf("started: %v", err)
		}
	}
	evs := e.events(t, first.ID)
	if types := eventTypes(evs); !reflect.DeepEqual(types, []store.EventType{store.EventCreated, store.EventStarted}) {
		t.Fatalf("events after the start = %v; want one started event", types)
	}
	if last := evs[len(evs)-1]; last.Attempt != 1 || !last.At.Equal(at) {
		t.Fatalf("started event: attempt %d at %v; want attempt 1 at %v", last.Attempt, last.At, at)
	}
	if got := e.get(t, first.ID); !got.AttemptedAt.Equal(at) {
		t.Fatalf("attempted_at %v after the start, want %v", got.AttemptedAt, at)
	}
	if types := eventTypes(e.events(t, second.ID)); !reflect.DeepEqual(types, []store.EventType{store.EventCreated}) {
		t.Fatalf("a start under a stale epoch was recorded: %v", types)
	}
	if err := e.st.Started(e.ctx, nil); err != nil {
		t.Fatalf("no starts: %v", err)
	}
}

// A start reported with its outcome is recorded with it: attempted_at and
// the started event, ahead of the outcome's own.
func testStartedWithOutcome(t *testing.T, e *env) {
	id := e.enqueue(t, task("k"))[0].ID
	got, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Minute, StartLater: true,
		Queues: []store.QueueClaim{q(store.DefaultQueue, 1)}})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim = %v, %v", got, err)
	}
	at := time.Now().Add(-time.Second).Truncate(time.Microsecond)
	res, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: id, Epoch: got[0].LeaseEpoch, State: store.StateCompleted,
		Event: store.EventCompleted, StartedAt: at}})
	if err != nil || res[0].Err != nil || res[0].State != store.StateCompleted {
		t.Fatalf("finish = %+v, %v", res, err)
	}
	evs := e.events(t, id)
	if types := eventTypes(evs); !reflect.DeepEqual(types, []store.EventType{store.EventCreated, store.EventStarted, store.EventCompleted}) {
		t.Fatalf("events = %v; want created, started, completed", types)
	}
	if evs[1].Attempt != 1 || !evs[1].At.Equal(at) {
		t.Fatalf("started event: attempt %d at %v; want attempt 1 at %v", evs[1].Attempt, evs[1].At, at)
	}
	if task := e.get(t, id); !task.AttemptedAt.Equal(at) {
		t.Fatalf("attempted_at = %v, want %v", task.AttemptedAt, at)
	}
}
