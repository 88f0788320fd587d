package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
)

// A transaction that took an event's seq and commits after a later one
// must not be skipped by a reader that follows the log: EventsAfter holds
// back every event above it until it ends.
func TestEventsAfterWaitsForOpenTransactions(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first, err := st.Enqueue(ctx, []store.NewTask{{Kind: "first"}})
	if err != nil {
		t.Fatal(err)
	}
	page, err := st.EventsAfter(ctx, store.EventFilter{})
	if err != nil || len(page.Events) != 1 || page.Events[0].TaskID != first[0].ID {
		t.Fatalf("events = %+v, %v; want the first task's created event", page, err)
	}
	cursor := page.Next

	// An application's transaction takes the next seq and stays open...
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.TxEnqueuer().EnqueueTx(ctx, tx, []store.NewTask{{Kind: "held"}})
	if err != nil {
		t.Fatal(err)
	}
	// ...while a later seq commits.
	later, err := st.Enqueue(ctx, []store.NewTask{{Kind: "later"}})
	if err != nil {
		t.Fatal(err)
	}
	page, err = st.EventsAfter(ctx, store.EventFilter{After: cursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 0 || page.Next != cursor {
		t.Fatalf("with a transaction open below it, the later event was read: %+v", page)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A sample settles once the transactions it saw (anywhere on the
	// server) have ended.
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		page, err = st.EventsAfter(ctx, store.EventFilter{After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			got = append(got, e.TaskID)
		}
		cursor = page.Next
	}
	if len(got) != 2 || got[0] != held[0].ID || got[1] != later[0].ID {
		t.Fatalf("after the commit: tasks %v, want %s then %s", got, held[0].ID, later[0].ID)
	}
}
