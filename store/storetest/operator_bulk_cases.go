package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Cases of store.Operator's Bulk: retry, cancel, delete and run now on
// the tasks a filter selects, batch by batch, with events and counts as
// exact as the single-task actions keep them.

var bulkCases = []testCase{
	{"retry by filter: events, counts, wakeup; a dry run changes nothing", testBulkRetry},
	{"retry keeps unique keys unique", testBulkRetryUniqueKeys},
	{"cancel: pending at once, running asked to stop, finished untouched", testBulkCancel},
	{"delete: finished tasks only, with their events", testBulkDelete},
	{"run now: scheduled pending tasks become ready", testBulkRunNow},
	{"batches: limit and cursor cover every task once", testBulkBatches},
	{"by ids and by creation time", testBulkIDsAndTime},
	{"bad parameters are refused before anything is written", testBulkRefused},
}

// seedTask is a task for seed to create, and the state to drive it to.
type seedTask struct {
	queue, kind, key string
	state            store.State
	runAt            time.Time
}

// seed creates tasks in the states they ask for: those to be claimed
// (running, completed, failed, cancelled) one at a time — enqueued,
// claimed by owner "seed" with one attempt, and finished — then the
// pending ones, so that no claim takes a task meant to stay pending, and
// a task's unique key is free again before the next of the key is
// enqueued. It returns the ids by the position of their task.
func seed(t *testing.T, e *env, tasks ...seedTask) []string {
	t.Helper()
	ids := make([]string, len(tasks))
	for i, st := range tasks {
		if st.state == store.StatePending {
			continue
		}
		ids[i] = e.enqueue(t, store.NewTask{Kind: st.kind, Queue: st.queue, UniqueKey: st.key, MaxAttempts: 1})[0].ID
		claimed := e.claim(t, "seed", time.Hour, q(st.queue, 1))
		if len(claimed) != 1 || claimed[0].ID != ids[i] {
			t.Fatalf("seed: claimed %d tasks of queue %s, want %s", len(claimed), st.queue, ids[i])
		}
		o := store.Outcome{TaskID: ids[i], Epoch: claimed[0].LeaseEpoch, State: st.state}
		switch st.state {
		case store.StateRunning:
			continue
		case store.StateCompleted:
			o.Event = store.EventCompleted
		case store.StateFailed:
			o.Event, o.Error = store.EventFailed, &store.AttemptError{Attempt: 1, At: e.now(), Error: "boom"}
		case store.StateCancelled:
			o.Event = store.EventCancelled
		}
		finish(t, e, o)
	}
	for i, st := range tasks {
		if st.state == store.StatePending {
			ids[i] = e.enqueue(t, store.NewTask{Kind: st.kind, Queue: st.queue, UniqueKey: st.key, RunAt: st.runAt})[0].ID
		}
	}
	return ids
}

// bulk runs one batch and fails the test on an error.
func (e *env) bulk(t *testing.T, p store.BulkParams) store.BulkResult {
	t.Helper()
	res, err := e.st.Bulk(e.ctx, p)
	if err != nil {
		t.Fatalf("bulk %s: %v", p.Action, err)
	}
	return res
}

// states reads the state of each task.
func (e *env) states(t *testing.T, ids ...string) []store.State {
	t.Helper()
	out := make([]store.State, len(ids))
	for i, id := range ids {
		out[i] = e.get(t, id).State
	}
	return out
}

func testBulkRetry(t *testing.T, e *env) {
	ids := seed(t, e,
		seedTask{queue: "a", kind: "k", state: store.StateFailed},
		seedTask{queue: "a", kind: "k", state: store.StateCancelled},
		seedTask{queue: "a", kind: "k", state: store.StateCompleted},
		seedTask{queue: "b", kind: "k", state: store.StateFailed},
		seedTask{queue: "a", kind: "k", state: store.StatePending},
	)
	wantA := map[store.State]int64{store.StateFailed: 1, store.StateCancelled: 1, store.StateCompleted: 1, store.StatePending: 1}
	assertCounts(t, e, "a", wantA)
	failedEvents := len(e.events(t, ids[0]))

	// A dry run counts what the action would look at, and writes nothing.
	dry := e.bulk(t, store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{Queue: "a"}, DryRun: true})
	if dry != (store.BulkResult{Matched: 2}) {
		t.Fatalf("dry run = %+v, want 2 matched, none changed, no next batch", dry)
	}
	assertCounts(t, e, "a", wantA)
	if got := len(e.events(t, ids[0])); got != failedEvents {
		t.Fatalf("a dry run wrote events: %d, want %d", got, failedEvents)
	}

	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	res := e.bulk(t, store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{Queue: "a"}})
	if res != (store.BulkResult{Matched: 2, Changed: 2}) {
		t.Fatalf("retry = %+v, want 2 matched and changed", res)
	}
	expectWake(t, ch, "a bulk retry")
	if got := e.states(t, ids...); !reflect.DeepEqual(got, []store.State{store.StatePending, store.StatePending, store.StateCompleted, store.StateFailed, store.StatePending}) {
		t.Fatalf("states after the retry = %v", got)
	}
	assertCounts(t, e, "a", map[store.State]int64{store.StatePending: 3, store.StateCompleted: 1})
	assertCounts(t, e, "b", map[store.State]int64{store.StateFailed: 1})
	// Each retried task is as Retry would have left it.
	for i, from := range []string{"failed", "cancelled"} {
		got := e.get(t, ids[i])
		if got.MaxAttempts != 2 || got.LeaseOwner != "" || !got.FinalizedAt.IsZero() || got.RunAt.After(e.now()) {
			t.Fatalf("retried %s task = %+v; want 2 attempts, no lease, ready", from, got)
		}
		evs := e.events(t, ids[i])
		last := evs[len(evs)-1]
		if last.Type != store.EventRetried || last.Attempt != 1 {
			t.Fatalf("last event of the retried %s task = %s (attempt %d)", from, last.Type, last.Attempt)
		}
		assertJSON(t, "retried event", last.Data, json.RawMessage(`{"from":"`+from+`"}`))
	}
	if got := e.get(t, ids[0]); len(got.Errors) != 1 {
		t.Fatalf("error history after the retry = %+v, want it kept", got.Errors)
	}
	// Retried tasks run again, under a new epoch.
	if claimed := e.claim(t, "n", time.Minute, q("a", 10)); len(claimed) != 3 {
		t.Fatalf("claimed %d after the retry, want 3", len(claimed))
	}
	// Nothing left to retry in a: the same call matches nothing.
	if res := e.bulk(t, store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{Queue: "a"}}); res != (store.BulkResult{}) {
		t.Fatalf("second retry = %+v, want nothing", res)
	}
	if err := e.st.Maintain(e.ctx); err != nil {
		t.Fatal(err)
	}
	assertCounts(t, e, "a", map[store.State]int64{store.StateRunning: 3, store.StateCompleted: 1})
}

func testBulkRetryUniqueKeys(t *testing.T, e *env) {
	ids := seed(t, e,
		seedTask{queue: "u", kind: "k", key: "twice", state: store.StateFailed},
		seedTask{queue: "u", kind: "k", key: "twice", state: store.StateCancelled},
		seedTask{queue: "u", kind: "k", key: "held", state: store.StateFailed},
		seedTask{queue: "u", kind: "k", key: "held", state: store.StatePending},
	)
	res := e.bulk(t, store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{Queue: "u"}})
	if res != (store.BulkResult{Matched: 3, Changed: 1}) {
		t.Fatalf("retry = %+v, want 3 matched, 1 changed", res)
	}
	if got := e.states(t, ids...); !reflect.DeepEqual(got, []store.State{store.StatePending, store.StateCancelled, store.StateFailed, store.StatePending}) {
		t.Fatalf("states = %v; want only the first task of key twice retried", got)
	}
	assertCounts(t, e, "u", map[store.State]int64{store.StatePending: 2, store.StateCancelled: 1, store.StateFailed: 1})
	if dup := e.enqueue(t, store.NewTask{Kind: "k", Queue: "u", UniqueKey: "twice"})[0]; !dup.Duplicate || dup.ID != ids[0] {
		t.Fatalf("enqueue of key twice = %+v; want a duplicate of the retried task", dup)
	}
	// The refused tasks wrote no event.
	for _, id := range ids[1:3] {
		if evs := e.events(t, id); evs[len(evs)-1].Type == store.EventRetried {
			t.Fatalf("refused task %s has a retried event", id)
		}
	}
}

func testBulkCancel(t *testing.T, e *env) {
	later := e.now().Add(time.Hour)
	ids := seed(t, e,
		seedTask{queue: "c", kind: "k", state: store.StateRunning},
		seedTask{queue: "c", kind: "k", state: store.StateCompleted},
		seedTask{queue: "c", kind: "k", state: store.StatePending},
		seedTask{queue: "c", kind: "k", state: store.StatePending, runAt: later},
		seedTask{queue: "c", kind: "other", state: store.StatePending},
	)
	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	res := e.bulk(t, store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Kind: "k"}})
	if res != (store.BulkResult{Matched: 3, Changed: 3}) {
		t.Fatalf("cancel = %+v, want 3 matched and changed", res)
	}
	if got := e.states(t, ids...); !reflect.DeepEqual(got, []store.State{store.StateRunning, store.StateCompleted, store.StateCancelled, store.StateCancelled, store.StatePending}) {
		t.Fatalf("states after the cancel = %v", got)
	}
	// The worker learns of it as it would of a single cancel.
	expectWake(t, ch, "a bulk cancel of a running task")
	if reqs, err := e.st.CancelRequests(e.ctx, "seed"); err != nil || !reflect.DeepEqual(reqs, []string{ids[0]}) {
		t.Fatalf("cancel requests = %v, %v", reqs, err)
	}
	evs := e.events(t, ids[0])
	if last := evs[len(evs)-1]; last.Type != store.EventCancelRequested || last.Attempt != 1 {
		t.Fatalf("running task's last event = %s (attempt %d), want cancel_requested", last.Type, last.Attempt)
	}
	for _, id := range ids[2:4] {
		got := e.get(t, id)
		evs := e.events(t, id)
		if got.FinalizedAt.IsZero() || evs[len(evs)-1].Type != store.EventCancelled {
			t.Fatalf("cancelled task %+v, last event %s", got, evs[len(evs)-1].Type)
		}
	}
	assertCounts(t, e, "c", map[store.State]int64{store.StateRunning: 1, store.StateCompleted: 1, store.StateCancelled: 2, store.StatePending: 1})
	// Again: the running task is matched, but already asked to stop.
	if res := e.bulk(t, store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Kind: "k"}}); res != (store.BulkResult{Matched: 1}) {
		t.Fatalf("second cancel = %+v, want 1 matched, none changed", res)
	}
	if n := len(e.events(t, ids[0])); n != len(evs) {
		t.Fatalf("a second cancel request wrote an event")
	}
	// The worker's outcome ends it cancelled, as after a single cancel.
	running := e.get(t, ids[0])
	res2, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: ids[0], Epoch: running.LeaseEpoch, State: store.StatePending, RunAt: e.now(), Event: store.EventRetryScheduled}})
	if err != nil || res2[0].Err != nil || res2[0].State != store.StateCancelled {
		t.Fatalf("retry outcome after the cancel request = %+v, %v; want cancelled", res2, err)
	}
	assertCounts(t, e, "c", map[store.State]int64{store.StateCompleted: 1, store.StateCancelled: 3, store.StatePending: 1})
}

func testBulkDelete(t *testing.T, e *env) {
	ids := seed(t, e,
		seedTask{queue: "d", kind: "k", state: store.StateCompleted},
		seedTask{queue: "d", kind: "k", state: store.StateFailed},
		seedTask{queue: "d", kind: "k", state: store.StateCancelled},
		seedTask{queue: "d", kind: "k", state: store.StateRunning},
		seedTask{queue: "d", kind: "k", state: store.StatePending},
		seedTask{queue: "e", kind: "k", state: store.StateCompleted},
	)
	keptEvents := len(e.events(t, ids[5]))
	res := e.bulk(t, store.BulkParams{Action: store.BulkDelete, Filter: store.TaskFilter{Queue: "d", States: []store.State{store.StateFailed, store.StateCancelled}}})
	if res != (store.BulkResult{Matched: 2, Changed: 2}) {
		t.Fatalf("delete of failed and cancelled = %+v, want 2", res)
	}
	assertCounts(t, e, "d", map[store.State]int64{store.StateCompleted: 1, store.StateRunning: 1, store.StatePending: 1})
	// Without states, every finished task of the queue; never a running or
	// pending one.
	res = e.bulk(t, store.BulkParams{Action: store.BulkDelete, Filter: store.TaskFilter{Queue: "d"}})
	if res != (store.BulkResult{Matched: 1, Changed: 1}) {
		t.Fatalf("delete of finished tasks = %+v, want the completed one", res)
	}
	for _, id := range ids[:3] {
		if _, err := e.st.Get(e.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted task %s: %v, want ErrNotFound", id, err)
		}
		if evs := e.events(t, id); len(evs) != 0 {
			t.Fatalf("deleted task %s kept %d events", id, len(evs))
		}
	}
	if got := e.states(t, ids[3:]...); !reflect.DeepEqual(got, []store.State{store.StateRunning, store.StatePending, store.StateCompleted}) {
		t.Fatalf("states of the tasks kept = %v", got)
	}
	if n := len(e.events(t, ids[5])); n != keptEvents {
		t.Fatalf("another queue's task has %d events, want %d", n, keptEvents)
	}
	assertCounts(t, e, "d", map[store.State]int64{store.StateRunning: 1, store.StatePending: 1})
	assertCounts(t, e, "e", map[store.State]int64{store.StateCompleted: 1})
	if err := e.st.Maintain(e.ctx); err != nil {
		t.Fatal(err)
	}
	assertCounts(t, e, "d", map[store.State]int64{store.StateRunning: 1, store.StatePending: 1})
}

func testBulkRunNow(t *testing.T, e *env) {
	now := e.clock.Freeze()
	later, muchLater := now.Add(time.Hour), now.Add(48*time.Hour)
	ids := seed(t, e,
		seedTask{queue: "r", kind: "k", state: store.StatePending, runAt: later},
		seedTask{queue: "r", kind: "k", state: store.StatePending, runAt: muchLater},
		seedTask{queue: "r", kind: "k", state: store.StatePending},
		seedTask{queue: "s", kind: "k", state: store.StatePending, runAt: later},
	)
	if got := e.claim(t, "n", time.Minute, q("r", 10)); len(got) != 1 || got[0].ID != ids[2] {
		t.Fatalf("claimed %d before run now, want only the ready task", len(got))
	}
	e.clock.Advance(time.Second)
	ch, stop := e.st.Subscribe()
	defer stop()
	drain(ch)
	res := e.bulk(t, store.BulkParams{Action: store.BulkRunNow, Filter: store.TaskFilter{Queue: "r"}})
	if res != (store.BulkResult{Matched: 2, Changed: 2}) {
		t.Fatalf("run now = %+v, want the 2 scheduled tasks", res)
	}
	expectWake(t, ch, "a bulk run now")
	for _, id := range ids[:2] {
		if got := e.get(t, id); !got.RunAt.Equal(e.now()) || got.State != store.StatePending {
			t.Fatalf("task after run now: %s at %v, want pending at %v", got.State, got.RunAt, e.now())
		}
	}
	if got := e.get(t, ids[3]); !got.RunAt.Equal(later) {
		t.Fatalf("another queue's task moved to %v", got.RunAt)
	}
	if got := e.claim(t, "n", time.Minute, q("r", 10)); len(got) != 2 {
		t.Fatalf("claimed %d after run now, want 2", len(got))
	}
	assertCounts(t, e, "r", map[store.State]int64{store.StateRunning: 3})
	// Nothing scheduled is left in r.
	if res := e.bulk(t, store.BulkParams{Action: store.BulkRunNow, Filter: store.TaskFilter{Queue: "r"}}); res != (store.BulkResult{}) {
		t.Fatalf("second run now = %+v", res)
	}
}

func testBulkBatches(t *testing.T, e *env) {
	var tasks []seedTask
	for range 7 {
		tasks = append(tasks, seedTask{queue: "b", kind: "k", state: store.StateFailed})
	}
	ids := seed(t, e, tasks...)
	slices.Sort(ids)
	// A dry run pages the same batches as the action.
	for _, dry := range []bool{true, false} {
		var (
			after           string
			matched, passes int
		)
		for {
			res := e.bulk(t, store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{Queue: "b"}, DryRun: dry, After: after, Limit: 3})
			passes++
			matched += res.Matched
			if dry && res.Changed != 0 {
				t.Fatalf("dry run changed %d", res.Changed)
			}
			if !dry && res.Changed != res.Matched {
				t.Fatalf("batch %+v changed fewer than it matched", res)
			}
			if res.Next == "" {
				break
			}
			if want := ids[matched-1]; res.Next != want {
				t.Fatalf("next = %s, want the batch's last id %s", res.Next, want)
			}
			after = res.Next
		}
		if matched != 7 || passes != 3 {
			t.Fatalf("dry run %v: %d matched in %d batches, want 7 in 3", dry, matched, passes)
		}
	}
	assertCounts(t, e, "b", map[store.State]int64{store.StatePending: 7})
	// An exactly full last batch is followed by an empty one.
	res := e.bulk(t, store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Queue: "b"}, Limit: 7})
	if res.Matched != 7 || res.Next != ids[6] {
		t.Fatalf("full batch = %+v", res)
	}
	if res := e.bulk(t, store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Queue: "b"}, Limit: 7, After: res.Next}); res != (store.BulkResult{}) {
		t.Fatalf("batch after the last = %+v", res)
	}
}

func testBulkIDsAndTime(t *testing.T, e *env) {
	t0 := e.clock.Freeze()
	first := seed(t, e, seedTask{queue: "i", kind: "k", state: store.StateFailed}, seedTask{queue: "i", kind: "k", state: store.StateCompleted})
	e.clock.Advance(time.Minute)
	t1 := e.now()
	second := seed(t, e, seedTask{queue: "i", kind: "k", state: store.StateFailed}, seedTask{queue: "i", kind: "k", state: store.StateFailed})

	// By ids: a completed task and an unknown id are not matched.
	res := e.bulk(t, store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{IDs: []string{first[1], second[0], uuid.NewString()}}})
	if res != (store.BulkResult{Matched: 1, Changed: 1}) {
		t.Fatalf("retry by ids = %+v, want the one failed task", res)
	}
	if got := e.states(t, second...); !reflect.DeepEqual(got, []store.State{store.StatePending, store.StateFailed}) {
		t.Fatalf("states after retry by ids = %v", got)
	}
	// By creation time: [t0, t1) holds the first two only.
	res = e.bulk(t, store.BulkParams{Action: store.BulkDelete, Filter: store.TaskFilter{CreatedSince: t0, CreatedUntil: t1}})
	if res != (store.BulkResult{Matched: 2, Changed: 2}) {
		t.Fatalf("delete created before t1 = %+v, want the first two", res)
	}
	res = e.bulk(t, store.BulkParams{Action: store.BulkDelete, Filter: store.TaskFilter{CreatedSince: t1}})
	if res != (store.BulkResult{Matched: 1, Changed: 1}) {
		t.Fatalf("delete created since t1 = %+v, want the failed one", res)
	}
	assertCounts(t, e, "i", map[store.State]int64{store.StatePending: 1})
}

func testBulkRefused(t *testing.T, e *env) {
	ids := seed(t, e, seedTask{queue: "x", kind: "k", state: store.StateFailed}, seedTask{queue: "x", kind: "k", state: store.StatePending})
	want := map[store.State]int64{store.StateFailed: 1, store.StatePending: 1}
	now := e.now()
	for _, tc := range []struct {
		p     store.BulkParams
		field string
	}{
		{store.BulkParams{Action: "purge"}, "action"},
		{store.BulkParams{}, "action"},
		{store.BulkParams{Action: store.BulkDelete, Filter: store.TaskFilter{States: []store.State{store.StatePending}}}, "states"},
		{store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{States: []store.State{store.StateCompleted}}}, "states"},
		{store.BulkParams{Action: store.BulkRetry, Filter: store.TaskFilter{States: []store.State{"done"}}}, "states"},
		{store.BulkParams{Action: store.BulkRunNow, Filter: store.TaskFilter{States: []store.State{store.StateRunning}}}, "states"},
		{store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Queue: "bad/queue"}}, "queue"},
		{store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{Kind: "9k"}}, "kind"},
		{store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{IDs: []string{ids[1], "nope"}}}, "ids[1]"},
		{store.BulkParams{Action: store.BulkCancel, Filter: store.TaskFilter{CreatedSince: now, CreatedUntil: now}}, "created_until"},
		{store.BulkParams{Action: store.BulkCancel, After: "nope"}, "after"},
		{store.BulkParams{Action: store.BulkCancel, Limit: store.MaxBulkBatch + 1}, "limit"},
		{store.BulkParams{Action: store.BulkCancel, Limit: -1}, "limit"},
	} {
		for _, dry := range []bool{false, true} {
			tc.p.DryRun = dry
			res, err := e.st.Bulk(e.ctx, tc.p)
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || !errors.Is(err, store.ErrInvalid) || res != (store.BulkResult{}) {
				t.Fatalf("bulk %+v: %+v, %v; want a ValidationError on %s", tc.p, res, err, tc.field)
			}
		}
	}
	assertCounts(t, e, "x", want)
	if got := e.states(t, ids...); !reflect.DeepEqual(got, []store.State{store.StateFailed, store.StatePending}) {
		t.Fatalf("states after refused calls = %v", got)
	}
}
