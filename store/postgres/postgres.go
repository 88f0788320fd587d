// Package postgres is Weft's PostgreSQL backend, for many nodes on one
// database: claims with FOR UPDATE SKIP LOCKED, batched outcomes, wakeups by
// LISTEN/NOTIFY (one NOTIFY per transaction) with a polling fallback, and
// the same schema and semantics as the SQLite backend.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/weftworks/weft/internal/wake"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// Options configures Open. The zero value is ready for use.
type Options struct {
	// PollOnly disables LISTEN/NOTIFY, for transaction poolers such as
	// PgBouncer; engines then rely on their poll.
	PollOnly bool
	Limits   store.Limits
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// minPoolConns is the pool size used when the URL sets none.
const minPoolConns = 10

// Store is the PostgreSQL backend. It implements store.Store, with a
// TxEnqueuer for pgx.Tx and pgx's *sql.Tx.
type Store struct {
	// reads are the reads shared with the SQLite backend, on pool.
	reads
	pool *pgxpool.Pool
	// channel is the NOTIFY channel of commits that may have made work
	// ready: weft_wake, suffixed with the schema when it is not public, so
	// that deployments in separate schemas do not wake each other.
	channel string
	// frameChannel is the channel of stream appends, named like channel
	// (unquoted: pg_notify takes it as text); a notification's payload
	// is the task's id.
	frameChannel string
	// gated is which queues take the gated claim path.
	gated sqlbackend.GatedQueues
	// followers are the readers following tasks' streams; appended
	// tells the other nodes' followers of appends.
	followers wake.Keyed
	appended  *frameNotifier
	opts      Options
	log       *slog.Logger
	wake      wake.Broadcaster
	cancel    context.CancelFunc
	done      chan struct{}
	// horizon tells which events EventsAfter may return.
	horizon eventHorizon
}

var _ store.Store = (*Store)(nil)

// reads names sqlbackend.Reader in this package, so that the field
// embedding it is unexported: its methods are the Store's, the field is
// not.
type reads = sqlbackend.Reader

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Open connects to url (a postgres:// URL; its search_path selects the
// schema), applies pending migrations under an advisory lock, and starts
// the listener.
func Open(ctx context.Context, url string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, &store.ValidationError{Index: -1, Field: "database url", Message: err.Error()}
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default (the number of CPUs, at least 4) leaves too
		// few connections once one is held by LISTEN and claims, outcomes,
		// renewals and reads run side by side.
		cfg.MaxConns = max(cfg.MaxConns, minPoolConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := migrateTo(ctx, pool, -1); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	ch, frameCh := "weft_wake", "weft_frames"
	if schema != "public" {
		ch += "_" + schema
		frameCh += "_" + schema
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &Store{reads: sqlbackend.NewReader(poolReads{pool}, &readStatements, scanTask, o.Now), pool: pool, channel: pgx.Identifier{ch}.Sanitize(), frameChannel: frameCh, opts: o, log: o.Logger, cancel: cancel, done: make(chan struct{})}
	s.appended = newFrameNotifier(s)
	if o.PollOnly {
		close(s.done)
	} else {
		go s.listen(lctx)
		go s.appended.run(lctx)
	}
	return s, nil
}

// Close stops the listener and the stream notifier and closes the pool.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	<-s.appended.done
	s.pool.Close()
	return nil
}

// Subscribe implements store.Store.
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.wake.Subscribe() }

func (s *Store) now() time.Time { return s.opts.Now() }

// micros and fromMicros are the schema's time encoding (sqlbackend.Micros),
// under short names for the many statements that use it.
func micros(t time.Time) int64 { return sqlbackend.Micros(t) }

func fromMicros(v int64) time.Time { return sqlbackend.FromMicros(v) }

func nullMicros(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return fromMicros(*v)
}

// Migration is one schema version. Released migrations are never edited;
// a change is a new version.
type Migration struct {
	Version  int
	Name     string
	Up, Down string
}

// MigrationState is a migration and whether (and when) it was applied.
type MigrationState struct {
	Migration
	AppliedAt time.Time
}

// Migrations lists the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".sql")
		down := strings.HasSuffix(base, ".down")
		base = strings.TrimSuffix(base, ".down")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_name[.down].sql", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		m := byVersion[v]
		if m == nil {
			m = &Migration{Version: v, Name: name}
			byVersion[v] = m
		}
		if down {
			m.Down = string(body)
		} else {
			m.Up = string(body)
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// MigrationStatus reports which migrations the database at url has.
func MigrationStatus(ctx context.Context, url string) ([]MigrationState, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(ctx)
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	applied := map[int]int64{}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('weft_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	if exists {
		rows, err := conn.Query(ctx, "SELECT version, applied_at FROM weft_migrations")
		if err != nil {
			return nil, fmt.Errorf("migration status: %w", err)
		}
		for rows.Next() {
			var v int
			var at int64
			if err := rows.Scan(&v, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("migration status: %w", err)
			}
			applied[v] = at
		}
		rows.Close()
	}
	out := make([]MigrationState, len(ms))
	for i, m := range ms {
		out[i].Migration = m
		if at, ok := applied[m.Version]; ok {
			out[i].AppliedAt = fromMicros(at)
		}
	}
	return out, nil
}

// Migrate moves the database at url to version target, applying up or
// down migrations in order, in one transaction under an advisory lock, so
// that nodes doing it together do not race. A negative target means the
// latest version.
func Migrate(ctx context.Context, url string, target int) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(ctx)
	return migrateTo(ctx, conn, target)
}

// migrator is what migrateTo needs: a pool or a connection.
type migrator interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func migrateTo(ctx context.Context, db migrator, target int) error {
	ms, err := Migrations()
	if err != nil {
		return err
	}
	if target < 0 {
		target = ms[len(ms)-1].Version
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit, a no-op
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(8412537201)"); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS weft_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM weft_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := sqlbackend.CheckSchemaVersion(current, ms[len(ms)-1].Version); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range ms {
		if m.Version > current && m.Version <= target {
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO weft_migrations VALUES ($1, $2, $3)", m.Version, m.Name, time.Now().UnixMicro()); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		m := ms[i]
		if m.Version <= current && m.Version > target {
			if m.Down == "" {
				return fmt.Errorf("migration %04d_%s has no down migration", m.Version, m.Name)
			}
			if _, err := tx.Exec(ctx, m.Down); err != nil {
				return fmt.Errorf("down migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "DELETE FROM weft_migrations WHERE version = $1", m.Version); err != nil {
				return fmt.Errorf("down migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// listen holds one connection in LISTEN and turns notifications into
// wakeups: of engines, or of the followers of a task's stream. After a lost connection it reconnects with backoff; once it
// listens again it wakes everyone (notifications sent meanwhile were lost —
// waking only after the LISTEN leaves no gap) and resets the backoff, so a
// later short blip is not met with a long outage's delay.
func (s *Store) listen(ctx context.Context) {
	defer close(s.done)
	const base = 50 * time.Millisecond
	backoff := base
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, func() {
			backoff = base
			s.wake.Notify()
			s.followers.NotifyAll()
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres: listener lost; reconnecting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenOnce listens on one connection until it fails, calling listening
// once the LISTEN is in place.
func (s *Store) listenOnce(ctx context.Context, listening func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// The wake channel is listened to last, so that the session's last
	// statement, which operators and tests read in pg_stat_activity, names
	// it.
	for _, ch := range []string{pgx.Identifier{s.frameChannel}.Sanitize(), s.channel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	defer func() { _, _ = conn.Exec(context.Background(), "UNLISTEN *") }()
	listening()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel == s.frameChannel {
			s.followers.Notify(strings.Split(n.Payload, ",")...)
			continue
		}
		s.wake.Notify()
	}
}

// tx runs f in a transaction (txOnce), with errors a caller must recognise
// classified.
func (s *Store) tx(ctx context.Context, f func(tx pgx.Tx) (notify bool, err error)) error {
	return classify(s.txOnce(ctx, f))
}

// classify wraps the backend-neutral sentinel for server errors a caller
// must be able to recognise without importing pgx: disk full (53100) and
// writes refused by a read-only server or transaction (25006).
func classify(err error) error {
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case "53100":
		return fmt.Errorf("%w: %w", store.ErrStorageFull, err)
	case "25006":
		return fmt.Errorf("%w: %w", store.ErrReadOnly, err)
	}
	return err
}

// txOnce runs f in a transaction, notifying listeners at commit when f
// asks.
func (s *Store) txOnce(ctx context.Context, f func(tx pgx.Tx) (notify bool, err error)) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit, a no-op
	notify, err := f(tx)
	if err != nil {
		return err
	}
	if notify {
		if err := s.notifyTx(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	if notify && s.opts.PollOnly {
		s.wake.Notify()
	}
	return nil
}

// notifyTx sends the transaction's one NOTIFY; PostgreSQL delivers it at
// commit, and only then.
func (s *Store) notifyTx(ctx context.Context, tx execer) error {
	if _, err := tx.Exec(ctx, "NOTIFY "+s.channel); err != nil {
		return fmt.Errorf("postgres: notify: %w", err)
	}
	return nil
}

func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
