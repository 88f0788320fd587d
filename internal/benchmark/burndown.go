package benchmark

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft"
)

// noopArgs is the task of burndown, insert and memory: its handler does
// nothing, so the figures are the engine's own cost.
type noopArgs struct {
	N int `json:"n"`
}

// Kind implements weft.TaskArgs.
func (noopArgs) Kind() string { return "bench.noop" }

// EnqueueNoops enqueues n no-op tasks through c in batches of BatchSize and
// returns how long each batch took. progress, when not nil, is called
// after each batch with the number enqueued so far.
func EnqueueNoops(ctx context.Context, c *weft.Client, n int, progress func(done int)) ([]time.Duration, error) {
	batches := make([]time.Duration, 0, (n+BatchSize-1)/BatchSize)
	params := make([]weft.EnqueueParams, 0, BatchSize)
	for done := 0; done < n; {
		params = params[:0]
		for i := range min(BatchSize, n-done) {
			params = append(params, weft.EnqueueParams{Args: noopArgs{N: done + i}})
		}
		start := time.Now()
		if _, err := c.EnqueueMany(ctx, params); err != nil {
			return nil, fmt.Errorf("enqueue tasks %d to %d: %w", done, done+len(params), err)
		}
		batches = append(batches, time.Since(start))
		done += len(params)
		if progress != nil {
			progress(done)
		}
	}
	return batches, nil
}

// insert times batch enqueues.
func (r *runner) insert(ctx context.Context) (Result, error) {
	n := r.o.Tasks
	c, err := weft.NewClient(r.db.Store, &weft.Config{Logger: r.log})
	if err != nil {
		return Result{}, err
	}
	batches, err := EnqueueNoops(ctx, c, n, func(done int) { r.progress.report(done, n, "insert") })
	if err != nil {
		return Result{}, err
	}
	var total time.Duration
	for _, d := range batches {
		total += d
	}
	res := Result{Tasks: n, Seconds: total.Seconds()}
	res.setPercentiles("one batch of 1,000 enqueued", Summarize(batches))
	return res, nil
}

// burndown enqueues the tasks, then times a started client draining them.
// For memory it resets the peak RSS after the inserts, so that the peak is
// the drain's.
func (r *runner) burndown(ctx context.Context, memory bool) (Result, error) {
	n := r.o.Tasks
	var done atomic.Int64
	all := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[noopArgs]) error {
		if done.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	c, err := weft.NewClient(r.db.Store, r.config(ws, 0))
	if err != nil {
		return Result{}, err
	}
	if _, err := EnqueueNoops(ctx, c, n, func(d int) { r.progress.report(d, n, "insert") }); err != nil {
		return Result{}, err
	}
	if memory {
		resetPeakRSS()
	}
	elapsed, err := r.run(ctx, c, all, true, n, "drain", func() int { return int(done.Load()) })
	if err != nil {
		return Result{}, err
	}
	return Result{Tasks: n, Workers: r.o.Workers, Seconds: elapsed.Seconds()}, nil
}

// run starts c and times it until all is closed — until Stop returned
// after that, with untilStopped, for Stop returns once every outcome is
// recorded — reporting done() out of n in phase meanwhile, and stops it.
func (r *runner) run(ctx context.Context, c *weft.Client, all <-chan struct{}, untilStopped bool, n int, phase string, done func() int) (time.Duration, error) {
	stopWatch := r.progress.watch(n, phase, done)
	defer stopWatch()
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return 0, err
	}
	select {
	case <-all:
	case <-ctx.Done():
		return 0, errors.Join(context.Cause(ctx), stopClient(ctx, c))
	}
	elapsed := time.Since(start)
	err := stopClient(ctx, c)
	if untilStopped {
		elapsed = time.Since(start)
	}
	return elapsed, err
}
