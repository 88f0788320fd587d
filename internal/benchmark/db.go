package benchmark

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// The backends a Result names.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// Target says where the fresh database of each run is made. A benchmark
// never opens an existing database: every run gets a new SQLite file or a
// new PostgreSQL schema, removed when the run ends.
type Target struct {
	// Postgres is a server URL (postgres:// or postgresql://). When set,
	// each run gets a fresh schema weft_bench_<random> on that server,
	// dropped afterwards; the rest of the server is not touched.
	Postgres string
	// File, for SQLite, is the exact database file to create; it must not
	// exist yet, and it is removed (with its -wal and -shm files) after the
	// run.
	File string
	// Dir, for SQLite when File is empty, is where a temporary directory
	// holding each run's file is made; default os.TempDir().
	Dir string
	// Sync is SQLite's synchronous setting; default FULL.
	Sync sqlite.Synchronous
	// Logger receives the store's and the engine's diagnostics; default
	// slog.Default().
	Logger *slog.Logger
}

// IsPostgres reports whether dsn is a PostgreSQL URL rather than a SQLite
// file path.
func IsPostgres(dsn string) bool {
	l := strings.ToLower(dsn)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// DB is the fresh database of one run.
type DB struct {
	// Store is open on the database.
	Store store.Store
	// DSN opens the same database from another process: the SQLite file's
	// path, or the server URL with search_path set to the run's schema.
	DSN string
	// Backend is BackendSQLite or BackendPostgres.
	Backend string
	// Sync is the SQLite synchronous setting ("" on PostgreSQL).
	Sync sqlite.Synchronous

	logger *slog.Logger
	remove func() error
}

// Open makes a fresh database and opens a store on it, with the schema
// migrated. Close it to remove the database.
func (t Target) Open(ctx context.Context) (*DB, error) {
	log := t.Logger
	if log == nil {
		log = slog.Default()
	}
	if t.Postgres != "" {
		return t.openPostgres(ctx, log)
	}
	sync := t.Sync
	if sync == "" {
		sync = sqlite.SyncFull
	}
	var (
		path   string
		remove func() error
	)
	if t.File != "" {
		if _, err := os.Lstat(t.File); err == nil {
			return nil, fmt.Errorf("benchmark database %s already exists: a benchmark only runs on a database it creates", t.File)
		}
		path = t.File
		remove = func() error {
			var errs []error
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}
	} else {
		dir, err := os.MkdirTemp(t.Dir, "weft-bench-")
		if err != nil {
			return nil, fmt.Errorf("create a directory for the benchmark database: %w", err)
		}
		path = filepath.Join(dir, "bench.db")
		remove = func() error { return os.RemoveAll(dir) }
	}
	st, err := sqlite.Open(ctx, path, &sqlite.Options{Synchronous: sync, Logger: log})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open benchmark database: %w", err), remove())
	}
	return &DB{Store: st, DSN: path, Backend: BackendSQLite, Sync: sync, logger: log, remove: remove}, nil
}

// openPostgres creates a schema for one run on t.Postgres and opens a
// store in it.
func (t Target) openPostgres(ctx context.Context, log *slog.Logger) (*DB, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("name a benchmark schema: %w", err)
	}
	schema := "weft_bench_" + hex.EncodeToString(b[:])
	u, err := url.Parse(t.Postgres)
	if err != nil {
		return nil, fmt.Errorf("parse the PostgreSQL URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dsn := u.String()

	conn, err := pgx.Connect(ctx, t.Postgres)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA "+schema)
	_ = conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("create benchmark schema %s: %w", schema, err)
	}
	server := t.Postgres
	remove := func() error {
		// The run's context may be cancelled by now (Ctrl-C): the schema
		// is dropped regardless, within a bound.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			return fmt.Errorf("drop benchmark schema %s: %w", schema, err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			return fmt.Errorf("drop benchmark schema %s: %w", schema, err)
		}
		return nil
	}
	st, err := postgres.Open(ctx, dsn, &postgres.Options{Logger: log})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open benchmark schema %s: %w", schema, err), remove())
	}
	return &DB{Store: st, DSN: dsn, Backend: BackendPostgres, logger: log, remove: remove}, nil
}

// Close closes the store and removes the database.
func (d *DB) Close() error {
	return errors.Join(d.Store.Close(), d.remove())
}

// Settle brings the database to a steady state after a bulk load, as a
// long-running deployment would be in, so that what is timed next reflects
// the table's size rather than the load's leftovers: on SQLite the WAL is
// copied back into the file and truncated (under writes that never pause,
// passive checkpoints never let it restart); on PostgreSQL the tasks table
// is vacuumed and analysed, as autovacuum eventually would.
func (d *DB) Settle(ctx context.Context) error {
	if d.Backend == BackendPostgres {
		conn, err := pgx.Connect(ctx, d.DSN)
		if err != nil {
			return fmt.Errorf("settle: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "VACUUM ANALYZE weft_tasks"); err != nil {
			return fmt.Errorf("settle: vacuum: %w", err)
		}
		return nil
	}
	sdb, err := sqlite.OpenSQL(d.DSN, &sqlite.Options{Synchronous: d.Sync})
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	defer sdb.Close()
	var busy, frames, done int
	if err := sdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("settle: checkpoint: %w", err)
	}
	return nil
}

// OpenDSN opens an existing benchmark database by its DSN, as a producer
// process does. sync applies to SQLite only.
func OpenDSN(ctx context.Context, dsn string, sync sqlite.Synchronous, log *slog.Logger) (store.Store, error) {
	if IsPostgres(dsn) {
		st, err := postgres.Open(ctx, dsn, &postgres.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", redact(dsn), err)
		}
		return st, nil
	}
	st, err := sqlite.Open(ctx, dsn, &sqlite.Options{Synchronous: sync, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dsn, err)
	}
	return st, nil
}

// redact hides the password of a URL for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the PostgreSQL URL"
	}
	return u.Redacted()
}

// SeedCompleted writes n completed tasks, finalized at finishedAt, straight
// into db's SQLite file with one SQL statement, and adds them to the
// queue counts. It bypasses the store (no events are written, ids are
// synthetic and sort before real ones), so it is only for tables too large
// to fill through the API in reasonable time. SQLite only.
func SeedCompleted(ctx context.Context, db *DB, n int, finishedAt time.Time) error {
	if db.Backend != BackendSQLite {
		return fmt.Errorf("seeding rows with SQL needs SQLite, not %s", db.Backend)
	}
	if n <= 0 {
		return nil
	}
	sdb, err := sqlite.OpenSQL(db.DSN, &sqlite.Options{Synchronous: db.Sync})
	if err != nil {
		return fmt.Errorf("seed completed tasks: %w", err)
	}
	defer sdb.Close()
	at := finishedAt.UnixMicro()
	tx, err := sdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed completed tasks: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
		INSERT INTO weft_tasks (id, kind, queue, args, state, run_at, attempt, max_attempts, created_at, attempted_at, finalized_at)
		SELECT printf('00000000-0000-7000-8000-%012d', x), 'bench.old', 'default', '{}', 'completed', ?2, 1, 25, ?2, ?2, ?2 FROM seq`, n, at); err != nil {
		return fmt.Errorf("seed completed tasks: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO weft_counts (queue, state, n) VALUES ('default', 'completed', ?)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`, n); err != nil {
		return fmt.Errorf("seed completed tasks: count them: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed completed tasks: %w", err)
	}
	return nil
}
