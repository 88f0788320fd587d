//go:build linux

package resilience_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
)

// testClaimEpochAfterCrash checks that a lease epoch handed out by a claim
// is never handed out again, even when PostgreSQL crashes right after the
// claim. The PostgreSQL Claim commits with synchronous_commit = off, so a
// crash can roll back a claim whose tasks a worker is already running; with
// an epoch stepped by one, the next claim gave the same epoch to another
// owner and the first worker's fenced writes passed as the second's (this
// test found it). Claims now step the epoch by a random amount.
func testClaimEpochAfterCrash(t *testing.T, srv *pgServer) {
	ctx := context.Background()
	url := pgtest.NewSchema(t, srv.URL())
	// A lazy WAL writer widens the window in which an asynchronous commit
	// is not yet on disk from 200ms to 10s, so that the crash below
	// reliably lands inside it.
	setWALWriterDelay := func(v string) {
		c, err := pgx.Connect(ctx, srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		q := "ALTER SYSTEM RESET wal_writer_delay"
		if v != "" {
			q = "ALTER SYSTEM SET wal_writer_delay = '" + v + "'"
		}
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	setWALWriterDelay("10s")
	t.Cleanup(func() { setWALWriterDelay("") })

	st, err := postgres.Open(ctx, url, &postgres.Options{PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "resilience.job"}})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(owner string) *store.Task {
		t.Helper()
		tasks, err := st.Claim(ctx, store.ClaimRequest{Owner: owner, Queues: []store.QueueClaim{{Queue: "default", Limit: 1}}, LeaseTTL: time.Minute})
		if err != nil || len(tasks) != 1 {
			t.Fatalf("claim by %s: %d tasks, %v", owner, len(tasks), err)
		}
		return tasks[0]
	}
	first := claim("node-a")
	// The server crashes before anything else commits.
	if out, err := srv.ctl("stop", "-m", "immediate", "-w", "-t", "30"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
	if out, err := srv.ctl("start", "-w", "-t", "60"); err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
	if err := srv.waitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var after *store.Task
	if !eventually(10*time.Second, func() bool { after, err = st.Get(ctx, res[0].ID); return err == nil }) {
		t.Fatal(err)
	}
	t.Logf("node-a claimed epoch %d; after the crash the task is %s at epoch %d", first.LeaseEpoch, after.State, after.LeaseEpoch)
	if after.State == store.StatePending {
		second := claim("node-b")
		// The lost claim's epoch never reached the table, so the next
		// one need not be larger; it must differ.
		if second.LeaseEpoch == first.LeaseEpoch {
			t.Errorf("node-b's claim after the crash got epoch %d, already handed to node-a (its claim was acknowledged, then lost)", second.LeaseEpoch)
		}
		// node-a, still running its attempt, records an outcome under
		// the epoch it was given: it should be refused as stale.
		errs, err := st.Finish(ctx, []store.Outcome{{TaskID: first.ID, Epoch: first.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(errs[0].Err, store.ErrLeaseLost) {
			t.Errorf("node-a's outcome under its lost claim's epoch %d was recorded (error %v) although node-b holds the task", first.LeaseEpoch, errs[0].Err)
		}
	}
}
