package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/weftworks/weft"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
)

// wakeWithin bounds how long a wakeup may take: generous, for a loaded
// machine; it proves the path, and latency is measured in benchmarks.
const wakeWithin = 30 * time.Second

func expectWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeWithin):
		t.Fatalf("no wakeup within %s after %s", wakeWithin, what)
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond):
			return
		}
	}
}

// The listener's connection is killed by the server: it reconnects, wakes
// everyone once (notifications sent meanwhile were lost), and listens again.
func TestListenerReconnects(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	other, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ch, stop := st.Subscribe()
	defer stop()
	drain(ch)
	if _, err := other.Enqueue(ctx, []store.NewTask{{Kind: "k"}}); err != nil {
		t.Fatal(err)
	}
	expectWake(t, ch, "a commit by another store")

	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// Only this test's listeners (their channels name its schema): the
	// suite's other tests run at the same time on the same server.
	tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN%' AND position(current_schema() in query) > 0
		AND pid <> pg_backend_pid() AND datname = current_database()`)
	if err != nil || tag.RowsAffected() == 0 {
		t.Fatalf("terminate the listener: %v (%d rows)", err, tag.RowsAffected())
	}
	expectWake(t, ch, "the listener lost its connection")
	// Listening again: a later commit elsewhere still wakes this store.
	deadline := time.Now().Add(wakeWithin)
	for {
		drain(ch)
		if _, err := other.Enqueue(ctx, []store.NewTask{{Kind: "k"}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no wakeups after the listener reconnected")
		}
	}
}

// In poll-only mode (for transaction poolers) nothing LISTENs (see
// TestPollOnlyStartsNoListener); a store still wakes its own subscribers on
// its own commits, and finds others' through the engine's poll.
func TestPollOnly(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(ctx, dsn, &postgres.Options{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ch, stop := st.Subscribe()
	defer stop()
	if _, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k"}}); err != nil {
		t.Fatal(err)
	}
	expectWake(t, ch, "an enqueue through the store itself")
	// Commits by others are left to the engine's poll, which finds them.
	other, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	started := make(chan string, 2)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[pollArgs]) error {
		started <- tk.ID
		return nil
	})
	c, err := weft.NewClient(st, &weft.Config{Workers: ws, PollInterval: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	res, err := other.Enqueue(ctx, []store.NewTask{{Kind: pollArgs{}.Kind()}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case id := <-started:
			if id == res[0].ID {
				return
			}
		case <-time.After(wakeWithin):
			t.Fatalf("a task enqueued by another store did not run within %s", wakeWithin)
		}
	}
}

type pollArgs struct{}

func (pollArgs) Kind() string { return "poll" }

func TestOpenRejectsBadURL(t *testing.T) {
	if _, err := postgres.Open(context.Background(), "postgres://%zz", nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad URL: %v, want ErrInvalid", err)
	}
}

type sqlTxArgs struct{}

func (sqlTxArgs) Kind() string { return "sqltx" }

// weft.EnqueueTx accepts a *sql.Tx opened through pgx's database/sql driver
// as well as a pgx.Tx.
func TestEnqueueInDatabaseSQLTx(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := weft.NewClient(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, commit := range []bool{false, true} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := weft.EnqueueTx(ctx, c, tx, sqlTxArgs{}, &weft.EnqueueOpts{UniqueKey: "once"})
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		_, getErr := c.Get(ctx, res.ID)
		if commit != (getErr == nil) {
			t.Fatalf("commit=%v: get after the transaction: %v", commit, getErr)
		}
	}
	stats, err := c.Stats(ctx)
	if err != nil || len(stats) != 1 || stats[0].Counts[weft.StatePending] != 1 {
		t.Fatalf("stats after one committed enqueue: %+v, %v", stats, err)
	}
}

func TestMigrateStatusDownUp(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k"}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ms, err := postgres.Migrations()
	if err != nil || len(ms) < 2 {
		t.Fatalf("migrations = %d, %v", len(ms), err)
	}
	for _, m := range ms {
		if m.Up == "" || m.Down == "" {
			t.Fatalf("migration %d lacks an up or a down", m.Version)
		}
	}
	status, err := postgres.MigrationStatus(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if s.AppliedAt.IsZero() {
			t.Fatalf("migration %d not applied after Open", s.Version)
		}
	}
	if err := postgres.Migrate(ctx, dsn, 1); err != nil {
		t.Fatal(err)
	}
	status, _ = postgres.MigrationStatus(ctx, dsn)
	if status[0].AppliedAt.IsZero() || !status[1].AppliedAt.IsZero() {
		t.Fatalf("after migrating down to 1: %+v", status)
	}
	// Back up, and the data is still there, counts included.
	st, err = postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil || len(stats) != 1 || stats[0].Counts[store.StatePending] != 1 {
		t.Fatalf("stats after down and up: %+v, %v", stats, err)
	}
	if err := postgres.Migrate(ctx, dsn, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "x"); err == nil {
		t.Fatal("tables still there after migrating down to 0")
	}
}
