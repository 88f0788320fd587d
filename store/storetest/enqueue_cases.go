package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// Cases of store.Enqueuer: what Enqueue stores, how it validates and
// deduplicates, and enqueueing inside the caller's own transaction.

var enqueueCases = []testCase{
	{"enqueue fills defaults and writes a created event", testEnqueueDefaults},
	{"enqueue keeps every field", testEnqueueFields},
	{"batch with one bad task writes nothing", testBatchAtomic},
	{"validation names the task and field", testValidation},
	{"unique key returns the existing task", testUniqueKey},
	{"unique key is released by failure and cancel", testUniqueKeyReleased},
	{"enqueue in the caller's transaction", testEnqueueTx},
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

func testEnqueueTx(t *testing.T, e *env) {
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
