package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Cases of store.Scheduler: the schedules a backend stores, and the cron
// runner that works them through a weft.Client. Slots come due because the
// case advances its frozen clock — the stores' and the clients' — never
// because time went by.

var scheduleCases = []testCase{
	{"schedules are stored, replaced, paused, advanced from their slot and deleted", testSchedules},
	{"cron: one task per slot across two nodes", testCronOnePerSlot},
	{"cron: schedules are validated, paused, resumed, removed", testScheduleLifecycle},
	{"cron: missed slots are skipped or run once", testCronMissed},
}

func testSchedules(t *testing.T, e *env) {
	created := e.clock.Freeze()
	other := e.open(t)
	next := created.Add(time.Hour)
	in := store.Schedule{
		Name: "nightly", Spec: "0 3 * * *", Kind: "report.build", Queue: "reports", Args: json.RawMessage(`{"full":true}`),
		Priority: 2, MaxAttempts: 4, Metadata: json.RawMessage(`{"team":"ops"}`), Missed: store.MissedRunOnce, NextAt: next,
	}
	if err := e.st.PutSchedule(e.ctx, in); err != nil {
		t.Fatalf("put: %v", err)
	}
	scs := schedules(t, e, other)
	if len(scs) != 1 {
		t.Fatalf("%d schedules stored, want 1", len(scs))
	}
	got := scs[0]
	if got.Name != in.Name || got.Spec != in.Spec || got.Kind != in.Kind || got.Queue != in.Queue || got.Priority != 2 ||
		got.MaxAttempts != 4 || got.Missed != store.MissedRunOnce || got.Paused || !got.NextAt.Equal(next) ||
		!got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(created) {
		t.Fatalf("stored schedule = %+v\nwant the fields put, created and updated at %v", got, created)
	}
	assertJSON(t, "args", got.Args, in.Args)
	assertJSON(t, "metadata", got.Metadata, in.Metadata)

	// Putting it again replaces it; its creation time is kept.
	e.clock.Advance(time.Minute)
	replaced := in
	replaced.Spec, replaced.Missed, replaced.Paused, replaced.Metadata = "@every 1h", store.MissedSkip, true, nil
	if err := other.PutSchedule(e.ctx, replaced); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if err := e.st.PutSchedule(e.ctx, store.Schedule{Name: "adhoc", Spec: "@every 5m", Kind: "k", Queue: "default",
		Args: json.RawMessage(`{}`), MaxAttempts: 1, Missed: store.MissedSkip, NextAt: next}); err != nil {
		t.Fatal(err)
	}
	scs = schedules(t, e, e.st)
	if len(scs) != 2 || scs[0].Name != "adhoc" || scs[1].Name != "nightly" {
		t.Fatalf("schedules = %+v, want adhoc and nightly, by name", scs)
	}
	if got := scs[1]; got.Spec != "@every 1h" || got.Missed != store.MissedSkip || !got.Paused || len(got.Metadata) != 0 ||
		!got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(created.Add(time.Minute)) {
		t.Fatalf("replaced schedule = %+v; want the new fields, created at %v, updated a minute later", got, created)
	}

	// Pausing and resuming; both stores see it.
	for _, paused := range []bool{false, true, false} {
		if err := e.st.PauseSchedule(e.ctx, "nightly", paused); err != nil {
			t.Fatalf("pause %v: %v", paused, err)
		}
		if got := schedule(t, e, other, "nightly"); got.Paused != paused {
			t.Fatalf("after PauseSchedule(%v) the schedule is paused %v", paused, got.Paused)
		}
	}
	if err := e.st.PauseSchedule(e.ctx, "nope", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pause a missing schedule: %v, want ErrNotFound", err)
	}

	// Advancing moves the slot only from where it is, so of two nodes that
	// read the same slot only one moves it.
	later := next.Add(time.Hour)
	if moved, err := e.st.AdvanceSchedule(e.ctx, "nightly", next.Add(-time.Hour), later); err != nil || moved {
		t.Fatalf("advance from a slot it is not at: moved %v, %v; want not moved", moved, err)
	}
	if moved, err := e.st.AdvanceSchedule(e.ctx, "nightly", next, later); err != nil || !moved {
		t.Fatalf("advance from its slot: moved %v, %v", moved, err)
	}
	if moved, err := other.AdvanceSchedule(e.ctx, "nightly", next, later.Add(time.Hour)); err != nil || moved {
		t.Fatalf("a second advance from the old slot: moved %v, %v; want not moved", moved, err)
	}
	if got := schedule(t, e, other, "nightly"); !got.NextAt.Equal(later) {
		t.Fatalf("next slot %v, want %v", got.NextAt, later)
	}
	if moved, err := e.st.AdvanceSchedule(e.ctx, "nope", next, later); err != nil || moved {
		t.Fatalf("advance a missing schedule: moved %v, %v; want not moved", moved, err)
	}

	if err := other.DeleteSchedule(e.ctx, "nightly"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := e.st.DeleteSchedule(e.ctx, "nightly"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	if scs := schedules(t, e, e.st); len(scs) != 1 || scs[0].Name != "adhoc" {
		t.Fatalf("schedules after a delete = %+v, want only adhoc", scs)
	}
}

func schedules(t *testing.T, e *env, st store.Store) []store.Schedule {
	t.Helper()
	scs, err := st.Schedules(e.ctx)
	if err != nil {
		t.Fatalf("schedules: %v", err)
	}
	return scs
}

// schedule reads one schedule by name through st.
func schedule(t *testing.T, e *env, st store.Store, name string) store.Schedule {
	t.Helper()
	for _, sc := range schedules(t, e, st) {
		if sc.Name == name {
			return sc
		}
	}
	t.Fatalf("no schedule %s", name)
	return store.Schedule{}
}

type tickArgs struct{}

func (tickArgs) Kind() string { return "st.tick" }

func noopTickWorkers() *weft.Workers {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[tickArgs]) error { return nil })
	return ws
}

// cronConfig checks schedules often, on the case's clock.
func cronConfig(e *env, node string) weft.Config {
	return weft.Config{CronInterval: 10 * time.Millisecond, NodeID: node, Now: e.clock.Now}
}

// slotKey is the unique key of the task a schedule enqueues for a slot.
func slotKey(name string, slot time.Time) string {
	return "cron:" + name + ":" + strconv.FormatInt(slot.Unix(), 10)
}

// listQueue lists the tasks of one queue.
func listQueue(t *testing.T, e *env, queue string) []*store.Task {
	t.Helper()
	tasks, err := e.st.List(e.ctx, store.ListParams{Queue: queue})
	if err != nil {
		t.Fatalf("list %s: %v", queue, err)
	}
	return tasks
}

// waitNextAt waits until the schedule name has moved on to slot: the tick
// that moved it is done with the slots before.
func waitNextAt(t *testing.T, e *env, name string, slot time.Time) {
	t.Helper()
	eventually(t, time.Minute, fmt.Sprintf("schedule %s did not move on to %v", name, slot), func() bool {
		return schedule(t, e, e.st, name).NextAt.Equal(slot)
	})
}

func testCronOnePerSlot(t *testing.T, e *env) {
	e.clock.Freeze()
	a := startClient(t, e, nil, noopTickWorkers(), cronConfig(e, "cron-a"))
	startClient(t, e, e.open(t), noopTickWorkers(), cronConfig(e, "cron-b"))
	if err := a.Schedule(e.ctx, "heartbeat", "@every 1m", tickArgs{}, &weft.ScheduleOpts{Queue: "beat"}); err != nil {
		t.Fatal(err)
	}
	first := schedule(t, e, e.st, "heartbeat").NextAt
	const slots = 5
	for i := 1; i <= slots; i++ {
		e.clock.Advance(time.Minute)
		waitNextAt(t, e, "heartbeat", first.Add(time.Duration(i)*time.Minute))
	}
	// The clock stands still after the fifth slot: nothing more is due, and
	// the unique key refuses a second task for any slot.
	keys := map[string]int{}
	for _, task := range listQueue(t, e, "beat") {
		keys[task.UniqueKey]++
	}
	want := map[string]int{}
	for i := 0; i < slots; i++ {
		want[slotKey("heartbeat", first.Add(time.Duration(i)*time.Minute))] = 1
	}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("tasks by slot = %v\nwant one for each of the %d slots: %v", keys, slots, want)
	}
}

func testScheduleLifecycle(t *testing.T, e *env) {
	e.clock.Freeze()
	c := startClient(t, e, nil, noopTickWorkers(), cronConfig(e, ""))
	for _, tc := range []struct {
		name, spec, field string
		opts              *weft.ScheduleOpts
	}{
		{"bad name!", "@every 1s", "name", nil},
		{"ok", "every second", "spec", nil},
		{"ok", "61 * * * *", "spec", nil},
		{"ok", "@every 1s", "queue", &weft.ScheduleOpts{Queue: "no spaces"}},
		{"ok", "@every 1s", "missed", &weft.ScheduleOpts{Missed: "sometimes"}},
	} {
		err := c.Schedule(e.ctx, tc.name, tc.spec, tickArgs{}, tc.opts)
		var ve *weft.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Schedule(%q, %q): %v, want a ValidationError on %q", tc.name, tc.spec, err, tc.field)
		}
	}
	if scs := mustSchedules(t, c, e); len(scs) != 0 {
		t.Fatalf("invalid schedules were stored: %+v", scs)
	}
	// Two schedules due at the same slots: a paused one, and a witness that
	// runs after it in every tick (a tick works schedules in name order).
	if err := c.Schedule(e.ctx, "paused", "@every 1m", tickArgs{}, &weft.ScheduleOpts{Paused: true, Queue: "cron"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Schedule(e.ctx, "witness", "@every 1m", tickArgs{}, &weft.ScheduleOpts{Queue: "witness"}); err != nil {
		t.Fatal(err)
	}
	first := schedule(t, e, e.st, "witness").NextAt
	e.clock.Advance(time.Minute)
	waitNextAt(t, e, "witness", first.Add(time.Minute))
	if tasks := listQueue(t, e, "witness"); len(tasks) != 1 {
		t.Fatalf("the witness enqueued %d tasks for its slot, want 1", len(tasks))
	}
	// The tick that worked the witness's slot had passed the paused
	// schedule by then.
	if tasks := listQueue(t, e, "cron"); len(tasks) != 0 {
		t.Fatalf("a paused schedule enqueued %d tasks", len(tasks))
	}
	// Ten more slots pass while it is paused.
	e.clock.Advance(10 * time.Minute)
	waitNextAt(t, e, "witness", first.Add(11*time.Minute))
	if tasks := listQueue(t, e, "cron"); len(tasks) != 0 {
		t.Fatalf("a paused schedule enqueued %d tasks", len(tasks))
	}
	if sc := schedule(t, e, e.st, "paused"); !sc.NextAt.Equal(first) {
		t.Fatalf("a paused schedule moved to %v", sc.NextAt)
	}
	if err := c.ResumeSchedule(e.ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	// Resumed, it skips the slots it missed (the default policy) and
	// enqueues the current one.
	current := first.Add(10 * time.Minute)
	waitNextAt(t, e, "paused", current.Add(time.Minute))
	if tasks := listQueue(t, e, "cron"); len(tasks) != 1 || tasks[0].UniqueKey != slotKey("paused", current) {
		keys := []string{}
		for _, task := range tasks {
			keys = append(keys, task.UniqueKey)
		}
		t.Fatalf("a resumed schedule enqueued %v, want one task, for the current slot (%s)", keys, slotKey("paused", current))
	}
	sc := schedule(t, e, e.st, "paused")
	if sc.Paused || sc.Queue != "cron" || sc.Missed != weft.MissedSkip {
		t.Fatalf("resumed schedule = %+v", sc)
	}
	if err := c.RemoveSchedule(e.ctx, "paused"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveSchedule(e.ctx, "paused"); !errors.Is(err, weft.ErrNotFound) {
		t.Fatalf("removing twice: %v, want ErrNotFound", err)
	}
	if err := c.PauseSchedule(e.ctx, "nope"); !errors.Is(err, weft.ErrNotFound) {
		t.Fatalf("pausing a missing schedule: %v, want ErrNotFound", err)
	}
	if scs := mustSchedules(t, c, e); len(scs) != 1 || scs[0].Name != "witness" {
		t.Fatalf("schedules after removal = %+v, want only the witness", scs)
	}
}

// A schedule whose slots passed while no node ran it: run_once enqueues the
// latest one at once, skip enqueues nothing until the next slot.
func testCronMissed(t *testing.T, e *env) {
	start := e.clock.Freeze()
	cfg := cronConfig(e, "")
	cfg.Workers, cfg.PollInterval = noopTickWorkers(), time.Hour
	c, err := weft.NewClient(e.st, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct {
		name   string
		missed weft.Missed
	}{{"catchup", weft.MissedRunOnce}, {"skipper", weft.MissedSkip}} {
		if err := c.Schedule(e.ctx, sc.name, "@hourly", tickArgs{}, &weft.ScheduleOpts{Missed: sc.missed, Queue: sc.name}); err != nil {
			t.Fatal(err)
		}
	}
	first := schedule(t, e, e.st, "catchup").NextAt
	if !first.After(start) || first.Sub(start) > time.Hour {
		t.Fatalf("an hourly schedule made at %v is first due at %v", start, first)
	}
	// Downtime: three slots pass while no node runs. The latest is half an
	// hour old when a node starts — far older than a current slot.
	e.clock.Advance(first.Add(2*time.Hour + 30*time.Minute).Sub(start))
	latest, next := first.Add(2*time.Hour), first.Add(3*time.Hour)
	if err := c.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(e.ctx)
	// Schedules are worked in name order, catchup before skipper; each is
	// enqueued, if at all, before it is moved on.
	waitNextAt(t, e, "skipper", next)
	if tasks := listQueue(t, e, "catchup"); len(tasks) != 1 || tasks[0].UniqueKey != slotKey("catchup", latest) {
		t.Fatalf("run_once enqueued %+v, want one task for the latest missed slot %v", tasks, latest)
	}
	if tasks := listQueue(t, e, "skipper"); len(tasks) != 0 {
		t.Fatalf("skip enqueued %d tasks for missed slots", len(tasks))
	}
	if sc := schedule(t, e, e.st, "catchup"); !sc.NextAt.Equal(next) {
		t.Fatalf("catchup's next slot is %v, want %v", sc.NextAt, next)
	}
}

func mustSchedules(t *testing.T, c *weft.Client, e *env) []weft.ScheduleRecord {
	t.Helper()
	scs, err := c.Schedules(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return scs
}
