package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

type pollArgs struct{}

func (pollArgs) Kind() string { return "poll" }

// With the change watcher effectively off, a commit by another store is
// found by the safety-net poll alone.
func TestSafetyNetPoll(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	deaf, err := sqlite.Open(ctx, path, &sqlite.Options{WatchInterval: time.Hour, NoFileWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	other, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	started := make(chan time.Time, 2)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[pollArgs]) error {
		started <- time.Now()
		return nil
	})
	// A first task, there before the start, is taken by the first claim.
	// That claim drains the queue, and nothing but a wakeup or the poll
	// makes the engine claim from it again: with the watcher off, a commit
	// by another store can only be found by the poll.
	if _, err := deaf.Enqueue(ctx, []store.NewTask{{Kind: "poll"}}); err != nil {
		t.Fatal(err)
	}
	const poll = 300 * time.Millisecond
	c, err := weft.NewClient(deaf, &weft.Config{Workers: ws, PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	const within = time.Minute
	select {
	case <-started:
	case <-time.After(within):
		t.Fatalf("the task there at the start did not run within %s", within)
	}
	begin := time.Now()
	if _, err := other.Enqueue(ctx, []store.NewTask{{Kind: "poll"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-started:
		t.Logf("found %s after the enqueue by a %s poll", at.Sub(begin), poll)
	case <-time.After(within):
		t.Fatalf("the safety-net poll did not pick the task up within %s", within)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := sqlite.Open(ctx, filepath.Join(dir, "missing", "weft.db"), nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("open in a missing directory: %v", err)
	}
	if _, err := sqlite.Open(ctx, "", nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("open of an empty path: %v, want ErrInvalid", err)
	}
	if _, err := sqlite.Open(ctx, filepath.Join(dir, "a.db"), &sqlite.Options{Synchronous: "OFF"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("synchronous OFF: %v, want ErrInvalid", err)
	}
	if _, err := sqlite.Open(ctx, filepath.Join(dir, "nul\x00.db"), nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("path with NUL: %v, want ErrInvalid", err)
	}
	// A database migrated by a newer build is refused, not damaged.
	path := filepath.Join(dir, "newer.db")
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sqlite.OpenSQL(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO weft_migrations (version, name, applied_at) VALUES (9999, 'future', 0)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlite.Open(ctx, path, nil); err == nil || !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// Reopening a database applies no migration twice and keeps its tasks.
func TestReopenKeepsTasks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k"}}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("enqueue after close: %v, want ErrClosed", err)
	}
	st, err = sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, err := st.Get(ctx, res[0].ID); err != nil || got.State != store.StatePending {
		t.Fatalf("after reopen: %v %v", got, err)
	}
	db, _ := sqlite.OpenSQL(path, nil)
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM weft_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := sqlite.Migrations()
	if n != len(ms) {
		t.Fatalf("%d migrations recorded, want %d", n, len(ms))
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q (%v), want wal", mode, err)
	}
}
