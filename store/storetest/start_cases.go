package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// startCases are the cases of claims made ahead of free workers
// (ClaimRequest.StartLater) and of the starts reported for them
// (store.Runner.Started).
var startCases = []testCase{
	{"claim with StartLater does not start; Started does, once, under the epoch", testStartLater},
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
