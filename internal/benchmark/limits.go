package benchmark

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Limit scenarios:
//
//   - limit-keys: N no-op tasks spread over 1,000 keys of a limit with a
//     concurrency cap of 1, drained as burndown drains plain tasks.
//     Compare the two rates: what admission costs when every task draws
//     on a limit.
//   - limit-hotkey: 10,000 tasks of one key capped at 5, enqueued first,
//     then N plain tasks into the same queue; the figure is the rate at
//     which the N plain tasks finish, to compare with burndown's: a key at
//     its cap must not slow the others.

// The limit scenarios' names.
const (
	LimitKeys   Scenario = "limit-keys"
	LimitHotKey Scenario = "limit-hotkey"
)

const (
	limitKeyCount = 1000
	hotKeyTasks   = 10_000
)

// enqueueLimited enqueues n no-op tasks drawing on limit, the i-th under
// key(i), in batches.
func (r *runner) enqueueLimited(ctx context.Context, n int, limit string, key func(i int) string) error {
	batch := make([]store.NewTask, 0, BatchSize)
	for done := 0; done < n; {
		batch = batch[:0]
		for i := range min(BatchSize, n-done) {
			batch = append(batch, store.NewTask{Kind: noopArgs{}.Kind(), Args: json.RawMessage(`{"n":` + strconv.Itoa(-1-done-i) + `}`),
				LimitKeys: map[string]string{limit: key(done + i)}})
		}
		if _, err := r.db.Store.Enqueue(ctx, batch); err != nil {
			return fmt.Errorf("enqueue limited tasks: %w", err)
		}
		done += len(batch)
		r.progress.report(done, n, "insert")
	}
	return nil
}

// limitKeys drains N tasks over limitKeyCount keys capped at 1.
func (r *runner) limitKeys(ctx context.Context) (Result, error) {
	n := r.o.Tasks
	if _, err := r.db.Store.SetLimit(ctx, store.Limit{Name: "bench-keys", Concurrency: 1}); err != nil {
		return Result{}, err
	}
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
	if err := r.enqueueLimited(ctx, n, "bench-keys", func(i int) string { return "k" + strconv.Itoa(i%limitKeyCount) }); err != nil {
		return Result{}, err
	}
	elapsed, err := r.run(ctx, c, all, true, n, "drain", func() int { return int(done.Load()) })
	if err != nil {
		return Result{}, err
	}
	return Result{Tasks: n, Workers: r.o.Workers, Seconds: elapsed.Seconds()}, nil
}

// limitHotKey times N plain tasks draining past a hot key's backlog.
func (r *runner) limitHotKey(ctx context.Context) (Result, error) {
	n := r.o.Tasks
	if _, err := r.db.Store.SetLimit(ctx, store.Limit{Name: "bench-hot", Concurrency: 5}); err != nil {
		return Result{}, err
	}
	var done atomic.Int64
	all := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(_ context.Context, t *weft.Task[noopArgs]) error {
		// The hot key's tasks carry negative numbers: only the others
		// count.
		if t.Args.N >= 0 && done.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	c, err := weft.NewClient(r.db.Store, r.config(ws, 0))
	if err != nil {
		return Result{}, err
	}
	if err := r.enqueueLimited(ctx, hotKeyTasks, "bench-hot", func(int) string { return "hot" }); err != nil {
		return Result{}, err
	}
	if _, err := EnqueueNoops(ctx, c, n, func(d int) { r.progress.report(d, n, "insert") }); err != nil {
		return Result{}, err
	}
	elapsed, err := r.run(ctx, c, all, false, n, "drain", func() int { return int(done.Load()) })
	if err != nil {
		return Result{}, err
	}
	return Result{Tasks: n, Workers: r.o.Workers, Seconds: elapsed.Seconds()}, nil
}
