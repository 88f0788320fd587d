package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Cases of store.Coordinator: rescue, purge, leadership and the node
// registry. Time passes on the case's clock: leases run out, nodes fall
// silent and leaderships lapse because the case advances it, not because it
// slept.

var coordinatorCases = []testCase{
	{"rescue expired leases", testRescue},
	{"rescue the tasks of dead nodes", testRescueDeadNodes},
	{"rescue fails tasks that may not be resumed", testRescueNotResumable},
	{"purge finished tasks by age, window by window", testPurge},
	{"leadership: one holder, terms, expiry, resignation", testLead},
}

func testRescue(t *testing.T, e *env) {
	e.enqueue(t,
		store.NewTask{Kind: "k", Queue: "retry", MaxAttempts: 3},
		store.NewTask{Kind: "k", Queue: "last", MaxAttempts: 1},
		store.NewTask{Kind: "k", Queue: "cancel", MaxAttempts: 3},
		store.NewTask{Kind: "k", Queue: "alive", MaxAttempts: 3},
	)
	retry := e.claim(t, "dead", time.Minute, q("retry", 1))[0]
	last := e.claim(t, "dead", time.Minute, q("last", 1))[0]
	cancel := e.claim(t, "dead", time.Minute, q("cancel", 1))[0]
	alive := e.claim(t, "live", time.Hour, q("alive", 1))[0]
	if _, err := e.st.Cancel(e.ctx, cancel.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.rescue(t, store.RescueParams{Limit: 100}); n != 0 {
		t.Fatalf("rescued %d tasks before any lease expired", n)
	}
	e.clock.Advance(2 * time.Minute) // past the dead owner's leases, not the live one's
	if n := e.rescue(t, store.RescueParams{Limit: 100}); n != 3 {
		t.Fatalf("rescued %d, want 3", n)
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
	const deadAfter = time.Minute
	if n := e.rescue(t, store.RescueParams{DeadAfter: deadAfter}); n != 0 {
		t.Fatalf("rescued %d tasks while every node was heard from just now", n)
	}
	// Two minutes of silence, except from the live node.
	e.clock.Advance(2 * deadAfter)
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "alive"}); err != nil {
		t.Fatal(err)
	}
	if n := e.rescue(t, store.RescueParams{DeadAfter: deadAfter}); n != 1 {
		t.Fatalf("rescued %d, want only the dead node's task", n)
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
	claimed, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", LeaseTTL: time.Minute,
		Queues: []store.QueueClaim{q("default", 10)}, NotResumable: []string{"charge"}})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	e.clock.Advance(2 * time.Minute)
	if n := e.rescue(t, store.RescueParams{}); n != 2 {
		t.Fatalf("rescued %d, want both", n)
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
	if l, err := e.st.Leader(e.ctx, "maintenance"); err != nil || l.Holder != "a" || l.Term != 1 || !l.Current(e.now()) {
		t.Fatalf("leader = %+v, %v", l, err)
	}
	if term, held := lead(other, "b", time.Hour); held || term != 1 {
		t.Fatalf("a second candidate: term %d held %v; want refused, term 1", term, held)
	}
	if term, held := lead(e.st, "a", time.Minute); !held || term != 1 {
		t.Fatalf("renewal: term %d held %v", term, held)
	}
	if l, err := e.st.Leader(e.ctx, "maintenance"); err != nil || l.ExpiresAt.After(e.now().Add(time.Minute)) || l.ExpiresAt.Before(e.now().Add(30*time.Second)) {
		t.Fatalf("renewed leader = %+v, %v; want a lease of a minute from now (%v)", l, err, e.now())
	}
	if _, held := lead(other, "b", time.Hour); held {
		t.Fatal("a candidate took over a renewed leadership")
	}
	e.clock.Advance(2 * time.Minute) // past the renewed lease
	if l, err := e.st.Leader(e.ctx, "maintenance"); err != nil || l.Holder != "a" || l.Current(e.now()) {
		t.Fatalf("leader once its lease ran out = %+v, %v; want a, no longer current", l, err)
	}
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
