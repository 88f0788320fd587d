package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/weftworks/weft/store"
)

// op is one write submitted to the writer. run executes its statements
// inside the writer's open transaction; it may be run a second time, alone,
// if another op of its group failed, so it must set its results afresh each
// time it runs.
type op struct {
	ctx  context.Context
	run  func(q *execer) error
	done chan error
	// durable ops are fsynced on commit (under SyncFull). Claims and lease
	// extensions are not: losing one to a power failure only puts the task
	// back where it was, and the next durable commit syncs the WAL up to
	// and including them anyway.
	durable bool
	// wake records whether run asked for a wakeup on commit.
	wake bool
}

// execer runs statements on the writer's connection. The driver caches
// prepared statements per connection, so a repeated query is parsed once.
type execer struct {
	conn *sql.Conn
	// wake is set by an op whose commit may make work ready.
	wake bool
}

func (q *execer) exec(query string, args ...any) (sql.Result, error) {
	return q.conn.ExecContext(context.Background(), query, args...)
}

func (q *execer) query(query string, args ...any) (*sql.Rows, error) {
	return q.conn.QueryContext(context.Background(), query, args...)
}

func (q *execer) queryRow(query string, args ...any) *sql.Row {
	return q.conn.QueryRowContext(context.Background(), query, args...)
}

// writer owns the only write connection of this process. Submitted ops are
// queued; the writer takes everything queued (up to MaxGroup) and commits it
// as one transaction. Under load this turns many small fsyncs into one.
type writer struct {
	conn     *sql.Conn
	ops      chan *op
	log      *slog.Logger
	maxGroup int
	interval time.Duration
	notify   func()
	// busyTimeout bounds how long begin waits for another process's lock.
	busyTimeout time.Duration
	// fullSync is the configured durability; syncIsFull is the
	// connection's current setting.
	fullSync, syncIsFull bool

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}

	dataVersion int64
}

func newWriter(ctx context.Context, db *sql.DB, o Options, notify func()) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	w := &writer{
		conn:        conn,
		ops:         make(chan *op, 4*o.MaxGroup),
		log:         o.Logger,
		maxGroup:    o.MaxGroup,
		interval:    o.WatchInterval,
		notify:      notify,
		busyTimeout: o.BusyTimeout,
		fullSync:    o.Synchronous == SyncFull,
		syncIsFull:  o.Synchronous == SyncFull,
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	if w.dataVersion, err = w.readDataVersion(); err != nil {
		conn.Close()
		return nil, err
	}
	go w.loop()
	return w, nil
}

// do submits a durable write and waits for its transaction to commit.
func (w *writer) do(ctx context.Context, run func(q *execer) error) error {
	return w.submit(ctx, &op{ctx: ctx, run: run, done: make(chan error, 1), durable: true})
}

// doLight submits a write whose loss on power failure is harmless (see
// op.durable) and waits for its commit.
func (w *writer) doLight(ctx context.Context, run func(q *execer) error) error {
	return w.submit(ctx, &op{ctx: ctx, run: run, done: make(chan error, 1)})
}

func (w *writer) submit(ctx context.Context, o *op) error {
	select {
	case <-w.closing:
		return store.ErrClosed
	default:
	}
	select {
	case w.ops <- o:
	case <-w.closing:
		return store.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the op runs or is refused as a whole; waiting for the
	// answer keeps the caller from guessing whether it was written.
	return <-o.done
}

func (w *writer) close() {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.done
		w.conn.Close()
	})
}

func (w *writer) loop() {
	defer close(w.done)
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	batch := make([]*op, 0, w.maxGroup)
	for {
		select {
		case o := <-w.ops:
			batch = append(batch[:0], o)
			batch = w.drain(batch)
			w.commit(batch)
			w.watch()
		case <-ticker.C:
			w.watch()
		case <-w.closing:
			// Everything already queued is written before the writer stops.
			for {
				batch = w.drain(batch[:0])
				if len(batch) == 0 {
					return
				}
				w.commit(batch)
			}
		}
	}
}

func (w *writer) drain(batch []*op) []*op {
	for len(batch) < w.maxGroup {
		select {
		case o := <-w.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// commit runs a group in one transaction. If any op fails, the group is
// rolled back and each op is retried in a transaction of its own, so one
// bad op never takes the others down with it.
func (w *writer) commit(batch []*op) {
	live := batch[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	if len(live) > 1 {
		if err := w.runTx(live); err == nil {
			w.finish(live, nil)
			return
		}
	}
	for _, o := range live {
		w.finish([]*op{o}, w.runTx([]*op{o}))
	}
}

func (w *writer) finish(ops []*op, err error) {
	wake := false
	for _, o := range ops {
		wake = wake || (err == nil && o.wake)
		o.done <- err
	}
	if wake {
		w.notify()
	}
}

// setSync switches the connection between FULL and NORMAL synchronous
// before a transaction, only when the mode changes.
func (w *writer) setSync(q *execer, full bool) error {
	if w.syncIsFull == full {
		return nil
	}
	mode := "NORMAL"
	if full {
		mode = "FULL"
	}
	if _, err := q.exec("PRAGMA synchronous = " + mode); err != nil {
		return fmt.Errorf("sqlite: set synchronous: %w", err)
	}
	w.syncIsFull = full
	return nil
}

// begin takes the file's write lock. The writer's connection has no busy
// timeout of its own: SQLite's busy handler sleeps in steps of up to 100ms,
// which would let a busier process starve this one. Polling the lock in
// short, jittered steps keeps waits to about a millisecond.
func (w *writer) begin(q *execer) error {
	deadline := time.Now().Add(w.busyTimeout)
	pause := 50 * time.Microsecond
	for {
		_, err := q.exec("BEGIN IMMEDIATE")
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause/2 + rand.N(pause))
		pause = min(2*pause, 2*time.Millisecond)
	}
}

func (w *writer) runTx(ops []*op) (err error) {
	q := &execer{conn: w.conn}
	if w.fullSync {
		durable := false
		for _, o := range ops {
			durable = durable || o.durable
		}
		if err := w.setSync(q, durable); err != nil {
			return err
		}
	}
	if err := w.begin(q); err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() {
		if err != nil {
			if _, rbErr := q.exec("ROLLBACK"); rbErr != nil {
				w.log.Error("sqlite: rollback failed", "err", rbErr)
			}
		}
	}()
	for _, o := range ops {
		o.wake = false
		q.wake = false
		if err := o.run(q); err != nil {
			return err
		}
		o.wake = q.wake
	}
	if _, err := q.exec("COMMIT"); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

// watch notices commits made by other connections — the caller's own
// transactions, other processes — through PRAGMA data_version, which changes
// only when some other connection committed.
func (w *writer) watch() {
	v, err := w.readDataVersion()
	if err != nil {
		if !errors.Is(err, sql.ErrConnDone) {
			w.log.Warn("sqlite: change watcher", "err", err)
		}
		return
	}
	if v != w.dataVersion {
		w.dataVersion = v
		w.notify()
	}
}

func (w *writer) readDataVersion() (int64, error) {
	var v int64
	if err := w.conn.QueryRowContext(context.Background(), "PRAGMA data_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read data_version: %w", err)
	}
	return v, nil
}
