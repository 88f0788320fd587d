package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
)

func expectWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
		t.Fatalf("no wakeup after %s", what)
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
	dsn := newSchema(t, serverURL(t))
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
	tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() AND datname = current_database()`)
	if err != nil || tag.RowsAffected() == 0 {
		t.Fatalf("terminate the listener: %v (%d rows)", err, tag.RowsAffected())
	}
	expectWake(t, ch, "the listener lost its connection")
	// Listening again: a later commit elsewhere still wakes this store.
	deadline := time.Now().Add(5 * time.Second)
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

// In poll-only mode (for transaction poolers) nothing LISTENs; a store
// still wakes its own subscribers on its own commits.
func TestPollOnly(t *testing.T) {
	ctx := context.Background()
	dsn := newSchema(t, serverURL(t))
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
	// Commits by others are left to the engine's poll: no wakeup.
	other, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	drain(ch)
	if _, err := other.Enqueue(ctx, []store.NewTask{{Kind: "k"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("a poll-only store was woken by another store's NOTIFY")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	if _, err := postgres.Open(context.Background(), "postgres://%zz", nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad URL: %v, want ErrInvalid", err)
	}
}
