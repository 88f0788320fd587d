package store

import (
	"slices"
	"testing"
	"time"
)

func TestBulkActionStates(t *testing.T) {
	for a, want := range map[BulkAction][]State{
		BulkRetry:  {StateFailed, StateCancelled, StateSkipped},
		BulkCancel: {StatePending, StateBlocked, StateRunning, StateWaiting},
		BulkDelete: {StateCompleted, StateFailed, StateCancelled, StateSkipped},
		BulkRunNow: {StatePending},
		"purge":    nil,
	} {
		if got := a.States(); !slices.Equal(got, want) {
			t.Errorf("%s applies to %v, want %v", a, got, want)
		}
	}
}

func TestBulkQueryDefaults(t *testing.T) {
	now := time.Unix(100, 0)
	q, err := BulkParams{Action: BulkRunNow}.Query(now)
	if err != nil || q.Limit != MaxBulkBatch || !slices.Equal(q.Filter.States, []State{StatePending}) || !q.ScheduledAfter.Equal(now) {
		t.Fatalf("run now query = %+v, %v", q, err)
	}
	q, err = BulkParams{Action: BulkDelete, Filter: TaskFilter{States: []State{StateFailed}}, Limit: 10}.Query(now)
	if err != nil || q.Limit != 10 || !slices.Equal(q.Filter.States, []State{StateFailed}) || !q.ScheduledAfter.IsZero() {
		t.Fatalf("delete query = %+v, %v", q, err)
	}
	if res := q.Result(10, 4, "last"); res != (BulkResult{Matched: 10, Changed: 4, Next: "last"}) {
		t.Fatalf("full batch result = %+v", res)
	}
	if res := q.Result(9, 9, "last"); res.Next != "" {
		t.Fatalf("short batch result = %+v, want no next", res)
	}
}

func TestPlanBulk(t *testing.T) {
	now := time.Unix(100, 0)
	tasks := func(states ...State) []*Task {
		out := make([]*Task, len(states))
		for i, s := range states {
			out[i] = &Task{ID: string(rune('a' + i)), Queue: "q", State: s, Attempt: 1, MaxAttempts: 1, RunAt: now.Add(time.Hour)}
		}
		return out
	}
	// Cancel: each task as PlanCancel decides; a finished one is left.
	ts := tasks(StatePending, StateRunning, StateCompleted)
	p := PlanBulk(BulkCancel, ts, nil, now)
	if !slices.Equal(p.Cancel, []string{"a"}) || !slices.Equal(p.Request, []string{"b"}) || p.Changed() != 2 || !p.Change.Wake {
		t.Fatalf("cancel plan = %+v", p)
	}
	if len(p.Change.Events) != 2 || p.Change.Counts[QueueState{"q", StateCancelled}] != 1 || p.Change.Counts[QueueState{"q", StatePending}] != -1 {
		t.Fatalf("cancel change = %+v", p.Change)
	}
	// Retry: one task per unique key, not one whose key is held.
	ts = tasks(StateFailed, StateCancelled, StateFailed, StatePending)
	ts[0].UniqueKey, ts[1].UniqueKey, ts[2].UniqueKey = "k", "k", "held"
	p = PlanBulk(BulkRetry, ts, map[string]string{"held": "z"}, now)
	if len(p.Retry) != 1 || p.Retry[0].ID != "a" || p.Retry[0].State != StatePending || p.Retry[0].MaxAttempts != 2 || !p.Change.Wake {
		t.Fatalf("retry plan = %+v", p)
	}
	// Delete: finished tasks only, their counts moved out.
	p = PlanBulk(BulkDelete, tasks(StateCompleted, StateRunning), nil, now)
	if !slices.Equal(p.Delete, []string{"a"}) || p.Change.Counts[QueueState{"q", StateCompleted}] != -1 || len(p.Change.Events) != 0 {
		t.Fatalf("delete plan = %+v", p)
	}
	// Run now: pending and scheduled for later only.
	ts = tasks(StatePending, StatePending, StateRunning)
	ts[1].RunAt = now
	p = PlanBulk(BulkRunNow, ts, nil, now)
	if !slices.Equal(p.RunNow, []string{"a"}) || !ts[0].RunAt.Equal(now) || !p.Change.Wake || len(p.Change.Counts) != 0 {
		t.Fatalf("run now plan = %+v", p)
	}
}
