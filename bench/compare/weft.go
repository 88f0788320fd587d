package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// noopArgs are the burn-down's and the insert's tasks, for every system
// that takes typed JSON arguments.
type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

// stampArgs are the latency scenario's tasks.
type stampArgs struct {
	// T0 is when the task was enqueued, in Unix nanoseconds.
	T0 int64 `json:"t0"`
}

func (stampArgs) Kind() string { return "stamp" }

// weftSystem is Weft on one of its backends, with its defaults: SQLite at
// synchronous=FULL, PostgreSQL with LISTEN/NOTIFY.
type weftSystem struct{ be string }

func (s weftSystem) name() string              { return "weft" }
func (s weftSystem) backend() string           { return s.be }
func (s weftSystem) maxWorkers() (int, string) { return 0, "" }

// openWeftStore opens Weft's store on the target, migrating it.
func openWeftStore(ctx context.Context, db *target) (store.Store, error) {
	if db.backend == backendSQLite {
		return sqlite.Open(ctx, db.path, &sqlite.Options{Logger: discard})
	}
	return postgres.Open(ctx, db.poolDSN, &postgres.Options{Logger: discard})
}

// weftInsertNoops enqueues n noop tasks in batches with EnqueueMany.
func weftInsertNoops(ctx context.Context, c *weft.Client, n int) error {
	for done := 0; done < n; done += insertBatch {
		params := make([]weft.EnqueueParams, min(insertBatch, n-done))
		for i := range params {
			params[i] = weft.EnqueueParams{Args: noopArgs{N: done + i}}
		}
		if _, err := c.EnqueueMany(ctx, params); err != nil {
			return err
		}
	}
	return nil
}

func (s weftSystem) burndown(ctx context.Context, db *target, n, workers int) (measure, error) {
	st, err := openWeftStore(ctx, db)
	if err != nil {
		return measure{}, err
	}
	defer st.Close()
	cd := newCountdown(n)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[noopArgs]) error {
		cd.hit()
		return nil
	})
	c, err := weft.NewClient(st, &weft.Config{
		Logger:  discard,
		Queues:  map[string]weft.QueueConfig{"default": {MaxWorkers: workers}},
		Workers: ws,
	})
	if err != nil {
		return measure{}, err
	}
	if err := weftInsertNoops(ctx, c, n); err != nil {
		return measure{}, err
	}
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return measure{}, err
	}
	if err := cd.wait(ctx); err != nil {
		_ = c.Stop(context.Background())
		return measure{}, err
	}
	// Stop returns once every outcome is recorded: that is the last
	// completion.
	if err := c.Stop(ctx); err != nil {
		return measure{}, err
	}
	return measure{elapsed: time.Since(start)}, nil
}

func (s weftSystem) insert(ctx context.Context, db *target, n int) (measure, error) {
	st, err := openWeftStore(ctx, db)
	if err != nil {
		return measure{}, err
	}
	defer st.Close()
	c, err := weft.NewClient(st, &weft.Config{Logger: discard})
	if err != nil {
		return measure{}, err
	}
	start := time.Now()
	if err := weftInsertNoops(ctx, c, n); err != nil {
		return measure{}, err
	}
	return measure{elapsed: time.Since(start)}, nil
}

func (s weftSystem) latency(ctx context.Context, db *target, p latencyParams) (measure, error) {
	st, err := openWeftStore(ctx, db)
	if err != nil {
		return measure{}, err
	}
	defer st.Close()
	rec := newStamps(p.samples)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[stampArgs]) error {
		rec.record(t.Args.T0)
		return nil
	})
	// Weft finds new work through its store's wakeups (in-process commits
	// on SQLite, LISTEN/NOTIFY on PostgreSQL); its poll is a safety net
	// and stays at its default, so -poll does not apply.
	c, err := weft.NewClient(st, &weft.Config{
		Logger:  discard,
		Queues:  map[string]weft.QueueConfig{"default": {MaxWorkers: p.workers}},
		Workers: ws,
	})
	if err != nil {
		return measure{}, err
	}
	if err := c.Start(ctx); err != nil {
		return measure{}, err
	}
	return runLatency(ctx, p, rec, func(t0 int64) error {
		_, err := c.Enqueue(ctx, stampArgs{T0: t0}, nil)
		return err
	}, func() error { return c.Stop(context.Background()) })
}

// weftSeed prepares a raw-SQL run: it opens Weft's store on the target
// (which migrates it), enqueues n noop tasks with Weft's Enqueue, and
// closes the store, leaving exactly the rows Weft's engine would claim.
func weftSeed(ctx context.Context, db *target, n int) error {
	st, err := openWeftStore(ctx, db)
	if err != nil {
		return err
	}
	c, err := weft.NewClient(st, &weft.Config{Logger: discard})
	if err != nil {
		st.Close()
		return err
	}
	if err := weftInsertNoops(ctx, c, n); err != nil {
		st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// decodeStamp reads a stampArgs JSON body: what goqite's handler must do
// itself, since goqite hands over bytes where the others decode arguments.
func decodeStamp(b []byte) (int64, error) {
	var a stampArgs
	err := json.Unmarshal(b, &a)
	return a.T0, err
}
