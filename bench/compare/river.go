package main

import (
	"context"
	"database/sql"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// riverSystem is River with its pgx driver (PostgreSQL) or its SQLite
// driver (database/sql on mattn/go-sqlite3), with River's defaults.
type riverSystem struct{ be string }

func (s riverSystem) name() string              { return "river" }
func (s riverSystem) backend() string           { return s.be }
func (s riverSystem) maxWorkers() (int, string) { return 0, "" }

// riverNoop is the burn-down's worker.
type riverNoop struct {
	river.WorkerDefaults[noopArgs]
	cd *countdown
}

func (w *riverNoop) Work(ctx context.Context, job *river.Job[noopArgs]) error {
	w.cd.hit()
	return nil
}

// riverStamp is the latency scenario's worker.
type riverStamp struct {
	river.WorkerDefaults[stampArgs]
	rec *stamps
}

func (w *riverStamp) Work(ctx context.Context, job *river.Job[stampArgs]) error {
	w.rec.record(job.Args.T0)
	return nil
}

// withDriver opens River's driver on the target, migrates it, and runs a
// scenario with it. The driver's transaction type differs per backend, so
// each scenario is written once, generically, and picked by dispatch.
func (s riverSystem) withDriver(ctx context.Context, db *target, run func(d any) (measure, error)) (measure, error) {
	if s.be == backendSQLite {
		sqlDB, err := openSQLite(db.path)
		if err != nil {
			return measure{}, err
		}
		defer sqlDB.Close()
		d := riversqlite.New(sqlDB)
		if err := riverMigrate(ctx, d); err != nil {
			return measure{}, err
		}
		return run(d)
	}
	pool, err := pgxpool.New(ctx, db.poolDSN)
	if err != nil {
		return measure{}, err
	}
	defer pool.Close()
	d := riverpgxv5.New(pool)
	if err := riverMigrate(ctx, d); err != nil {
		return measure{}, err
	}
	return run(d)
}

func riverMigrate[TTx any](ctx context.Context, d riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(d, &rivermigrate.Config{Logger: discard})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// dispatch calls the generic scenario for the driver's transaction type.
func dispatch(d any, pgx func(*riverpgxv5.Driver) (measure, error), lite func(*riversqlite.Driver) (measure, error)) (measure, error) {
	if p, ok := d.(*riverpgxv5.Driver); ok {
		return pgx(p)
	}
	return lite(d.(*riversqlite.Driver))
}

func (s riverSystem) burndown(ctx context.Context, db *target, n, workers int) (measure, error) {
	return s.withDriver(ctx, db, func(d any) (measure, error) {
		return dispatch(d,
			func(d *riverpgxv5.Driver) (measure, error) { return riverBurndown(ctx, d, n, workers) },
			func(d *riversqlite.Driver) (measure, error) { return riverBurndown(ctx, d, n, workers) })
	})
}

func (s riverSystem) insert(ctx context.Context, db *target, n int) (measure, error) {
	return s.withDriver(ctx, db, func(d any) (measure, error) {
		return dispatch(d,
			func(d *riverpgxv5.Driver) (measure, error) { return riverInsert(ctx, d, n) },
			func(d *riversqlite.Driver) (measure, error) { return riverInsert(ctx, d, n) })
	})
}

func (s riverSystem) latency(ctx context.Context, db *target, p latencyParams) (measure, error) {
	return s.withDriver(ctx, db, func(d any) (measure, error) {
		return dispatch(d,
			func(d *riverpgxv5.Driver) (measure, error) { return riverLatency(ctx, d, p) },
			func(d *riversqlite.Driver) (measure, error) { return riverLatency(ctx, d, p) })
	})
}

// riverInsertNoops inserts n noop jobs in batches with InsertMany.
func riverInsertNoops[TTx any](ctx context.Context, c *river.Client[TTx], n int) error {
	for done := 0; done < n; done += insertBatch {
		params := make([]river.InsertManyParams, min(insertBatch, n-done))
		for i := range params {
			params[i] = river.InsertManyParams{Args: noopArgs{N: done + i}}
		}
		if _, err := c.InsertMany(ctx, params); err != nil {
			return err
		}
	}
	return nil
}

func riverBurndown[TTx any](ctx context.Context, d riverdriver.Driver[TTx], n, workers int) (measure, error) {
	cd := newCountdown(n)
	ws := river.NewWorkers()
	river.AddWorker(ws, &riverNoop{cd: cd})
	c, err := river.NewClient(d, &river.Config{
		Logger:  discard,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers: ws,
	})
	if err != nil {
		return measure{}, err
	}
	if err := riverInsertNoops(ctx, c, n); err != nil {
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
	// Stop waits for the completer to record every outcome.
	if err := c.Stop(ctx); err != nil {
		return measure{}, err
	}
	return measure{elapsed: time.Since(start)}, nil
}

func riverInsert[TTx any](ctx context.Context, d riverdriver.Driver[TTx], n int) (measure, error) {
	// An insert-only client: no queues, no workers.
	c, err := river.NewClient(d, &river.Config{Logger: discard})
	if err != nil {
		return measure{}, err
	}
	start := time.Now()
	if err := riverInsertNoops(ctx, c, n); err != nil {
		return measure{}, err
	}
	return measure{elapsed: time.Since(start)}, nil
}

func riverLatency[TTx any](ctx context.Context, d riverdriver.Driver[TTx], p latencyParams) (measure, error) {
	rec := newStamps(p.samples)
	ws := river.NewWorkers()
	river.AddWorker(ws, &riverStamp{rec: rec})
	cfg := &river.Config{
		Logger:  discard,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: p.workers}},
		Workers: ws,
	}
	if p.poll > 0 {
		// River fetches at most once per FetchCooldown (default 100ms)
		// after an insert notification, and polls every FetchPollInterval
		// (default 1s) without one.
		cfg.FetchCooldown = p.poll
		cfg.FetchPollInterval = p.poll
	}
	c, err := river.NewClient(d, cfg)
	if err != nil {
		return measure{}, err
	}
	if err := c.Start(ctx); err != nil {
		return measure{}, err
	}
	return runLatency(ctx, p, rec, func(t0 int64) error {
		_, err := c.Insert(ctx, stampArgs{T0: t0}, nil)
		return err
	}, func() error { return c.Stop(context.Background()) })
}

// openSQLite opens a database/sql pool on path for River's SQLite driver
// and for goqite: WAL, a 5s busy timeout, and synchronous=FULL like Weft's
// default, so that every SQLite contender makes the same durability
// promise. One connection, as both riversqlite's and goqite's docs
// recommend: SQLite has one writer, and more connections only trade
// throughput for SQLITE_BUSY errors.
func openSQLite(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_synchronous=FULL&_foreign_keys=true")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
