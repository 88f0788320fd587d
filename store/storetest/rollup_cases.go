package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Cases of store.Rollups: per-minute rows summed as they are added, the
// cursor's compare-and-set, reads from a minute on, and the purge.

var rollupCases = []testCase{
	{"rollups are summed per minute, queue and kind, behind the cursor", testRollups},
}

func testRollups(t *testing.T, e *env) {
	other := e.open(t)
	cur, err := e.st.RollupCursor(e.ctx)
	if err != nil || cur != 0 {
		t.Fatalf("cursor of a new database = %d, %v; want 0", cur, err)
	}
	m0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m1 := m0.Add(time.Minute)
	var wait, run store.Histogram
	wait.Observe(3 * time.Millisecond)
	run.Observe(2 * time.Second)
	first := []store.Rollup{
		{Minute: m0, Queue: "default", Kind: "mail", Enqueued: 3, Completed: 2, Wait: wait, Run: run},
		{Minute: m0, Queue: "default", Kind: "mail", Failed: 1},
		{Minute: m1, Queue: "billing", Kind: "charge", Retried: 4, Cancelled: 1},
	}
	if ok, err := e.st.AddRollups(e.ctx, 0, 10, first); err != nil || !ok {
		t.Fatalf("add from 0 = %v, %v; want it added", ok, err)
	}
	// A writer still at the old cursor (a previous leader) writes nothing.
	if ok, err := other.AddRollups(e.ctx, 0, 12, []store.Rollup{{Minute: m0, Queue: "default", Kind: "mail", Enqueued: 100}}); err != nil || ok {
		t.Fatalf("add from a stale cursor = %v, %v; want refused", ok, err)
	}
	if ok, err := other.AddRollups(e.ctx, 10, 20, []store.Rollup{{Minute: m0, Queue: "default", Kind: "mail", Enqueued: 1, Wait: wait}}); err != nil || !ok {
		t.Fatalf("add from 10 = %v, %v; want it added", ok, err)
	}
	if cur, err := e.st.RollupCursor(e.ctx); err != nil || cur != 20 {
		t.Fatalf("cursor = %d, %v; want 20", cur, err)
	}
	got, err := e.st.ReadRollups(e.ctx, m0)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var wait2 store.Histogram
	wait2.Add(wait)
	wait2.Add(wait)
	want := []store.Rollup{
		{Minute: m0, Queue: "default", Kind: "mail", Enqueued: 4, Completed: 2, Failed: 1, Wait: wait2, Run: run},
		{Minute: m1, Queue: "billing", Kind: "charge", Retried: 4, Cancelled: 1, Wait: store.Histogram{}, Run: store.Histogram{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rollups = %+v\nwant %+v", got, want)
	}
	if got, _ := e.st.ReadRollups(e.ctx, m1); len(got) != 1 || got[0].Kind != "charge" {
		t.Fatalf("rollups from the second minute = %+v, want the charge row", got)
	}
	if n, err := e.st.PurgeRollups(e.ctx, m1); err != nil || n != 1 {
		t.Fatalf("purge before the second minute = %d, %v; want 1", n, err)
	}
	if got, _ := e.st.ReadRollups(e.ctx, m0); len(got) != 1 || !got[0].Minute.Equal(m1) {
		t.Fatalf("rollups after the purge = %+v, want the second minute's", got)
	}
}
