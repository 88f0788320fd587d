package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Cases of store.Operator: cancel, retry, and pausing queues.

var operatorCases = []testCase{
	{"cancel: pending, running, finished, missing", testCancel},
	{"retry makes a failed task pending again", testRetryFailed},
	{"retry makes a cancelled task pending again", testRetryCancelled},
	{"retry refuses pending, running, completed and unknown tasks", testRetryRefused},
	{"retry refuses a task whose unique key is held again", testRetryUniqueKey},
	{"paused queues are not claimed, on any store, until resumed", testPauseQueue},
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
