package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3", for riversqlite and goqite

	"maragu.dev/goqite"
	"maragu.dev/goqite/jobs"
)

// goqiteSchemaSQLite is goqite's SQLite schema as its README gives it
// (v0.4.0's schema_sqlite.sql): the library ships it as a file for the
// application to apply.
const goqiteSchemaSQLite = `
create table goqite (
  id text primary key default ('m_' || lower(hex(randomblob(16)))),
  created text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  updated text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  queue text not null,
  body blob not null,
  timeout text not null default (strftime('%Y-%m-%dT%H:%M:%fZ')),
  received integer not null default 0,
  priority integer not null default 0
) strict;

create trigger goqite_updated_timestamp after update on goqite begin
  update goqite set updated = strftime('%Y-%m-%dT%H:%M:%fZ') where id = old.id;
end;

create index goqite_queue_priority_created_idx on goqite (queue, priority desc, created);
`

// goqiteSystem is goqite's job runner (maragu.dev/goqite/jobs) on its
// queue: the runner receives one message per transaction in one loop and
// runs each job in its own goroutine, up to Limit at once; a finished job's
// message is deleted in a transaction of its own. SQLite only: see
// goqitePostgresSkipped.
type goqiteSystem struct{ be string }

// goqitePostgresSkipped is why goqite does not run on PostgreSQL here,
// although it supports it: found by running it (a burn-down of 2,000 tasks
// with 2,000 workers; a latency run of 200 samples).
const goqitePostgresSkipped = "goqite opens every transaction SERIALIZABLE and does not retry; on PostgreSQL its runner's " +
	"concurrent deletes and receives fail with serialization errors (SQLSTATE 40001), so messages come back only " +
	"after their 5s timeout (a 2,000-task burn-down ran at 65 tasks/s) and the latency producer's Send fails outright"

func (s goqiteSystem) name() string              { return "goqite" }
func (s goqiteSystem) backend() string           { return s.be }
func (s goqiteSystem) maxWorkers() (int, string) { return 0, "" }

// unsupported says why goqite does not run on the backend, if it does not.
func (s goqiteSystem) unsupported() string {
	if s.be != backendSQLite {
		return goqitePostgresSkipped
	}
	return ""
}

// open returns the target's database/sql pool with goqite's schema and a
// queue on it.
func (s goqiteSystem) open(ctx context.Context, db *target) (*sql.DB, *goqite.Queue, error) {
	if s.be != backendSQLite {
		return nil, nil, skip(goqitePostgresSkipped)
	}
	sqlDB, err := openSQLite(db.path)
	if err != nil {
		return nil, nil, err
	}
	if _, err := sqlDB.ExecContext(ctx, goqiteSchemaSQLite); err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("goqite schema: %w", err)
	}
	return sqlDB, goqite.New(goqite.NewOpts{DB: sqlDB, Name: "jobs"}), nil
}

// goqiteInsert sends n noop job messages, insertBatch per transaction.
// goqite has no batch send; jobs.CreateTx in one transaction is the batch.
func goqiteInsert(ctx context.Context, sqlDB *sql.DB, q *goqite.Queue, n int) error {
	for done := 0; done < n; done += insertBatch {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for i := done; i < min(done+insertBatch, n); i++ {
			body := []byte(`{"n":` + strconv.Itoa(i) + `}`)
			if _, err := jobs.CreateTx(ctx, tx, q, "noop", goqite.Message{Body: body}); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func (s goqiteSystem) burndown(ctx context.Context, db *target, n, workers int) (measure, error) {
	sqlDB, q, err := s.open(ctx, db)
	if err != nil {
		return measure{}, err
	}
	defer sqlDB.Close()
	if err := goqiteInsert(ctx, sqlDB, q, n); err != nil {
		return measure{}, err
	}
	// A message whose delete failed is received again after its timeout,
	// so the countdown counts each task once, by the number in its body.
	seen := make([]atomic.Bool, n)
	cd := newCountdown(n)
	r := jobs.NewRunner(jobs.NewRunnerOpts{Limit: workers, Queue: q})
	r.Register("noop", func(ctx context.Context, m []byte) error {
		var a noopArgs
		if err := json.Unmarshal(m, &a); err != nil {
			return err
		}
		if !seen[a.N].Swap(true) {
			cd.hit()
		}
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		r.Start(runCtx)
	}()
	waitErr := cd.wait(ctx)
	// Start returns once the running jobs, their deletes included, are
	// done: that is the last completion.
	stop()
	<-stopped
	elapsed := time.Since(start)
	if waitErr != nil {
		return measure{}, waitErr
	}
	var left int
	if err := sqlDB.QueryRowContext(ctx, "select count(*) from goqite").Scan(&left); err != nil {
		return measure{}, err
	}
	if left != 0 {
		return measure{}, fmt.Errorf("%d messages left in the queue after the burn-down", left)
	}
	return measure{elapsed: elapsed}, nil
}

func (s goqiteSystem) insert(ctx context.Context, db *target, n int) (measure, error) {
	sqlDB, q, err := s.open(ctx, db)
	if err != nil {
		return measure{}, err
	}
	defer sqlDB.Close()
	start := time.Now()
	if err := goqiteInsert(ctx, sqlDB, q, n); err != nil {
		return measure{}, err
	}
	return measure{elapsed: time.Since(start)}, nil
}

func (s goqiteSystem) latency(ctx context.Context, db *target, p latencyParams) (measure, error) {
	sqlDB, q, err := s.open(ctx, db)
	if err != nil {
		return measure{}, err
	}
	defer sqlDB.Close()
	rec := newStamps(p.samples)
	opts := jobs.NewRunnerOpts{Limit: p.workers, Queue: q}
	if p.poll > 0 {
		// The runner polls an empty queue every PollInterval (default
		// 100ms); it has no notification of new messages.
		opts.PollInterval = p.poll
	}
	r := jobs.NewRunner(opts)
	r.Register("stamp", func(ctx context.Context, m []byte) error {
		t0, err := decodeStamp(m)
		if err != nil {
			return err
		}
		rec.record(t0)
		return nil
	})
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		r.Start(runCtx)
	}()
	return runLatency(ctx, p, rec, func(t0 int64) error {
		body, _ := json.Marshal(stampArgs{T0: t0})
		_, err := jobs.Create(ctx, q, "stamp", goqite.Message{Body: body})
		return err
	}, func() error {
		stop()
		<-stopped
		return nil
	})
}
