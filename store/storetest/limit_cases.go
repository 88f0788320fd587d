package storetest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Cases of store.Limiter and of claims under limits, requirements and
// fairness.

var limitCases = []testCase{
	{"limits: set, read, list and delete; bad ones refused", testLimitCRUD},
	{"enqueue: an unknown limit and a cost beyond the burst are refused, nothing written", testLimitEnqueueRefused},
	{"concurrency: at most the cap per key hold a lease; the others wait with a reason", testConcurrencyCap},
	{"a key at its cap does not hold back other tasks, which run in priority order", testHotKeyDoesNotBlock},
	{"retry, snooze, suspension and rescue give the slot back", testSlotReleased},
	{"a task with two limits needs both, and takes both or neither", testTwoLimits},
	{"rate: never above the rate in any window, bursts, the exact next time", testRateLimit},
	{"a rate-limited outcome holds the key back for every task until its time", testRateLimitedOutcome},
	{"limits changed at run time apply at the next claim", testLimitChanged},
	{"routing: only a worker whose labels satisfy the requirements claims the task", testRouting},
	{"fairness: claims follow the weights; a late key is served at once", testFairness},
	{"at the limit: reject refuses the enqueue, cancel_in_progress asks the running task to cancel", testOnLimit},
	{"at the limit: keep_latest keeps one pending task per key, the newest", testKeepLatest},
	{"the cap holds with three stores claiming at once", testConcurrencyThreeStores},
}

func (e *env) setLimit(t *testing.T, l store.Limit) store.Limit {
	t.Helper()
	out, err := e.st.SetLimit(e.ctx, l)
	if err != nil {
		t.Fatalf("set limit %s: %v", l.Name, err)
	}
	return out
}

// claimAs claims for a worker with labels.
func (e *env) claimAs(t *testing.T, st store.Store, labels map[string]string, queues ...store.QueueClaim) []*store.Task {
	t.Helper()
	tasks, err := st.Claim(e.ctx, store.ClaimRequest{Owner: "n", Queues: queues, LeaseTTL: time.Minute, Labels: labels})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return tasks
}

func doneAll(tasks ...*store.Task) []store.Outcome {
	out := make([]store.Outcome, len(tasks))
	for i, c := range tasks {
		out[i] = store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted, Limited: len(c.LimitKeys) > 0}
	}
	return out
}

func limited(queue, limit, key string) store.NewTask {
	return store.NewTask{Kind: "k", Queue: queue, LimitKeys: map[string]string{limit: key}}
}

func countByKey(tasks []*store.Task, limit string) map[string]int {
	out := map[string]int{}
	for _, c := range tasks {
		out[c.LimitKeys[limit]]++
	}
	return out
}

// noDrift checks that the counters need no correction.
func (e *env) noDrift(t *testing.T) {
	t.Helper()
	d, err := e.st.ReconcileLimits(e.ctx)
	if err != nil {
		t.Fatalf("reconcile limits: %v", err)
	}
	if len(d.Keys) > 0 || d.StaleHolds > 0 {
		t.Fatalf("the limits' counters drifted: %+v", d)
	}
}

func testLimitCRUD(t *testing.T, e *env) {
	for _, bad := range []struct {
		l     store.Limit
		field string
	}{
		{store.Limit{Name: "9bad", Concurrency: 1}, "name"},
		{store.Limit{Name: "x"}, "concurrency"},
		{store.Limit{Name: "x", Concurrency: -1}, "concurrency"},
		{store.Limit{Name: "x", Rate: 10}, "period"},
		{store.Limit{Name: "x", Rate: 10, Period: time.Second, Burst: -1}, "burst"},
		{store.Limit{Name: "x", Concurrency: 1, Burst: 3}, "burst"},
		{store.Limit{Name: "x", Concurrency: 1, OnLimit: "drop"}, "on_limit"},
		{store.Limit{Name: "x", Rate: 1, Period: time.Second, OnLimit: store.OnLimitReject}, "on_limit"},
		{store.Limit{Name: "x", Concurrency: 1, Overrides: map[string]int{"a": -2}}, "overrides"},
	} {
		_, err := e.st.SetLimit(e.ctx, bad.l)
		var verr *store.ValidationError
		if !errors.As(err, &verr) || verr.Field != bad.field || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetLimit(%+v) = %v, want a validation error on %q", bad.l, err, bad.field)
		}
	}
	if ls, err := e.st.ListLimits(e.ctx); err != nil || len(ls) != 0 {
		t.Fatalf("after refusals: %v %v, want no limit", ls, err)
	}
	got := e.setLimit(t, store.Limit{Name: "api", Rate: 500, Period: time.Minute, Burst: 50})
	if got.OnLimit != store.OnLimitQueue || got.Burst != 50 || got.CreatedAt.IsZero() {
		t.Fatalf("set: %+v", got)
	}
	e.setLimit(t, store.Limit{Name: "per-customer", Concurrency: 3, Overrides: map[string]int{"acme": 10}})
	e.setLimit(t, store.Limit{Name: "api", Rate: 1, Period: time.Second})
	info, err := e.st.GetLimit(e.ctx, "api")
	if err != nil || info.Rate != 1 || info.Burst != 1 || info.Period != time.Second || !info.CreatedAt.Equal(got.CreatedAt) {
		t.Fatalf("get after replace: %+v %v", info, err)
	}
	ls, err := e.st.ListLimits(e.ctx)
	if err != nil || len(ls) != 2 || ls[0].Name != "api" || ls[1].Name != "per-customer" || ls[1].Cap("acme") != 10 || ls[1].Cap("other") != 3 {
		t.Fatalf("list: %+v %v", ls, err)
	}
	if err := e.st.DeleteLimit(e.ctx, "api"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := e.st.GetLimit(e.ctx, "api"); !errors.Is(err, store.ErrLimitNotFound) {
		t.Fatalf("get deleted: %v, want ErrLimitNotFound", err)
	}
	if err := e.st.DeleteLimit(e.ctx, "api"); !errors.Is(err, store.ErrLimitNotFound) {
		t.Fatalf("delete again: %v, want ErrLimitNotFound", err)
	}
}

func testLimitEnqueueRefused(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "api", Rate: 10, Period: time.Second, Burst: 5})
	for _, c := range []struct {
		tasks []store.NewTask
		field string
	}{
		{[]store.NewTask{{Kind: "k", LimitKeys: map[string]string{"nope": "a"}}}, "limits"},
		{[]store.NewTask{{Kind: "k"}, {Kind: "k", LimitKeys: map[string]string{"api": "a"}, Cost: 6}}, "cost"},
		{[]store.NewTask{{Kind: "k", LimitKeys: map[string]string{"api": ""}}}, "limits"},
		{[]store.NewTask{{Kind: "k", Cost: 2}}, "cost"},
		{[]store.NewTask{{Kind: "k", Requires: []store.Requirement{{Label: "mem", Op: ">=", Value: "lots"}}}}, "requires"},
	} {
		_, err := e.st.Enqueue(e.ctx, c.tasks)
		var verr *store.ValidationError
		if !errors.As(err, &verr) || verr.Field != c.field {
			t.Errorf("enqueue %+v: %v, want a validation error on %q", c.tasks, err, c.field)
		}
	}
	stats, err := e.st.Stats(e.ctx)
	if err != nil || len(stats) != 0 {
		t.Fatalf("refused enqueues wrote: %+v %v", stats, err)
	}
}

func testConcurrencyCap(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "per-customer", Concurrency: 2, Overrides: map[string]int{"big": 3}})
	var a []store.EnqueueResult
	for range 5 {
		a = append(a, e.enqueue(t, limited("c", "per-customer", "acme"))...)
	}
	for range 5 {
		e.enqueue(t, limited("c", "per-customer", "big"))
	}
	got := e.claim(t, "n", time.Minute, q("c", 100))
	if n := countByKey(got, "per-customer"); n["acme"] != 2 || n["big"] != 3 || len(got) != 5 {
		t.Fatalf("claimed %v, want acme 2 and big 3", n)
	}
	if more := e.claim(t, "n", time.Minute, q("c", 100)); len(more) != 0 {
		t.Fatalf("claimed %d more over the cap", len(more))
	}
	why := e.get(t, a[4].ID).Blocked
	if why == nil || why.Reason != store.BlockedLimit || why.Limit != "per-customer" || why.Key != "acme" {
		t.Fatalf("blocked reason of a waiting task: %+v", why)
	}
	info, err := e.st.GetLimit(e.ctx, "per-customer")
	if err != nil || info.InUse != 5 || info.Waiting != 5 || info.Keys != 2 {
		t.Fatalf("limit totals: %+v %v, want 5 in use and 5 waiting over 2 keys", info, err)
	}
	keys, next, err := e.st.LimitKeyStates(e.ctx, "per-customer", "", 1)
	if err != nil || len(keys) != 1 || next == "" || keys[0].Waiting != 3 || keys[0].Key != "acme" || keys[0].InUse != 2 || keys[0].Cap != 2 {
		t.Fatalf("first page of keys: %+v %q %v", keys, next, err)
	}
	keys, next, err = e.st.LimitKeyStates(e.ctx, "per-customer", next, 1)
	if err != nil || len(keys) != 1 || next != "" || keys[0].Key != "big" || keys[0].InUse != 3 || keys[0].Cap != 3 {
		t.Fatalf("second page of keys: %+v %q %v", keys, next, err)
	}
	// Finishing one of acme's gives its slot to the next of acme's.
	var acme []*store.Task
	for _, c := range got {
		if c.LimitKeys["per-customer"] == "acme" {
			acme = append(acme, c)
		}
	}
	finish(t, e, doneAll(acme[0])...)
	next1 := e.claim(t, "n", time.Minute, q("c", 100))
	if n := countByKey(next1, "per-customer"); len(next1) != 1 || n["acme"] != 1 {
		t.Fatalf("after a finish claimed %v, want one of acme's", n)
	}
	if c := e.get(t, next1[0].ID); c.Blocked != nil {
		t.Fatalf("a claimed task still shows a blocked reason: %+v", c.Blocked)
	}
	e.noDrift(t)
}

func testHotKeyDoesNotBlock(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "hot", Concurrency: 1})
	batch := make([]store.NewTask, 300)
	for i := range batch {
		batch[i] = limited("h", "hot", "one")
		batch[i].Priority = 10
	}
	e.enqueue(t, batch...)
	var plain []store.NewTask
	for i := range 20 {
		plain = append(plain, store.NewTask{Kind: "k", Queue: "h", Priority: i % 3})
	}
	e.enqueue(t, plain...)
	got := e.claim(t, "n", time.Minute, q("h", 8))
	if len(got) != 8 {
		t.Fatalf("claimed %d, want 8: the hot key's tasks must not hold the others back", len(got))
	}
	if got[0].Priority != 10 && countByKey(got, "hot")["one"] != 1 {
		t.Fatalf("the hot key's first task should be claimed: %d of it", countByKey(got, "hot")["one"])
	}
	prio := []int{}
	for _, c := range got {
		if len(c.LimitKeys) == 0 {
			prio = append(prio, c.Priority)
		}
	}
	if len(prio) != 7 || !sort.IsSorted(sort.Reverse(sort.IntSlice(prio))) || prio[0] != 2 {
		t.Fatalf("plain tasks claimed with priorities %v, want 7 in priority order", prio)
	}
	rest := e.claim(t, "n", time.Minute, q("h", 100))
	if len(rest) != 13 || countByKey(rest, "hot")["one"] != 0 {
		t.Fatalf("second claim took %d (%d of the hot key), want the 13 plain tasks left", len(rest), countByKey(rest, "hot")["one"])
	}
	e.noDrift(t)
}

func testSlotReleased(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "one", Concurrency: 1})
	e.enqueue(t, limited("r", "one", "k"), limited("r", "one", "k"))
	take := func(what string) *store.Task {
		t.Helper()
		got := e.claim(t, "n", time.Minute, q("r", 10))
		if len(got) != 1 {
			t.Fatalf("%s: claimed %d, want 1", what, len(got))
		}
		return got[0]
	}
	c := take("first")
	// A retry gives the slot back: the other task runs.
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StatePending, Event: store.EventRetryScheduled,
		RunAt: e.now().Add(time.Hour), Error: &store.AttemptError{Attempt: 1, Error: "boom"}, Limited: true})
	c = take("after a retry")
	// So does a snooze.
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StatePending, Event: store.EventSnoozed,
		RunAt: e.now().Add(time.Hour), Refund: true, Limited: true})
	e.enqueue(t, limited("r", "one", "k"))
	c = take("after a snooze")
	// A suspension too: a waiting task holds no slot.
	e.waitpoint(t, c, "approval")
	e.suspend(t, c, store.WaitSpec{Waitpoints: []string{"approval"}, Mode: store.WaitAny})
	e.enqueue(t, limited("r", "one", "k"))
	take("after a suspension")
	// And a rescue of an expired lease.
	e.clock.Advance(2 * time.Minute)
	if n := e.rescue(t, store.RescueParams{}); n != 1 {
		t.Fatalf("rescued %d, want 1", n)
	}
	take("after a rescue")
	e.noDrift(t)
}

func testTwoLimits(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "a", Concurrency: 1})
	e.setLimit(t, store.Limit{Name: "b", Concurrency: 1})
	both := store.NewTask{Kind: "k", Queue: "two", LimitKeys: map[string]string{"a": "x", "b": "y"}}
	e.enqueue(t, limited("two", "b", "y"))
	first := e.claim(t, "n", time.Minute, q("two", 10))
	e.enqueue(t, both, limited("two", "a", "x"))
	got := e.claim(t, "n", time.Minute, q("two", 10))
	// The task needing both cannot have b:y; it must not take a:x either,
	// so the task needing a:x alone runs.
	if len(got) != 1 || len(got[0].LimitKeys) != 1 || got[0].LimitKeys["a"] != "x" {
		t.Fatalf("claimed %v, want only the task needing a:x", got)
	}
	finish(t, e, doneAll(first...)...)
	finish(t, e, doneAll(got...)...)
	got = e.claim(t, "n", time.Minute, q("two", 10))
	if len(got) != 1 || len(got[0].LimitKeys) != 2 {
		t.Fatalf("after both keys freed, claimed %v, want the task needing both", got)
	}
	e.noDrift(t)
}

func testRateLimit(t *testing.T, e *env) {
	start := e.clock.Freeze()
	e.setLimit(t, store.Limit{Name: "api", Rate: 4, Period: time.Second, Burst: 2})
	batch := make([]store.NewTask, 40)
	for i := range batch {
		batch[i] = limited("rate", "api", "default")
	}
	e.enqueue(t, batch...)
	var starts []time.Time
	for step := 0; step < 80 && len(starts) < 40; step++ {
		got := e.claim(t, "n", time.Hour, q("rate", 10))
		for range got {
			starts = append(starts, e.now())
		}
		finish(t, e, doneAll(got...)...)
		if step == 0 {
			if len(got) != 2 {
				t.Fatalf("first claim took %d, want the burst of 2", len(got))
			}
			keys, _, err := e.st.LimitKeyStates(e.ctx, "api", "", 10)
			if err != nil || len(keys) != 1 || !keys[0].NextAllowedAt.Equal(start.Add(250*time.Millisecond)) {
				t.Fatalf("next allowed after the burst: %+v %v, want %v", keys, err, start.Add(250*time.Millisecond))
			}
			var waiting *store.Task
			for _, id := range e.pendingIDs(t, "rate") {
				if c := e.get(t, id); c.Blocked != nil {
					waiting = c
					break
				}
			}
			if waiting == nil || waiting.Blocked.Reason != store.BlockedRate || !waiting.Blocked.Until.Equal(start.Add(250*time.Millisecond)) {
				t.Fatalf("a task held back by the rate: %+v", waiting)
			}
		}
		e.clock.Advance(125 * time.Millisecond)
	}
	if len(starts) != 40 {
		t.Fatalf("%d of 40 tasks ran in 10 s of the clock", len(starts))
	}
	// In any window of one period, at most rate + burst - 1... exactly:
	// GCRA with burst 2 allows at most 2 + 4·w/1s in a window of w.
	for i := range starts {
		n := 0
		for j := i; j < len(starts) && starts[j].Sub(starts[i]) < time.Second; j++ {
			n++
		}
		if n > 4+1 {
			t.Fatalf("%d tasks started within one second from %v: over the rate", n, starts[i].Sub(start))
		}
	}
	e.noDrift(t)
}

// pendingIDs lists the pending tasks of queue.
func (e *env) pendingIDs(t *testing.T, queue string) []string {
	t.Helper()
	tasks, err := e.st.List(e.ctx, store.ListParams{Queue: queue, States: []store.State{store.StatePending}, Limit: 1000})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	out := make([]string, len(tasks))
	for i, c := range tasks {
		out[i] = c.ID
	}
	return out
}

func testRateLimitedOutcome(t *testing.T, e *env) {
	e.clock.Freeze()
	e.setLimit(t, store.Limit{Name: "upstream", Rate: 100, Period: time.Second, Burst: 10})
	e.enqueue(t, limited("up", "upstream", "acct"), limited("up", "upstream", "acct"))
	got := e.claim(t, "n", time.Minute, q("up", 1))
	c := got[0]
	finish(t, e, store.Outcome{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StatePending, Event: store.EventSnoozed,
		RunAt: e.now().Add(10 * time.Second), Refund: true, RateLimited: true, Limited: true})
	if more := e.claim(t, "n", time.Minute, q("up", 10)); len(more) != 0 {
		t.Fatalf("claimed %d while the upstream holds the key back", len(more))
	}
	e.clock.Advance(9 * time.Second)
	if more := e.claim(t, "n", time.Minute, q("up", 10)); len(more) != 0 {
		t.Fatalf("claimed %d a second before the hold ends", len(more))
	}
	// When the hold ends the key runs at its rate again, from one unit:
	// not with a fresh burst, which would meet the upstream's limit anew.
	e.clock.Advance(time.Second)
	if more := e.claim(t, "n", time.Minute, q("up", 10)); len(more) != 1 {
		t.Fatalf("claimed %d when the hold ended, want 1", len(more))
	}
	e.clock.Advance(10 * time.Millisecond)
	if more := e.claim(t, "n", time.Minute, q("up", 10)); len(more) != 1 {
		t.Fatalf("claimed %d one interval later, want the other", len(more))
	}
	if c := e.get(t, c.ID); c.Attempt != 1 {
		t.Fatalf("the rate-limited attempt was counted: attempt %d", c.Attempt)
	}
}

func testLimitChanged(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "cap", Concurrency: 1})
	for range 4 {
		e.enqueue(t, limited("chg", "cap", "k"))
	}
	if got := e.claim(t, "n", time.Minute, q("chg", 10)); len(got) != 1 {
		t.Fatalf("claimed %d, want 1", len(got))
	}
	e.setLimit(t, store.Limit{Name: "cap", Concurrency: 3})
	if got := e.claim(t, "n", time.Minute, q("chg", 10)); len(got) != 2 {
		t.Fatalf("after raising the cap claimed %d, want 2 more", len(got))
	}
	if err := e.st.DeleteLimit(e.ctx, "cap"); err != nil {
		t.Fatal(err)
	}
	if got := e.claim(t, "n", time.Minute, q("chg", 10)); len(got) != 1 {
		t.Fatalf("after deleting the limit claimed %d, want the last one", len(got))
	}
}

func testRouting(t *testing.T, e *env) {
	gpu := store.NewTask{Kind: "k", Queue: "route", Requires: []store.Requirement{{Label: "gpu", Op: "=", Value: "true"}, {Label: "mem", Op: ">=", Value: "64"}}}
	res := e.enqueue(t, gpu, store.NewTask{Kind: "k", Queue: "route"})
	if got := e.claimAs(t, e.st, nil, q("route", 10)); len(got) != 1 || got[0].ID != res[1].ID {
		t.Fatalf("a worker without labels claimed %v, want only the plain task", got)
	}
	for _, labels := range []map[string]string{
		{"gpu": "true", "mem": "32"},
		{"gpu": "false", "mem": "128"},
		{"mem": "128"},
		{"gpu": "true", "mem": "many"},
	} {
		if got := e.claimAs(t, e.st, labels, q("route", 10)); len(got) != 0 {
			t.Fatalf("a worker with %v claimed the task requiring gpu=true, mem>=64", labels)
		}
	}
	got := e.claimAs(t, e.st, map[string]string{"gpu": "true", "mem": "64", "region": "eu"}, q("route", 10))
	if len(got) != 1 || got[0].ID != res[0].ID || len(got[0].Requires) != 2 {
		t.Fatalf("the matching worker claimed %v", got)
	}
	if _, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: "n", Queues: []store.QueueClaim{q("route", 1)}, LeaseTTL: time.Minute,
		Labels: map[string]string{"bad label": "x"}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a claim with a bad label: %v, want ErrInvalid", err)
	}
}

func testFairness(t *testing.T, e *env) {
	if err := e.st.SetFairness(e.ctx, "fair", map[string]int{"b": 3}); err != nil {
		t.Fatal(err)
	}
	if w, err := e.st.Fairness(e.ctx, "fair"); err != nil || len(w) != 1 || w["b"] != 3 {
		t.Fatalf("weights: %v %v", w, err)
	}
	// a's backlog is a hundred times b's, and was there first.
	const na, nb = 10000, 100
	for i := 0; i < na; i += 1000 {
		batch := make([]store.NewTask, 1000)
		for j := range batch {
			batch[j] = store.NewTask{Kind: "k", Queue: "fair", FairnessKey: "a"}
		}
		e.enqueue(t, batch...)
	}
	batch := make([]store.NewTask, nb)
	for j := range batch {
		batch[j] = store.NewTask{Kind: "k", Queue: "fair", FairnessKey: "b"}
	}
	e.enqueue(t, batch...)
	share := map[string]int{}
	claimed := 0
	for claimed < 2*nb {
		got := e.claim(t, "n", time.Hour, q("fair", 20))
		for _, c := range got {
			share[c.FairnessKey]++
		}
		claimed += len(got)
		finish(t, e, doneAll(got...)...)
	}
	// Over the first 200 claims, b (weight 3) gets 3 of every 4 while it
	// has tasks: its 100 within the first ~133, so all 100 are in.
	if share["b"] < nb*9/10 {
		t.Fatalf("b got %d of the first %d claims, want nearly all its %d (weight 3 against 1)", share["b"], claimed, nb)
	}
	// A key that arrives late starts at the current virtual time: it is
	// served at once, not after a's backlog.
	late := make([]store.NewTask, 10)
	for j := range late {
		late[j] = store.NewTask{Kind: "k", Queue: "fair", FairnessKey: "c"}
	}
	e.enqueue(t, late...)
	share = map[string]int{}
	for claimed = 0; claimed < 24; {
		got := e.claim(t, "n", time.Hour, q("fair", 4))
		for _, c := range got {
			share[c.FairnessKey]++
		}
		claimed += len(got)
		finish(t, e, doneAll(got...)...)
	}
	if share["c"] < 10 {
		t.Fatalf("the late key c got %d of the next %d claims, want its 10 (interleaved with a)", share["c"], claimed)
	}
	// Shares follow the weights over a long run: a and b with equal
	// backlogs and weights 1 and 3.
	for i := 0; i < 4000; i += 1000 {
		batch := make([]store.NewTask, 1000)
		for j := range batch {
			batch[j] = store.NewTask{Kind: "k", Queue: "fair", FairnessKey: "b"}
		}
		e.enqueue(t, batch...)
	}
	share = map[string]int{}
	for claimed = 0; claimed < 4000; {
		got := e.claim(t, "n", time.Hour, q("fair", 50))
		for _, c := range got {
			share[c.FairnessKey]++
		}
		claimed += len(got)
		finish(t, e, doneAll(got...)...)
	}
	if ratio := float64(share["b"]) / float64(share["a"]); ratio < 3*0.9 || ratio > 3*1.1 {
		t.Fatalf("over %d claims b:a = %d:%d (%.2f), want 3 within 10%%", claimed, share["b"], share["a"], ratio)
	}
}

func testOnLimit(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "strict", Concurrency: 1, OnLimit: store.OnLimitReject})
	e.enqueue(t, limited("on", "strict", "k"))
	running := e.claim(t, "n", time.Minute, q("on", 10))
	_, err := e.st.Enqueue(e.ctx, []store.NewTask{limited("on", "strict", "k")})
	var lre *store.LimitReachedError
	if !errors.As(err, &lre) || !errors.Is(err, store.ErrLimitReached) || lre.Limit != "strict" || lre.Key != "k" || lre.Cap != 1 {
		t.Fatalf("enqueue at a rejecting limit: %v, want ErrLimitReached naming strict and k", err)
	}
	e.enqueue(t, limited("on", "strict", "other"))
	finish(t, e, doneAll(running...)...)

	e.setLimit(t, store.Limit{Name: "latest", Concurrency: 1, OnLimit: store.OnLimitCancelInProgress})
	e.enqueue(t, limited("on2", "latest", "doc"))
	old := e.claim(t, "n", time.Minute, q("on2", 10))[0]
	e.enqueue(t, limited("on2", "latest", "doc"))
	cancel, err := e.st.ExtendLease(e.ctx, old.ID, old.LeaseEpoch, time.Minute)
	if err != nil || !cancel {
		t.Fatalf("the running task of the key was not asked to cancel: %v %v", cancel, err)
	}
}

func testConcurrencyThreeStores(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "cap", Concurrency: 2})
	const keys, per = 4, 30
	var batch []store.NewTask
	for i := range keys * per {
		batch = append(batch, limited("three", "cap", fmt.Sprintf("k%d", i%keys)))
	}
	e.enqueue(t, batch...)
	type span struct {
		key        string
		start, end time.Time
	}
	var (
		mu     sync.Mutex
		ledger []span
		wg     sync.WaitGroup
		done   int
		failed error
	)
	stores := []store.Store{e.st, e.open(t), e.open(t)}
	for w := range 6 {
		st := stores[w%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				finished := done >= keys*per || failed != nil
				mu.Unlock()
				if finished {
					return
				}
				got, err := st.Claim(e.ctx, store.ClaimRequest{Owner: fmt.Sprintf("w%d", w), Queues: []store.QueueClaim{q("three", 3)}, LeaseTTL: time.Minute})
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				startAt := time.Now()
				time.Sleep(time.Millisecond)
				endAt := time.Now()
				mu.Lock()
				for _, c := range got {
					ledger = append(ledger, span{c.LimitKeys["cap"], startAt, endAt})
				}
				done += len(got)
				mu.Unlock()
				if len(got) > 0 {
					if _, err := st.Finish(e.ctx, doneAll(got...)); err != nil {
						mu.Lock()
						failed = err
						mu.Unlock()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	if len(ledger) != keys*per {
		t.Fatalf("ran %d of %d tasks", len(ledger), keys*per)
	}
	// The ledger's spans lie within the leases: more than the cap
	// overlapping there means more than the cap held slots.
	for _, a := range ledger {
		n := 0
		for _, b := range ledger {
			if a.key == b.key && !b.start.After(a.start) && b.end.After(a.start) {
				n++
			}
		}
		if n > 2 {
			t.Fatalf("%d tasks of key %s ran at once, over the cap of 2", n, a.key)
		}
	}
	e.noDrift(t)
}

func testKeepLatest(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "debounce", Concurrency: 1, OnLimit: store.OnLimitKeepLatest})
	r1 := e.enqueue(t, limited("deb", "debounce", "doc"))[0]
	r2 := e.enqueue(t, limited("deb", "debounce", "doc"))[0]
	other := e.enqueue(t, limited("deb", "debounce", "other"))[0]
	if got := e.states(t, r1.ID, r2.ID, other.ID); got[0] != store.StateCancelled || got[1] != store.StatePending || got[2] != store.StatePending {
		t.Fatalf("states %v, want the older task of doc cancelled, the others pending", got)
	}
	evs := e.events(t, r1.ID)
	if last := evs[len(evs)-1]; last.Type != store.EventCancelled || !strings.Contains(string(last.Data), `"superseded"`) {
		t.Fatalf("the replaced task's last event: %+v", last)
	}
	got := e.claim(t, "n", time.Minute, q("deb", 10))
	if len(got) != 2 {
		t.Fatalf("claimed %d, want the newest of each key", len(got))
	}
	// A running task is not replaced; the next pending one waits for it.
	r3 := e.enqueue(t, limited("deb", "debounce", "doc"))[0]
	r4 := e.enqueue(t, limited("deb", "debounce", "doc"))[0]
	if st := e.states(t, r2.ID, r3.ID, r4.ID); st[0] != store.StateRunning || st[1] != store.StateCancelled || st[2] != store.StatePending {
		t.Fatalf("states %v, want running, cancelled, pending", st)
	}
	stats, err := e.st.Stats(e.ctx)
	if err != nil || len(stats) != 1 || stats[0].Counts[store.StatePending] != 1 || stats[0].Counts[store.StateCancelled] != 2 || stats[0].Counts[store.StateRunning] != 2 {
		t.Fatalf("counts: %+v %v", stats, err)
	}
	// Flow members cannot draw on it.
	_, err = e.st.EnqueueFlow(e.ctx, store.NewFlow{Members: []store.NewFlowMember{{Key: "a", Task: limited("deb", "debounce", "doc")}}})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a flow member on a keep_latest limit: %v, want ErrInvalid", err)
	}
	e.noDrift(t)
}
