// Package weftest helps test code that uses Weft: code that enqueues tasks,
// and the workers that run them.
//
// An Env is a throwaway Weft — a store of its own (a temporary SQLite
// file, or a fresh schema on a PostgreSQL server), a client on it, and a
// clock that moves only when the test says so:
//
//   - the code under test enqueues through Env.Client, and Enqueued or
//     RequireEnqueued checks what it enqueued (kind, args, options, count),
//     listing every enqueued task when they do not match;
//   - Work, WorkTask and WorkNext run one task's handler synchronously, in
//     the test's goroutine, through the rules the engine runs every attempt
//     by (argument decoding, attempt timeout, panic recovery, retry with
//     the kind's backoff, snooze, permanent failure, cancellation), and
//     record its outcome in the store as a worker would;
//   - Drain runs ready tasks until none is left, tasks enqueued meanwhile
//     included;
//   - Advance moves the clock: delayed tasks and retries come due, and
//     schedules enqueue their slots as the cron reconciler would.
//
// Nothing runs in the background: a task runs when the test runs it.
package weftest

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
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// Options configure an Env. The zero value is a valid configuration.
type Options struct {
	// Workers are the handlers Work, WorkTask, WorkNext and Drain run, by
	// kind. Without them an Env only enqueues and checks.
	Workers *weft.Workers
	// Start is the clock's first reading, kept to the microsecond as the
	// stores keep times. Default: the current time.
	Start time.Time
	// Logger receives the store's and the client's logs. Default: none.
	Logger *slog.Logger
	// DrainLimit bounds the attempts one Drain runs. Default
	// DefaultDrainLimit.
	DrainLimit int
}

// DefaultDrainLimit is Options.DrainLimit's default.
const DefaultDrainLimit = 10000

// Env is a throwaway Weft for one test. Its methods are meant for the
// test's goroutine; a handler that Work runs may use Client.
type Env struct {
	st     store.Store
	client *weft.Client
	clock  *clock
	kinds  map[string]engine.Kind
	// names are the kinds with a worker, sorted: the claim filter.
	names []string
	// once are the kinds registered NotResumable.
	once       []string
	drainLimit int
	close      func() error
}

// clock is an Env's time: it reads the same until the Env moves it.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// New opens an Env on a SQLite file in t's temporary directory and closes
// it when the test ends; it fails t if the Env cannot be opened.
func New(t testing.TB, opts *Options) *Env {
	t.Helper()
	e, err := Open(context.Background(), opts)
	return mustEnv(t, e, err)
}

// NewPostgres opens an Env on a schema of its own on the PostgreSQL server
// at serverURL, dropped when the test ends; it fails t if the Env cannot be
// opened.
func NewPostgres(t testing.TB, serverURL string, opts *Options) *Env {
	t.Helper()
	e, err := OpenPostgres(context.Background(), serverURL, opts)
	return mustEnv(t, e, err)
}

func mustEnv(t testing.TB, e *Env, err error) *Env {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("weftest: close: %v", err)
		}
	})
	return e
}

// Open opens an Env on a new SQLite file in a temporary directory, which
// Close removes. New is the same for a test.
func Open(ctx context.Context, opts *Options) (*Env, error) {
	o := withDefaults(opts)
	dir, err := os.MkdirTemp("", "weftest-")
	if err != nil {
		return nil, fmt.Errorf("weftest: %w", err)
	}
	c := &clock{now: o.Start}
	// The file is thrown away: losing it to a power failure costs nothing,
	// so commits are not synced.
	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"), &sqlite.Options{Synchronous: sqlite.SyncNormal, Now: c.Now, Logger: o.Logger})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("weftest: open SQLite: %w", err)
	}
	return newEnv(st, c, o, func() error { return os.RemoveAll(dir) })
}

// OpenPostgres opens an Env on a new schema of the PostgreSQL server at
// serverURL (any database the URL's user may create a schema in); Close
// drops the schema. NewPostgres is the same for a test.
func OpenPostgres(ctx context.Context, serverURL string, opts *Options) (*Env, error) {
	o := withDefaults(opts)
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("weftest: PostgreSQL URL: %w", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := pgx.Identifier{"weftest_" + hex.EncodeToString(b[:])}.Sanitize()
	if err := pgExec(ctx, serverURL, "CREATE SCHEMA "+schema); err != nil {
		return nil, err
	}
	drop := func() error { return pgExec(context.Background(), serverURL, "DROP SCHEMA "+schema+" CASCADE") }
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	c := &clock{now: o.Start}
	st, err := postgres.Open(ctx, u.String(), &postgres.Options{Now: c.Now, Logger: o.Logger})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("weftest: open PostgreSQL: %w", err), drop())
	}
	return newEnv(st, c, o, drop)
}

// pgExec runs one statement on its own connection.
func pgExec(ctx context.Context, serverURL, sql string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("weftest: connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("weftest: %s: %w", sql, err)
	}
	return nil
}

func withDefaults(opts *Options) Options {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	o.Start = o.Start.Round(0).Truncate(time.Microsecond)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DrainLimit <= 0 {
		o.DrainLimit = DefaultDrainLimit
	}
	return o
}

func newEnv(st store.Store, c *clock, o Options, cleanup func() error) (*Env, error) {
	client, err := weft.NewClient(st, &weft.Config{Workers: o.Workers, Logger: o.Logger, Now: c.Now})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("weftest: %w", err), st.Close(), cleanup())
	}
	e := &Env{st: st, client: client, clock: c, kinds: map[string]engine.Kind{}, drainLimit: o.DrainLimit}
	e.close = func() error { return errors.Join(st.Close(), cleanup()) }
	if o.Workers != nil {
		e.kinds = o.Workers.EngineKinds()
	}
	for name, k := range e.kinds {
		e.names = append(e.names, name)
		if k.NotResumable {
			e.once = append(e.once, name)
		}
	}
	slices.Sort(e.names)
	slices.Sort(e.once)
	return e, nil
}

// Close closes the store and throws it away.
func (e *Env) Close() error { return e.close() }

// Client is a client on the Env's store, reading the Env's clock: hand it
// to the code under test to enqueue with. It is not started; tasks run
// when the test runs them.
func (e *Env) Client() *weft.Client { return e.client }

// Store is the Env's store.
func (e *Env) Store() store.Store { return e.st }

// Now reads the Env's clock, which the store and the client read too.
func (e *Env) Now() time.Time { return e.clock.Now() }

// ErrClockBackwards: the Env's clock only moves forward.
var ErrClockBackwards = errors.New("weftest: the clock does not move backwards")

// Advance moves the clock forward by d; see AdvanceTo.
func (e *Env) Advance(ctx context.Context, d time.Duration) error {
	return e.AdvanceTo(ctx, e.Now().Add(d))
}

// AdvanceTo moves the clock forward to t. Delayed tasks and retries whose
// time has come are then ready to run. Schedules enqueue each slot passed
// on the way, at its own time, as the cron reconciler of a server that
// ran all along would: the clock stops at every slot that falls before t.
func (e *Env) AdvanceTo(ctx context.Context, t time.Time) error {
	if t.Before(e.Now()) {
		return fmt.Errorf("%w: %s is before %s", ErrClockBackwards, t, e.Now())
	}
	for {
		if err := e.client.RunSchedules(ctx); err != nil {
			return fmt.Errorf("weftest: run schedules at %s: %w", e.Now(), err)
		}
		scs, err := e.client.Schedules(ctx)
		if err != nil {
			return fmt.Errorf("weftest: read schedules: %w", err)
		}
		// A schedule still due now has a spec the cron reconciler cannot
		// read (it logs it): only later slots stop the clock.
		now, next := e.Now(), t
		for _, sc := range scs {
			if !sc.Paused && sc.NextAt.After(now) && sc.NextAt.Before(next) {
				next = sc.NextAt
			}
		}
		if next.Equal(t) {
			break
		}
		e.clock.set(next)
	}
	e.clock.set(t)
	if err := e.client.RunSchedules(ctx); err != nil {
		return fmt.Errorf("weftest: run schedules at %s: %w", t, err)
	}
	return nil
}
