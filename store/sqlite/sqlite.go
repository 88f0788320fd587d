// Package sqlite is Weft's embedded storage backend: one SQLite file in WAL
// mode, every write funnelled through a single writer goroutine that commits
// queued writes together (group commit), reads on a separate pool, and a
// change watcher that notices commits by other connections and processes.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/weftworks/weft/internal/wake"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// Synchronous is SQLite's synchronous setting for the database file. See
// docs/operations.md for what each setting can lose on power failure.
type Synchronous string

// The synchronous settings Weft accepts.
const (
	// SyncFull fsyncs the WAL on every commit: an acknowledged write
	// survives power loss. Group commit makes this affordable.
	SyncFull Synchronous = "FULL"
	// SyncNormal fsyncs only at checkpoints: an application crash loses
	// nothing, but power loss can roll back the most recent commits.
	SyncNormal Synchronous = "NORMAL"
)

// Options configures Open. The zero value is production-ready.
type Options struct {
	// Synchronous defaults to SyncFull.
	Synchronous Synchronous
	// BusyTimeout is how long a write waits for another process holding
	// the file's write lock. Default 5s.
	BusyTimeout time.Duration
	// WatchInterval is how often the writer checks whether another
	// connection or process committed (PRAGMA data_version) while the
	// file is busy. Default 2ms.
	WatchInterval time.Duration
	// WatchIdleInterval bounds the check interval while nothing changes:
	// each quiet check doubles the interval from WatchInterval up to this,
	// and any commit, ours or another's, brings it back to WatchInterval.
	// It bounds how late an idle process notices another's first commit.
	// Default 16ms. Where the operating system reports writes to the
	// database's files (see NoFileWatch), those reports prompt the check
	// and the idle period grows to a second: a safety net only.
	WatchIdleInterval time.Duration
	// NoFileWatch turns off file-change notifications, leaving the change
	// watch to polling alone.
	NoFileWatch bool
	// CheckpointInterval is how often the WAL is copied back into the
	// database file, off the writer's path, when anything was committed.
	// Default 100ms.
	CheckpointInterval time.Duration
	// WALRestartBytes is the WAL file size past which the writer restarts
	// the WAL from its beginning between two groups, so that it stays
	// bounded under writes that never pause. Default 256 MiB; at least
	// twice the 8 MiB the WAL is shrunk to after a restart.
	WALRestartBytes int64
	// MaxGroup bounds how many queued writes one transaction coalesces.
	// Default 512.
	MaxGroup int
	// ReadConns bounds the read pool. Default 4.
	ReadConns int
	// CacheSizeKiB is each connection's page cache. Default 16384 (16 MiB).
	CacheSizeKiB int
	// Limits bounds accepted tasks.
	Limits store.Limits
	// Logger receives the backend's diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now. Tests replace it.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Synchronous == "" {
		out.Synchronous = SyncFull
	}
	if out.BusyTimeout <= 0 {
		out.BusyTimeout = 5 * time.Second
	}
	if out.WatchInterval <= 0 {
		out.WatchInterval = 2 * time.Millisecond
	}
	if out.WatchIdleInterval < out.WatchInterval {
		out.WatchIdleInterval = max(16*time.Millisecond, out.WatchInterval)
	}
	if out.CheckpointInterval <= 0 {
		out.CheckpointInterval = 100 * time.Millisecond
	}
	if out.WALRestartBytes <= 0 {
		out.WALRestartBytes = 256 << 20
	}
	out.WALRestartBytes = max(out.WALRestartBytes, 2*journalSizeLimit)
	if out.MaxGroup <= 0 {
		out.MaxGroup = 512
	}
	if out.ReadConns <= 0 {
		out.ReadConns = 4
	}
	if out.CacheSizeKiB <= 0 {
		out.CacheSizeKiB = 16384
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	return out
}

// Store is the SQLite backend. It implements store.Store, with a
// TxEnqueuer for *sql.Tx on the same file.
type Store struct {
	// reads are the reads shared with the PostgreSQL backend, on rdb.
	reads
	path   string
	opts   Options
	rdb    *sql.DB
	wdb    *sql.DB
	cdb    *sql.DB
	writer *writer
	ckpt   *checkpointer
	wake   wake.Broadcaster
	// gated is which queues take the gated claim path.
	gated sqlbackend.GatedQueues
	// followers are the readers following tasks' streams.
	followers wake.Keyed
}

var _ store.Store = (*Store)(nil)

// reads names sqlbackend.Reader in this package, so that the field
// embedding it is unexported: its methods are the Store's, the field is
// not.
type reads = sqlbackend.Reader

// Open opens (creating if needed) the database file at path, applies any
// pending migrations, and starts the writer. The caller must Close it.
func Open(ctx context.Context, path string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if path == "" {
		return nil, &store.ValidationError{Index: -1, Field: "database path", Message: "must not be empty"}
	}
	if o.Synchronous != SyncFull && o.Synchronous != SyncNormal {
		return nil, &store.ValidationError{Index: -1, Field: "synchronous", Message: fmt.Sprintf("%q is not FULL or NORMAL", o.Synchronous)}
	}
	if strings.ContainsRune(path, 0) {
		return nil, &store.ValidationError{Index: -1, Field: "database path", Message: "contains a NUL byte"}
	}
	if dir := filepath.Dir(path); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("sqlite: open %s: directory %s does not exist", path, dir)
		}
		// SQLite reports a read-only directory as "unable to open database
		// file: no such file or directory" about a file that exists.
		if readOnlyDir(dir) {
			return nil, fmt.Errorf("sqlite: open %s: %w: the directory %s is on a read-only file system, and SQLite must create %s-wal and %s-shm beside the database", path, store.ErrReadOnly, dir, filepath.Base(path), filepath.Base(path))
		}
	}
	s := &Store{path: path, opts: o}
	s.wdb = openDB(path, o, false)
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	if err := migrate(ctx, s.wdb); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.rdb = openDB(path, o, true)
	s.rdb.SetMaxOpenConns(o.ReadConns)
	s.rdb.SetMaxIdleConns(o.ReadConns)
	s.reads = sqlbackend.NewReader(sqlbackend.StdDB(s.rdb), &readStatements, scanTask, o.Now)
	s.cdb = openDB(path, o, false)
	s.cdb.SetMaxOpenConns(1)
	s.ckpt = newCheckpointer(s.cdb, o.CheckpointInterval, o.Logger)
	var files *fileWatch
	if !o.NoFileWatch {
		var err error
		if files, err = watchFiles(path, o.Logger); err != nil {
			o.Logger.Warn("sqlite: watching for other processes' commits by polling alone", "err", err)
		}
	}
	w, err := newWriter(ctx, s.wdb, o, path+"-wal", files, s.wake.Notify, s.followers.NotifyAll, s.ckpt.committed)
	if err != nil {
		s.ckpt.close()
		s.cdb.Close()
		s.rdb.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.writer = w
	return s, nil
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Close stops the writer after it has committed every queued write, then
// closes the connections.
func (s *Store) Close() error {
	s.writer.close()
	s.ckpt.close()
	return errors.Join(s.cdb.Close(), s.rdb.Close(), s.wdb.Close())
}

// Subscribe implements store.Store.
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.wake.Subscribe() }

func (s *Store) now() time.Time { return s.opts.Now() }

// openDB builds a pool without registering a global driver name: each pool
// gets its own connector with the pragmas Weft needs.
func openDB(path string, o Options, readOnly bool) *sql.DB {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(o.BusyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", string(o.Synchronous))
	q.Set("_stmt_cache_size", "64")
	// database/sql never shares a connection between goroutines, so
	// SQLite's per-connection mutex is pure cost (measured: 25% of
	// claim-and-complete throughput).
	q.Set("_mutex", "no")
	q.Set("_cache_size", fmt.Sprint(-o.CacheSizeKiB))
	if readOnly {
		q.Set("_query_only", "true")
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	return sql.OpenDB(&connector{dsn: dsn, drv: &sqlite3.SQLiteDriver{ConnectHook: connectHook}})
}

// journalSizeLimit is what the WAL is shrunk to when it is reset.
const journalSizeLimit = 8 << 20

// connectHook sets the pragmas that have no DSN parameter.
func connectHook(c *sqlite3.SQLiteConn) error {
	for _, p := range []string{
		"PRAGMA temp_store = MEMORY",
		"PRAGMA foreign_keys = OFF",
		// SQLite reuses the WAL from its start after a checkpoint but never
		// shrinks it: a burst would keep its size on disk for good.
		"PRAGMA journal_size_limit = " + strconv.Itoa(journalSizeLimit),
	} {
		if _, err := c.Exec(p, nil); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

type connector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.drv }

// micros and fromMicros are the schema's time encoding (sqlbackend.Micros),
// under short names for the many statements that use it.
func micros(t time.Time) int64 { return sqlbackend.Micros(t) }

func fromMicros(v int64) time.Time { return sqlbackend.FromMicros(v) }

func nullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}
