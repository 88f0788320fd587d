package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Cases of store.Reader: statistics, event cursors, listings.

var readCases = []testCase{
	{"queue statistics agree with the tasks after every kind of change", testStats},
	{"events resume after a cursor", testEventsCursor},
	{"events of every task: order, filters and cursor", testEventsAfter},
	{"list filters and pages", testList},
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
	if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{{Kind: "k", Queue: "gamma"}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{{Kind: "k", Queue: "gamma"}}, false); err != nil {
		t.Fatal(err)
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
	// beta[4] is left running until its lease runs out, and rescued.
	e.clock.Advance(2 * time.Minute)
	if n := e.rescue(t, store.RescueParams{}); n != 1 {
		t.Fatalf("rescued %d, want beta's last running task", n)
	}
	if _, err := e.st.Purge(e.ctx, store.PurgeParams{Before: map[store.State]time.Time{store.StateCompleted: e.now().Add(time.Hour)}, Limit: 1}); err != nil {
		t.Fatal(err)
	}

	want := map[string]map[store.State]int64{}
	oldest := map[string]time.Time{}
	all, err := e.st.List(e.ctx, store.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	now := e.now()
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

func testEventsAfter(t *testing.T, e *env) {
	start, err := e.st.EventsAfter(e.ctx, store.EventFilter{})
	if err != nil || len(start.Events) != 0 || start.Next != 0 {
		t.Fatalf("events of an empty log = %+v, %v", start, err)
	}
	a := e.enqueue(t, store.NewTask{Kind: "x", Queue: "qa"})[0].ID
	b := e.enqueue(t, store.NewTask{Kind: "y", Queue: "qb"})[0].ID
	c := e.claim(t, "n", time.Minute, q("qa", 1))[0]
	if err := e.st.Progress(e.ctx, a, c.LeaseEpoch, json.RawMessage(`{"done":1}`)); err != nil {
		t.Fatal(err)
	}
	finish(t, e, store.Outcome{TaskID: a, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted})
	if _, err := e.st.Cancel(e.ctx, b); err != nil {
		t.Fatal(err)
	}
	type ev struct {
		task, queue, kind string
		typ               store.EventType
	}
	want := []ev{
		{a, "qa", "x", store.EventCreated}, {b, "qb", "y", store.EventCreated},
		{a, "qa", "x", store.EventStarted}, {a, "qa", "x", store.EventProgress},
		{a, "qa", "x", store.EventCompleted}, {b, "qb", "y", store.EventCancelled},
	}
	// read follows the log from f.After until its cursor reaches upTo.
	// A backend may hold events back while transactions are open
	// (PostgreSQL: anywhere on the server), so it reads until then.
	var upTo int64
	read := func(f store.EventFilter) []store.Event {
		t.Helper()
		var out []store.Event
		deadline := time.Now().Add(30 * time.Second)
		for f.After < upTo {
			if time.Now().After(deadline) {
				t.Fatalf("the cursor stopped at %d, before %d", f.After, upTo)
			}
			page, err := e.st.EventsAfter(e.ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page.Events...)
			if page.Next < f.After {
				t.Fatalf("the cursor went back from %d to %d", f.After, page.Next)
			}
			f.After = page.Next
		}
		return out
	}
	// readAll reads from the start until it has n events.
	readAll := func(n int) []store.Event {
		t.Helper()
		var out []store.Event
		f := store.EventFilter{}
		deadline := time.Now().Add(30 * time.Second)
		for len(out) < n && time.Now().Before(deadline) {
			page, err := e.st.EventsAfter(e.ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page.Events...)
			f.After = page.Next
		}
		return out
	}
	check := func(name string, got []store.Event, want []ev) {
		t.Helper()
		var g []ev
		for i, x := range got {
			g = append(g, ev{x.TaskID, x.Queue, x.Kind, x.Type})
			if i > 0 && x.Seq <= got[i-1].Seq {
				t.Errorf("%s: seq %d after %d", name, x.Seq, got[i-1].Seq)
			}
			if x.At.IsZero() {
				t.Errorf("%s: event %d has no time", name, x.Seq)
			}
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, g, want)
		}
	}
	all := readAll(len(want))
	check("all", all, want)
	if len(all) > 0 {
		upTo = all[len(all)-1].Seq
	}
	if len(all) == len(want) && string(all[3].Data) != `{"done": 1}` && string(all[3].Data) != `{"done":1}` {
		t.Errorf("progress data = %s", all[3].Data)
	}
	check("page by page", read(store.EventFilter{Limit: 2}), want)
	check("queue", read(store.EventFilter{Queue: "qb"}), []ev{want[1], want[5]})
	check("kind", read(store.EventFilter{Kind: "x"}), []ev{want[0], want[2], want[3], want[4]})
	check("types", read(store.EventFilter{Types: []store.EventType{store.EventCompleted, store.EventCancelled}}), []ev{want[4], want[5]})
	check("queue and type", read(store.EventFilter{Queue: "qa", Types: []store.EventType{store.EventCreated}}), []ev{want[0]})
	check("nothing matches", read(store.EventFilter{Kind: "zzz"}), nil)
	if len(all) < 3 {
		return
	}
	check("after a cursor", read(store.EventFilter{After: all[2].Seq}), want[3:])
	// A filter that matches nothing still moves the cursor past what it
	// read, so that the next read does not examine it again.
	last, err := e.st.EventsAfter(e.ctx, store.EventFilter{Kind: "zzz"})
	if err != nil || len(last.Events) != 0 || last.Next == 0 {
		t.Fatalf("a filter that matches nothing: %+v, %v; want the cursor moved on", last, err)
	}
	// Read on from the end: nothing.
	end, err := e.st.EventsAfter(e.ctx, store.EventFilter{After: upTo})
	if err != nil || len(end.Events) != 0 || end.Next != upTo {
		t.Fatalf("events after the end = %+v, %v", end, err)
	}
	// A negative cursor is the end of the log (or, while transactions are
	// open, a settled point before it).
	tail, err := e.st.EventsAfter(e.ctx, store.EventFilter{After: -1})
	if err != nil || len(tail.Events) != 0 || tail.Next > upTo || tail.Next < 0 {
		t.Fatalf("the end of the log = %+v, %v; want Next up to %d", tail, err, upTo)
	}
	d := e.enqueue(t, store.NewTask{Kind: "z", Queue: "qa"})[0].ID
	from := upTo
	upTo = readAll(len(want) + 1)[len(want)].Seq
	check("what comes next", read(store.EventFilter{After: from}), []ev{{d, "qa", "z", store.EventCreated}})
	if tail.Next == from {
		check("what comes after the end", read(store.EventFilter{After: tail.Next}), []ev{{d, "qa", "z", store.EventCreated}})
	}
}
