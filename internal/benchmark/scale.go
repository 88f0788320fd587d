package benchmark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/weftworks/weft/store"
)

// Shape of scale's table.
const (
	// scaleBacklogPercent of the rows are left pending, so that claims
	// have work; the rest are completed.
	scaleBacklogPercent = 10
	// backlogPriority keeps the backlog out of the seeding claims, which
	// take the default priority first.
	backlogPriority = -1
	// statsCalls is how many times scale reads queue statistics.
	statsCalls = 100
	// scaleOwner is the lease owner of scale's claims.
	scaleOwner = "weft-bench"
)

// noopJSON is the args of scale's tasks, as noopArgs encodes them.
var noopJSON = json.RawMessage(`{"n":0}`)

// scale builds a table of Tasks rows — most completed, a pending backlog —
// then times single-task claims (each followed by its completion) and
// queue statistics.
func (r *runner) scale(ctx context.Context) (Result, error) {
	n := r.o.Tasks
	pending := max(1, n*scaleBacklogPercent/100)
	completed := n - pending
	res := Result{Tasks: n, Pending: pending, Seed: "api"}

	seedStart := time.Now()
	if r.o.SeedSQL {
		res.Seed = "sql"
		r.progress.report(0, completed, "seed (sql)")
		if err := SeedCompleted(ctx, r.db, completed, time.Now()); err != nil {
			return Result{}, err
		}
		if err := r.seedBacklog(ctx, pending); err != nil {
			return Result{}, err
		}
	} else if err := r.seedAPI(ctx, n, pending); err != nil {
		return Result{}, err
	}
	r.progress.report(n, n, "settle")
	if err := r.db.Settle(ctx); err != nil {
		return Result{}, err
	}
	res.SeedSeconds = time.Since(seedStart).Seconds()

	claims := min(r.o.Claims, pending)
	claimed := make([]time.Duration, 0, claims)
	finished := make([]time.Duration, 0, claims)
	st := r.db.Store
	start := time.Now()
	for i := range claims {
		t0 := time.Now()
		tasks, err := st.Claim(ctx, store.ClaimRequest{Owner: scaleOwner, LeaseTTL: time.Minute,
			Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: 1}}})
		if err != nil {
			return Result{}, fmt.Errorf("claim %d: %w", i, err)
		}
		t1 := time.Now()
		if len(tasks) != 1 {
			return Result{}, fmt.Errorf("claim %d: got %d tasks, want 1", i, len(tasks))
		}
		if err := finish(ctx, st, tasks); err != nil {
			return Result{}, err
		}
		claimed = append(claimed, t1.Sub(t0))
		finished = append(finished, time.Since(t1))
		if (i+1)%100 == 0 {
			r.progress.report(i+1, claims, "claims")
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.setPercentiles("one claim of a single task", Summarize(claimed))
	fin := Summarize(finished)
	res.FinishP50Ms, res.FinishP99Ms = msPtr(fin.P50), msPtr(fin.P99)
	if res.Seconds > 0 {
		res.TasksPerSec = float64(claims) / res.Seconds
	}

	reads := make([]time.Duration, 0, statsCalls)
	var stats []store.QueueStats
	for range statsCalls {
		t0 := time.Now()
		s, err := st.Stats(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("queue statistics: %w", err)
		}
		reads = append(reads, time.Since(t0))
		stats = s
	}
	sum := Summarize(reads)
	res.StatsMs, res.StatsMaxMs = msPtr(sum.P50), msPtr(sum.Max)
	for _, qs := range stats {
		for _, c := range qs.Counts {
			res.Rows += c
		}
	}
	return res, nil
}

// seedAPI writes n rows through the store: batches of BatchSize are
// enqueued, and all but the backlog's share of each batch are claimed and
// completed, so that the pending rows are spread through the table and the
// events are those of real runs. Enqueueing and completing overlap, as
// they would with producers and workers.
func (r *runner) seedAPI(ctx context.Context, n, pending int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// toComplete carries, per batch enqueued, how many of its tasks are to
	// be completed; enqueued then carries the enqueuer's error, if any.
	toComplete := make(chan int, 4)
	enqueued := make(chan error, 1)
	go func() {
		defer close(toComplete)
		enqueued <- r.enqueueSeed(ctx, n, pending, toComplete)
	}()

	total, done := n-pending, 0
	var err error
	for k := range toComplete {
		if err != nil {
			continue // let the enqueuer see the cancellation and end
		}
		if err = r.completeSeed(ctx, k); err != nil {
			cancel(err)
			continue
		}
		done += k
		r.progress.report(done, total, "seed")
	}
	if eerr := <-enqueued; err == nil {
		err = eerr
	}
	return err
}

// enqueueSeed enqueues scale's n rows in batches, pending of them as
// backlog, and sends how many of each batch are to be completed.
func (r *runner) enqueueSeed(ctx context.Context, n, pending int, toComplete chan<- int) error {
	batch := make([]store.NewTask, 0, BatchSize)
	now := time.Now()
	for i := 0; i < n; {
		batch = batch[:0]
		complete := 0
		for ; len(batch) < BatchSize && i < n; i++ {
			t := store.NewTask{Kind: noopArgs{}.Kind(), Args: noopJSON}
			// pending of the n tasks, evenly spread, are backlog; a random
			// past run_at spreads the timed claims over the table.
			if (i+1)*pending/n > i*pending/n {
				t.Priority = backlogPriority
				t.RunAt = now.Add(-time.Duration(rand.Int64N(int64(time.Hour))))
			} else {
				complete++
			}
			batch = append(batch, t)
		}
		if _, err := r.db.Store.Enqueue(ctx, batch); err != nil {
			return fmt.Errorf("seed: enqueue: %w", err)
		}
		select {
		case toComplete <- complete:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// completeSeed claims k tasks of the default priority and completes them.
func (r *runner) completeSeed(ctx context.Context, k int) error {
	for k > 0 {
		tasks, err := r.db.Store.Claim(ctx, store.ClaimRequest{Owner: scaleOwner, LeaseTTL: time.Hour,
			Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: k}}})
		if err != nil {
			return fmt.Errorf("seed: claim: %w", err)
		}
		if len(tasks) == 0 {
			return errors.New("seed: the claim found no task to complete")
		}
		if err := finish(ctx, r.db.Store, tasks); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		k -= len(tasks)
	}
	return nil
}

// seedBacklog enqueues the pending rows of a table whose completed rows
// were written with SQL.
func (r *runner) seedBacklog(ctx context.Context, pending int) error {
	now := time.Now()
	batch := make([]store.NewTask, 0, BatchSize)
	for done := 0; done < pending; {
		batch = batch[:0]
		for range min(BatchSize, pending-done) {
			batch = append(batch, store.NewTask{Kind: noopArgs{}.Kind(), Args: noopJSON, Priority: backlogPriority,
				RunAt: now.Add(-time.Duration(rand.Int64N(int64(time.Hour))))})
		}
		if _, err := r.db.Store.Enqueue(ctx, batch); err != nil {
			return fmt.Errorf("seed: enqueue the backlog: %w", err)
		}
		done += len(batch)
		r.progress.report(done, pending, "seed backlog")
	}
	return nil
}

// finish completes claimed tasks.
func finish(ctx context.Context, st store.Store, tasks []*store.Task) error {
	outcomes := make([]store.Outcome, len(tasks))
	for i, t := range tasks {
		outcomes[i] = store.Outcome{TaskID: t.ID, Epoch: t.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}
	}
	res, err := st.Finish(ctx, outcomes)
	if err != nil {
		return fmt.Errorf("complete %d tasks: %w", len(tasks), err)
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("complete %d tasks: %w", len(tasks), r.Err)
		}
	}
	return nil
}
