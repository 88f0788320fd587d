package rollup_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/rollup"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// TestCounter runs tasks through a real SQLite store — one completes, one
// fails, one is retried — and checks the rollups that one tick counts, and
// that a second tick counts nothing twice.
func TestCounter(t *testing.T) {
	ctx := context.Background()
	_, st := testenv.SQLite(t)
	res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "mail"}, {Kind: "mail"}, {Kind: "mail", MaxAttempts: 3}})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "n1", Queues: []store.QueueClaim{{Queue: "default", Limit: 3}}, LeaseTTL: time.Minute})
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claimed %d, %v", len(claimed), err)
	}
	by := map[string]*store.Task{}
	for _, c := range claimed {
		by[c.ID] = c
	}
	now := time.Now()
	boom := &store.AttemptError{Attempt: 1, At: now, Error: "boom"}
	retryAt := now.Add(time.Hour)
	data, _ := json.Marshal(map[string]any{"run_at": retryAt})
	out, err := st.Finish(ctx, []store.Outcome{
		{TaskID: res[0].ID, Epoch: by[res[0].ID].LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted},
		{TaskID: res[1].ID, Epoch: by[res[1].ID].LeaseEpoch, State: store.StateFailed, Error: boom, Event: store.EventFailed},
		{TaskID: res[2].ID, Epoch: by[res[2].ID].LeaseEpoch, State: store.StatePending, RunAt: retryAt, Error: boom, Event: store.EventRetryScheduled, EventData: data},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	c := rollup.New(st, time.Now)
	if err := c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	sum := total(t, st)
	if sum.Enqueued != 3 || sum.Completed != 1 || sum.Failed != 1 || sum.Retried != 1 || sum.Cancelled != 0 {
		t.Fatalf("rollup = %+v, want 3 enqueued, 1 completed, 1 failed, 1 retried", sum)
	}
	if sum.Wait.Count() != 3 || sum.Run.Count() != 3 {
		t.Fatalf("wait counted %d, run %d; want 3 each", sum.Wait.Count(), sum.Run.Count())
	}
	if err := c.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if again := total(t, st); again.Enqueued != 3 || again.Run.Count() != 3 {
		t.Fatalf("after a second tick: %+v, want the same counts", again)
	}
	// A counter that starts later (a new leader) goes on from the stored
	// cursor: nothing is counted twice.
	if err := rollup.New(st, time.Now).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if again := total(t, st); again.Enqueued != 3 {
		t.Fatalf("after a new counter's tick: %+v, want 3 enqueued", again)
	}
}

// total sums the stored rollups of queue default, kind mail.
func total(t *testing.T, st store.Store) store.Rollup {
	t.Helper()
	rows, err := st.ReadRollups(context.Background(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var sum store.Rollup
	for _, r := range rows {
		if r.Queue != "default" || r.Kind != "mail" {
			t.Fatalf("unexpected row %+v", r)
		}
		sum.Add(r)
	}
	return sum
}
