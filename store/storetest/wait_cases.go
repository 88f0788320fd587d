package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Cases of store.Waits: waitpoints, suspensions and signals.

var waitCases = []testCase{
	{"waitpoints: created under the lease, found again by name", testWaitpointCreate},
	{"suspend: the task waits, holds no lease, and is not claimed", testSuspend},
	{"a signal before the suspension is kept: the wait ends at once", testEarlySignal},
	{"any, all and count conditions", testWaitConditions},
	{"duplicate signals: the first receipt, nothing changed", testSignalDuplicate},
	{"signals refused: closed, finished, unknown, not allowed, expired", testSignalRefused},
	{"concurrent signals from three stores resume the task once", testConcurrentSignals},
	{"timeouts: fail, cancel, resume", testWaitTimeouts},
	{"a signal racing the timeout: one wins, the log says which", testSignalRacesTimeout},
	{"cancel a waiting task", testCancelWaiting},
	{"a waiting flow member that times out resolves its flow", testWaitInFlow},
	{"the deployment's signing key is made once and kept", testSigningKey},
}

// running enqueues a task in queue and claims it.
func (e *env) running(t *testing.T, queue string) *store.Task {
	t.Helper()
	e.enqueue(t, store.NewTask{Kind: "k", Queue: queue})
	c := e.claim(t, "n", time.Minute, q(queue, 1))
	if len(c) != 1 {
		t.Fatalf("nothing to claim in %s", queue)
	}
	return c[0]
}

func (e *env) waitpoint(t *testing.T, task *store.Task, name string, allow ...string) store.Waitpoint {
	t.Helper()
	wp, err := e.st.CreateWaitpoint(e.ctx, task.ID, task.LeaseEpoch, store.NewWaitpoint{Name: name, Allow: allow})
	if err != nil {
		t.Fatalf("create waitpoint %s: %v", name, err)
	}
	return wp
}

// suspend records a waiting outcome and returns the state it left.
func (e *env) suspend(t *testing.T, task *store.Task, spec store.WaitSpec) store.State {
	t.Helper()
	res, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: task.ID, Epoch: task.LeaseEpoch, State: store.StateWaiting,
		Event: store.EventWaiting, Wait: &spec}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("suspend: %v %v", err, res)
	}
	return res[0].State
}

func (e *env) signal(t *testing.T, wp store.Waitpoint, name, key string) store.SignalReceipt {
	t.Helper()
	rec, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: name, Key: key, Payload: json.RawMessage(`{"by":"` + key + `"}`)})
	if err != nil {
		t.Fatalf("signal %s to %s: %v", name, wp.Name, err)
	}
	return rec
}

func testWaitpointCreate(t *testing.T, e *env) {
	task := e.running(t, "w")
	wp := e.waitpoint(t, task, "approval", "approve", "reject")
	if wp.ID == "" || wp.TaskID != task.ID || wp.State != store.WaitpointOpen || !slices.Equal(wp.Allow, []string{"approve", "reject"}) {
		t.Fatalf("waitpoint = %+v", wp)
	}
	again := e.waitpoint(t, task, "approval")
	if again.ID != wp.ID {
		t.Fatalf("the same name made a second waitpoint: %s and %s", wp.ID, again.ID)
	}
	if _, err := e.st.CreateWaitpoint(e.ctx, task.ID, task.LeaseEpoch+1, store.NewWaitpoint{Name: "x"}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("create under a stale epoch: %v", err)
	}
	if _, err := e.st.CreateWaitpoint(e.ctx, uuid.NewString(), 1, store.NewWaitpoint{Name: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("create for an unknown task: %v", err)
	}
	var ve *store.ValidationError
	if _, err := e.st.CreateWaitpoint(e.ctx, task.ID, task.LeaseEpoch, store.NewWaitpoint{Name: "bad name"}); !errors.As(err, &ve) || ve.Field != "name" {
		t.Fatalf("a bad name: %v", err)
	}
	if _, err := e.st.CreateWaitpoint(e.ctx, task.ID, task.LeaseEpoch, store.NewWaitpoint{Name: "old", ExpiresAt: e.now().Add(-time.Second)}); !errors.As(err, &ve) || ve.Field != "expires_at" {
		t.Fatalf("an expiry in the past: %v", err)
	}
	got, err := e.st.Waitpoint(e.ctx, wp.ID)
	if err != nil || got.Name != "approval" {
		t.Fatalf("read by id: %+v %v", got, err)
	}
}

func testSuspend(t *testing.T, e *env) {
	task := e.running(t, "s")
	wp := e.waitpoint(t, task, "approval")
	if got := e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"approval"}}); got != store.StateWaiting {
		t.Fatalf("state after suspending = %s", got)
	}
	w := e.get(t, task.ID)
	if w.State != store.StateWaiting || w.LeaseOwner != "" || !w.LeaseExpiresAt.IsZero() || w.Attempt != task.Attempt-1 {
		t.Fatalf("waiting task = %+v: want no lease and the attempt given back", w)
	}
	assertCounts(t, e, "s", map[store.State]int64{store.StateWaiting: 1})
	if c := e.claim(t, "n", time.Minute, q("s", 5)); len(c) != 0 {
		t.Fatal("a waiting task was claimed")
	}
	if evs := eventTypes(e.events(t, task.ID)); evs[len(evs)-1] != store.EventWaiting {
		t.Fatalf("events = %v", evs)
	}
	// Its lease is gone: the old attempt's writes are refused.
	if err := e.st.Progress(e.ctx, task.ID, task.LeaseEpoch, json.RawMessage(`1`)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("progress of a waiting task: %v", err)
	}
	rec := e.signal(t, wp, "approve", "k1")
	if !rec.Resumed || rec.TaskID != task.ID {
		t.Fatalf("receipt = %+v, want resumed", rec)
	}
	c := e.claim(t, "n", time.Minute, q("s", 1))
	if len(c) != 1 || c[0].Attempt != task.Attempt {
		t.Fatalf("resumed claim = %v: want the same attempt again", c)
	}
	wps, err := e.st.Waitpoints(e.ctx, task.ID)
	if err != nil || len(wps) != 1 || wps[0].State != store.WaitpointResolved || wps[0].Resolution != store.ResolvedBySignal || len(wps[0].Signals) != 1 {
		t.Fatalf("waitpoints after resume = %+v %v", wps, err)
	}
	assertJSON(t, "payload", wps[0].Signals[0].Payload, json.RawMessage(`{"by":"k1"}`))
	plain := e.enqueue(t, store.NewTask{Kind: "k"})[0].ID
	of, err := e.st.WaitpointsOf(e.ctx, []string{task.ID, plain, uuid.NewString()})
	if err != nil || len(of) != 1 || len(of[task.ID]) != 1 || len(of[task.ID][0].Signals) != 1 || of[task.ID][0].ID != wp.ID {
		t.Fatalf("waitpoints of several tasks = %+v %v; want only the waiting task's, with its signal", of, err)
	}
	evs := eventTypes(e.events(t, task.ID))
	if !slices.Contains(evs, store.EventSignalled) || !slices.Contains(evs, store.EventResumed) {
		t.Fatalf("events = %v", evs)
	}
}

func testEarlySignal(t *testing.T, e *env) {
	task := e.running(t, "early")
	wp := e.waitpoint(t, task, "webhook")
	if rec := e.signal(t, wp, "done", "k"); rec.Resumed {
		t.Fatal("a signal to a running task resumed it")
	}
	if got := e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"webhook"}}); got != store.StatePending {
		t.Fatalf("suspending after the signal came: state %s, want pending at once", got)
	}
	assertCounts(t, e, "early", map[store.State]int64{store.StatePending: 1})
}

func testWaitConditions(t *testing.T, e *env) {
	// all: both waitpoints need a signal.
	task := e.running(t, "all")
	a, b := e.waitpoint(t, task, "a"), e.waitpoint(t, task, "b")
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"a", "b"}, Mode: store.WaitAll})
	if e.signal(t, a, "x", "1").Resumed || e.signal(t, a, "x", "2").Resumed {
		t.Fatal("all resumed with one waitpoint signalled")
	}
	if !e.signal(t, b, "x", "3").Resumed {
		t.Fatal("all did not resume once both were signalled")
	}
	// count: three distinct sources.
	task = e.running(t, "count")
	v := e.waitpoint(t, task, "votes")
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"votes"}, Mode: store.WaitCount, Count: 3})
	send := func(key, source string) bool {
		rec, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: v.ID, Name: "vote", Key: key, Source: source})
		if err != nil {
			t.Fatal(err)
		}
		return rec.Resumed
	}
	if send("1", "ann") || send("2", "ann") || send("3", "bob") {
		t.Fatal("count resumed before three sources signalled")
	}
	if !send("4", "cy") {
		t.Fatal("count did not resume at the third source")
	}
	// any: the first signal to either.
	task = e.running(t, "any")
	e.waitpoint(t, task, "p")
	q2 := e.waitpoint(t, task, "q")
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"p", "q"}})
	if !e.signal(t, q2, "x", "1").Resumed {
		t.Fatal("any did not resume")
	}
	// A wait naming a waitpoint the task does not have fails the task.
	task = e.running(t, "bad")
	if got := e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"nope"}}); got != store.StateFailed {
		t.Fatalf("a wait on no waitpoint: %s, want failed", got)
	}
	if errs := e.get(t, task.ID).Errors; len(errs) != 1 {
		t.Fatalf("errors = %v", errs)
	}
}

func testSignalDuplicate(t *testing.T, e *env) {
	task := e.running(t, "dup")
	wp := e.waitpoint(t, task, "w")
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"w"}})
	first := e.signal(t, wp, "go", "same")
	again := e.signal(t, wp, "go", "same")
	if !again.Duplicate || again.Signal.ID != first.Signal.ID || again.Resumed {
		t.Fatalf("repeat = %+v, first %+v", again, first)
	}
	wps, _ := e.st.Waitpoints(e.ctx, task.ID)
	if len(wps[0].Signals) != 1 {
		t.Fatalf("signals stored = %d, want 1", len(wps[0].Signals))
	}
}

func testSignalRefused(t *testing.T, e *env) {
	task := e.running(t, "r")
	wp := e.waitpoint(t, task, "w", "approve")
	var ve *store.ValidationError
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: "reject", Key: "k"}); !errors.As(err, &ve) || ve.Field != "name" {
		t.Fatalf("a name the waitpoint does not allow: %v", err)
	}
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: "approve"}); !errors.As(err, &ve) || ve.Field != "idempotency_key" {
		t.Fatalf("no key: %v", err)
	}
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: uuid.NewString(), Name: "approve", Key: "k"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown waitpoint: %v", err)
	}
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{TaskID: task.ID, Waitpoint: "w", Name: "approve", Key: "k1"}); err != nil {
		t.Fatalf("by task and name: %v", err)
	}
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"w"}})
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: "approve", Key: "k2"}); !errors.Is(err, store.ErrWaitpointClosed) {
		t.Fatalf("a resolved waitpoint: %v", err)
	}
	c := e.claim(t, "n", time.Minute, q("r", 1))[0]
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	other := e.running(t, "r2")
	open := e.waitpoint(t, other, "later")
	finish(t, e, store.Outcome{TaskID: other.ID, Epoch: other.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: open.ID, Name: "x", Key: "k"}); !errors.Is(err, store.ErrAlreadyFinished) {
		t.Fatalf("a finished task: %v", err)
	}
	exp := e.running(t, "r3")
	short, err := e.st.CreateWaitpoint(e.ctx, exp.ID, exp.LeaseEpoch, store.NewWaitpoint{Name: "short", ExpiresAt: e.now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: short.ID, Name: "x", Key: "k"}); !errors.Is(err, store.ErrWaitpointClosed) {
		t.Fatalf("an expired waitpoint: %v", err)
	}
}

func testConcurrentSignals(t *testing.T, e *env) {
	stores := []store.Store{e.st, e.open(t), e.open(t)}
	for round := range 5 {
		task := e.running(t, fmt.Sprintf("c%d", round))
		wp := e.waitpoint(t, task, "w")
		e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"w"}})
		var wg sync.WaitGroup
		recs := make([]store.SignalReceipt, 6)
		errs := make([]error, 6)
		for i := range recs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Two senders per key: each key is stored once.
				recs[i], errs[i] = stores[i%3].Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: "go", Key: fmt.Sprintf("k%d", i%2)})
			}()
		}
		wg.Wait()
		resumed := 0
		for i, err := range errs {
			switch {
			case err == nil && recs[i].Resumed:
				resumed++
			case err == nil, errors.Is(err, store.ErrWaitpointClosed):
			default:
				t.Fatalf("round %d: signal %d: %v", round, i, err)
			}
		}
		if resumed != 1 {
			t.Fatalf("round %d: %d signals resumed the task, want exactly 1", round, resumed)
		}
		n := 0
		for _, ev := range e.events(t, task.ID) {
			if ev.Type == store.EventResumed {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d resumed events", round, n)
		}
	}
}

func testWaitTimeouts(t *testing.T, e *env) {
	for _, c := range []struct {
		on   store.OnTimeout
		want store.State
	}{{store.TimeoutFail, store.StateFailed}, {store.TimeoutCancel, store.StateCancelled}, {store.TimeoutResume, store.StatePending}} {
		task := e.running(t, "t-"+string(c.on))
		e.waitpoint(t, task, "w")
		e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"w"}, Timeout: time.Minute, OnTimeout: c.on})
	}
	n, next, err := e.st.ExpireWaits(e.ctx, 100)
	if err != nil || n != 0 || !next.After(e.now()) || next.After(e.now().Add(time.Minute)) {
		t.Fatalf("before the timeout: expired %d, next %v (want within a minute of %v), %v", n, next, e.now(), err)
	}
	e.clock.Advance(time.Minute)
	n, next, err = e.st.ExpireWaits(e.ctx, 100)
	if err != nil || n != 3 || !next.IsZero() {
		t.Fatalf("at the timeout: expired %d, next %v, %v", n, next, err)
	}
	for _, c := range []struct {
		on   store.OnTimeout
		want store.State
	}{{store.TimeoutFail, store.StateFailed}, {store.TimeoutCancel, store.StateCancelled}, {store.TimeoutResume, store.StatePending}} {
		assertCounts(t, e, "t-"+string(c.on), map[store.State]int64{c.want: 1})
	}
	task := e.claim(t, "n", time.Minute, q("t-resume", 1))[0]
	wps, _ := e.st.Waitpoints(e.ctx, task.ID)
	if wps[0].Resolution != store.ResolvedByTimeout {
		t.Fatalf("a resumed wait's waitpoint: %+v; want resolved by timeout", wps[0])
	}
}

func testSignalRacesTimeout(t *testing.T, e *env) {
	other := e.open(t)
	for round := range 5 {
		task := e.running(t, fmt.Sprintf("race%d", round))
		wp := e.waitpoint(t, task, "w")
		e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"w"}, Timeout: time.Second})
		e.clock.Advance(time.Second)
		var wg sync.WaitGroup
		var sigErr, expErr error
		var rec store.SignalReceipt
		wg.Add(2)
		go func() {
			defer wg.Done()
			rec, sigErr = other.Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: "go", Key: "k"})
		}()
		go func() { defer wg.Done(); _, _, expErr = e.st.ExpireWaits(e.ctx, 10) }()
		wg.Wait()
		if expErr != nil {
			t.Fatal(expErr)
		}
		got := e.get(t, task.ID).State
		var ends []store.EventType
		for _, ev := range e.events(t, task.ID) {
			if ev.Type == store.EventResumed || ev.Type == store.EventFailed {
				ends = append(ends, ev.Type)
			}
		}
		switch {
		case sigErr == nil && rec.Resumed:
			if got != store.StatePending || !slices.Equal(ends, []store.EventType{store.EventResumed}) {
				t.Fatalf("round %d: the signal won, yet the task is %s with %v", round, got, ends)
			}
		case errors.Is(sigErr, store.ErrAlreadyFinished):
			if got != store.StateFailed || !slices.Equal(ends, []store.EventType{store.EventFailed}) {
				t.Fatalf("round %d: the timeout won, yet the task is %s with %v", round, got, ends)
			}
		default:
			t.Fatalf("round %d: signal %+v %v; task %s", round, rec, sigErr, got)
		}
	}
}

func testCancelWaiting(t *testing.T, e *env) {
	task := e.running(t, "cw")
	wp := e.waitpoint(t, task, "w")
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"w"}, Timeout: time.Hour})
	got, err := e.st.Cancel(e.ctx, task.ID)
	if err != nil || got.State != store.StateCancelled {
		t.Fatalf("cancel a waiting task: %+v %v", got, err)
	}
	if _, err := e.st.Signal(e.ctx, store.SignalRequest{WaitpointID: wp.ID, Name: "x", Key: "k"}); !errors.Is(err, store.ErrAlreadyFinished) {
		t.Fatalf("a signal to a cancelled task: %v", err)
	}
	e.clock.Advance(2 * time.Hour)
	if n, _, err := e.st.ExpireWaits(e.ctx, 10); err != nil || n != 0 {
		t.Fatalf("a cancelled task's wait expired: %d %v", n, err)
	}
	assertCounts(t, e, "cw", map[store.State]int64{store.StateCancelled: 1})
}

func testWaitInFlow(t *testing.T, e *env) {
	res := e.submit(t, member("approve"), member("ship", "approve"))
	task := e.claim(t, "n", time.Minute, q("approve", 1))[0]
	e.waitpoint(t, task, "manager")
	e.suspend(t, task, store.WaitSpec{Waitpoints: []string{"manager"}, Timeout: time.Minute})
	if f := e.flow(t, res.ID); f.Counts.Active != 1 || f.Counts.Blocked != 1 {
		t.Fatalf("flow counts while a member waits = %+v", f.Counts)
	}
	e.clock.Advance(time.Minute)
	if n, _, err := e.st.ExpireWaits(e.ctx, 10); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	assertStates(t, e, res.ID, map[string]store.State{"approve": store.StateFailed, "ship": store.StateSkipped})
	if f := e.flow(t, res.ID); f.State != store.FlowFailed {
		t.Fatalf("flow = %s", f.State)
	}
	assertFlowCounts(t, e, res.ID)
}

func testSigningKey(t *testing.T, e *env) {
	kid, secret, err := e.st.SigningKey(e.ctx)
	if err != nil || kid == "" || len(secret) < 32 {
		t.Fatalf("signing key: %q %d bytes %v", kid, len(secret), err)
	}
	kid2, secret2, err := e.open(t).SigningKey(e.ctx)
	if err != nil || kid2 != kid || string(secret2) != string(secret) {
		t.Fatalf("another store made another key: %q, %v", kid2, err)
	}
}
