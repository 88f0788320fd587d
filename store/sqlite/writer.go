package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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
	done chan result
	// durable ops are fsynced on commit (under SyncFull). Claims and lease
	// extensions are not: losing one to a power failure only puts the task
	// back where it was, and the next durable commit syncs the WAL up to
	// and including them anyway.
	durable bool
	// wake records whether run asked for a wakeup on commit.
	wake bool
}

// result answers a waiting submitter: either its op's outcome, or lead —
// the submitter is to take the writer's lock and commit the next group.
type result struct {
	err  error
	lead bool
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

// The writer's hot statements — claims, outcomes, events — go to the driver
// connection directly: measured, database/sql's per-argument and
// per-column conversions and their allocations cost the writer's critical
// section about 4 µs per task.

// args is a statement's arguments in driver form.
type args []driver.NamedValue

func (a *args) add(vs ...driver.Value) {
	for _, v := range vs {
		*a = append(*a, driver.NamedValue{Ordinal: len(*a) + 1, Value: v})
	}
}

// rawQuery runs query and calls row for each result row; row must not keep
// the slice it is given.
func (q *execer) rawQuery(query string, a args, row func([]driver.Value) error) error {
	return q.conn.Raw(func(dc any) error {
		rows, err := dc.(driver.QueryerContext).QueryContext(context.Background(), query, a)
		if err != nil {
			return err
		}
		defer rows.Close()
		dest := make([]driver.Value, len(rows.Columns()))
		for {
			if err := rows.Next(dest); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if err := row(dest); err != nil {
				return err
			}
		}
	})
}

// rawExec runs a statement that returns no rows.
func (q *execer) rawExec(query string, a args) error {
	return q.conn.Raw(func(dc any) error {
		_, err := dc.(driver.ExecerContext).ExecContext(context.Background(), query, a)
		return err
	})
}

// Conversions of the driver's values: SQLite returns INTEGER as int64, TEXT
// as string, BLOB as []byte and NULL as nil.

func asInt64(v driver.Value) int64 {
	n, _ := v.(int64)
	return n
}

func asString(v driver.Value) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

func asBytes(v driver.Value) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return nil
}

// writer owns the only write connection of this process and commits
// queued writes together (group commit). There is no writer goroutine to
// hand ops to: a submitter that finds the connection free commits the group
// itself — everything queued, its own op included — and then hands the lead
// to the first op still queued, whose submitter commits the next group.
// Uncontended, a write costs no goroutine handoff; under load, every
// transaction carries all the writes that queued while the previous one
// committed, so many small fsyncs become one.
type writer struct {
	conn     *sql.Conn
	log      *slog.Logger
	maxGroup int
	// interval and idleInterval bound the change watch's period, which
	// backs off while nothing changes; activity counts commits, ours and
	// others', so that the idle watcher knows when to tighten again.
	interval, idleInterval time.Duration
	activity               atomic.Int64
	// files, when not nil, reports writes to the database's files by any
	// process; the writer closes it.
	files  *fileWatch
	notify func()
	// foreign is told of commits by other connections, as the change
	// watch notices them.
	foreign func()
	// committed is told of every commit (the checkpointer counts them).
	committed func()
	// walPath is the WAL file, restarted once larger than walLimit;
	// after a refused restart, the next is not tried before restartAfter.
	walPath      string
	walLimit     int64
	restartAfter time.Time
	// busyTimeout bounds how long begin waits for another process's lock.
	busyTimeout time.Duration

	// lock is held by the submitter committing a group; it guards the
	// connection and the fields below it.
	lock sync.Mutex
	// fullSync is the configured durability; syncIsFull is the
	// connection's current setting.
	fullSync, syncIsFull bool
	dataVersion          int64

	qmu    sync.Mutex
	queue  []*op
	closed bool

	closeOnce sync.Once
	closing   chan struct{}
	watching  chan struct{}
}

func newWriter(ctx context.Context, db *sql.DB, o Options, walPath string, files *fileWatch, notify, foreign, committed func()) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	w := &writer{
		conn:         conn,
		log:          o.Logger,
		maxGroup:     o.MaxGroup,
		interval:     o.WatchInterval,
		idleInterval: o.WatchIdleInterval,
		files:        files,
		notify:       notify,
		foreign:      foreign,
		committed:    committed,
		walPath:      walPath,
		walLimit:     o.WALRestartBytes,
		busyTimeout:  o.BusyTimeout,
		fullSync:     o.Synchronous == SyncFull,
		syncIsFull:   o.Synchronous == SyncFull,
		closing:      make(chan struct{}),
		watching:     make(chan struct{}),
	}
	// Checkpoints are the checkpointer's job, off the writer's commits.
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0; PRAGMA wal_autocheckpoint = 0"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	if w.dataVersion, err = w.readDataVersion(); err != nil {
		conn.Close()
		return nil, err
	}
	go w.watchIdle()
	return w, nil
}

// do submits a durable write and waits for its transaction to commit.
func (w *writer) do(ctx context.Context, run func(q *execer) error) error {
	return w.submit(ctx, &op{ctx: ctx, run: run, durable: true})
}

// doLight submits a write whose loss on power failure is harmless (see
// op.durable) and waits for its commit.
func (w *writer) doLight(ctx context.Context, run func(q *execer) error) error {
	return w.submit(ctx, &op{ctx: ctx, run: run})
}

func (w *writer) submit(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Room for a lead and the result: a lead may be handed to o just
	// before another submitter commits o's group.
	o.done = make(chan result, 2)
	w.qmu.Lock()
	if w.closed {
		w.qmu.Unlock()
		return store.ErrClosed
	}
	w.queue = append(w.queue, o)
	w.qmu.Unlock()
	if w.lock.TryLock() {
		w.lead()
	}
	// Once queued, the op runs or is refused as a whole; waiting for the
	// answer keeps the caller from guessing whether it was written.
	for {
		r := <-o.done
		if !r.lead {
			return r.err
		}
		w.lock.Lock()
		w.lead()
	}
}

// lead commits one group while holding the lock, then releases the lock
// and hands the lead to the next queued op, if any.
func (w *writer) lead() {
	for {
		w.boundWAL()
		if batch := w.take(); len(batch) > 0 {
			w.commit(batch)
		} else {
			w.watch()
		}
		w.qmu.Lock()
		var next *op
		if len(w.queue) > 0 {
			next = w.queue[0]
		}
		w.qmu.Unlock()
		w.lock.Unlock()
		if next != nil {
			next.done <- result{lead: true}
			return
		}
		// An op queued after the check above found the lock still held and
		// is waiting: whoever gets the lock now commits it.
		w.qmu.Lock()
		pending := len(w.queue) > 0
		w.qmu.Unlock()
		if !pending || !w.lock.TryLock() {
			return
		}
	}
}

// boundWAL restarts the WAL once its file passes walLimit. The
// checkpointer's PASSIVE checkpoints copy frames but never reset the WAL:
// only a commit that finds every frame copied starts again from the WAL's
// beginning, and under writes that never pause that never happens, so the
// WAL grew without bound (seen at 10M rows). A RESTART checkpoint copies
// what is left and makes the next commit write from the beginning, which
// also shrinks the file to journal_size_limit. It runs on the writer's
// connection between groups, so no commit of ours races it; readers on old
// snapshots are waited for a little, and if they hold on the restart is
// tried again later rather than stalling writes. One stat a group is its
// whole cost until the limit is reached.
func (w *writer) boundWAL() {
	fi, err := os.Stat(w.walPath)
	if err != nil || fi.Size() <= w.walLimit || time.Now().Before(w.restartAfter) {
		return
	}
	began := time.Now()
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.Itoa(int(restartWait/time.Millisecond))); err != nil {
		w.log.Warn("sqlite: WAL restart", "err", err)
		return
	}
	var busy, logFrames, done int
	err = w.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &logFrames, &done)
	if _, rerr := w.conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); rerr != nil && err == nil {
		err = rerr
	}
	switch {
	case err != nil:
		w.restartAfter = began.Add(restartRetry)
		w.log.Warn("sqlite: WAL restart", "err", err)
	case busy != 0 && logFrames < 0:
		// The checkpointer was mid-pass: it will be done in a moment.
		w.restartAfter = began.Add(restartRetry / 10)
	case busy != 0:
		// A reader held an old snapshot past restartWait.
		w.restartAfter = began.Add(restartRetry)
	default:
		w.log.Debug("sqlite: WAL restarted", "frames", logFrames, "took", time.Since(began))
	}
}

// restartWait bounds how long a WAL restart waits for readers; restartRetry
// is how long the writer waits before trying a refused restart again, so
// that a reader holding an old snapshot does not stall every group.
const (
	restartWait  = 20 * time.Millisecond
	restartRetry = 100 * time.Millisecond
)

// take removes up to maxGroup ops from the queue.
func (w *writer) take() []*op {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	n := min(len(w.queue), w.maxGroup)
	batch := w.queue[:n:n]
	w.queue = w.queue[n:]
	return batch
}

// close refuses new writes, commits everything already queued, and closes
// the connection.
func (w *writer) close() {
	w.closeOnce.Do(func() {
		w.qmu.Lock()
		w.closed = true
		w.qmu.Unlock()
		close(w.closing)
		<-w.watching
		w.lock.Lock()
		for batch := w.take(); len(batch) > 0; batch = w.take() {
			w.commit(batch)
		}
		w.conn.Close()
		w.lock.Unlock()
	})
}

// notifiedIdleInterval is the idle watcher's longest period when file
// notifications prompt it: polling is then only a safety net.
const notifiedIdleInterval = time.Second

// watchIdle checks for commits by other connections while no submitter is
// committing; a committing submitter checks after each group itself. The
// period doubles after every check that finds nothing new, up to
// idleInterval, and returns to interval after any commit: a busy file is
// watched every 2 ms, an idle server costs almost nothing (measured in
// docs/benchmarks.md), and the first commit after a quiet spell is seen
// within idleInterval.
func (w *writer) watchIdle() {
	defer close(w.watching)
	period, idle := w.interval, w.idleInterval
	// armed: file notifications prompt checks. They are on only while the
	// poll has backed off: while the file is busy the poll is frequent
	// anyway, and every commit, this process's own included, would cost a
	// notification and goroutine wakeups.
	armed := w.files != nil
	if w.files != nil {
		defer w.files.close()
	}
	timer := time.NewTimer(period)
	defer timer.Stop()
	seen := w.activity.Load()
	for {
		var prompt <-chan struct{}
		if armed {
			prompt = w.files.changed
		}
		written := false
		select {
		case <-w.closing:
			return
		case <-prompt:
			timer.Stop()
			written = true
		case <-timer.C:
		}
		if w.lock.TryLock() {
			w.lead()
		}
		switch now := w.activity.Load(); {
		case now != seen:
			seen, period = now, w.interval
		case written:
			// The notification is for the write of a commit's frames,
			// which becomes visible only once the commit's fsync is
			// done: look again shortly.
			period = commitRecheck
		default:
			period = min(2*period, idle)
		}
		switch quiet := period >= w.idleInterval; {
		case w.files == nil:
		case quiet && !armed:
			// Notifications are on from here; a commit made before they
			// were is caught by the check just made or the next poll.
			armed = w.files.arm()
			idle = max(w.idleInterval, notifiedIdleInterval)
		case !quiet && armed && !written:
			w.files.disarm()
			armed, idle = false, w.idleInterval
		}
		timer.Reset(period)
	}
}

// commitRecheck is how soon the idle watcher looks again after a write to
// the database's files showed no new commit yet: about one fsync.
const commitRecheck = 250 * time.Microsecond

// commit runs a group in one transaction. If any op fails, the group is
// rolled back and each op is retried in a transaction of its own, so one
// bad op never takes the others down with it.
func (w *writer) commit(batch []*op) {
	live := batch[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- result{err: err}
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
		w.finish([]*op{o}, classify(w.runTx([]*op{o})))
	}
}

// finish answers the ops of a transaction. The change watch runs first: it
// is a call into SQLite, and the goroutines woken below would otherwise
// wait for it to give up the processor.
func (w *writer) finish(ops []*op, err error) {
	w.activity.Add(1)
	w.watch()
	wake := false
	for _, o := range ops {
		wake = wake || (err == nil && o.wake)
		o.done <- result{err: err}
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
		// After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite has already
		// rolled the transaction back; a second ROLLBACK would only log a
		// misleading error next to the real one.
		if err != nil && w.inTx() {
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
	w.committed()
	return nil
}

// classify wraps the backend-neutral sentinel for SQLite errors a caller
// must be able to recognise without importing the driver.
func classify(err error) error {
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch {
	case se.Code == sqlite3.ErrFull:
		return fmt.Errorf("%w: %w", store.ErrStorageFull, err)
	case se.Code == sqlite3.ErrReadonly, se.SystemErrno == syscall.EROFS:
		return fmt.Errorf("%w: %w", store.ErrReadOnly, err)
	}
	return err
}

// inTx reports whether the write connection is inside a transaction.
func (w *writer) inTx() bool {
	in := true
	_ = w.conn.Raw(func(dc any) error {
		if c, ok := dc.(*sqlite3.SQLiteConn); ok {
			in = !c.AutoCommit()
		}
		return nil
	})
	return in
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
		w.activity.Add(1)
		w.notify()
		w.foreign()
	}
}

func (w *writer) readDataVersion() (int64, error) {
	var v int64
	if err := w.conn.QueryRowContext(context.Background(), "PRAGMA data_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read data_version: %w", err)
	}
	return v, nil
}
