//go:build linux

package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// fillArgs is the task of the disk tests: a 2 KiB pad makes every task
// cost the filesystem something.
type fillArgs struct {
	Key string `json:"key"`
	Pad string `json:"pad"`
}

func (fillArgs) Kind() string { return "resilience.fill" }

var pad = strings.Repeat("x", 2048)

// sqliteRig is a SQLite store with a started client working its tasks,
// and the producer's record of what was acknowledged.
type sqliteRig struct {
	t      *testing.T
	path   string
	logs   *logTally
	st     *sqlite.Store
	client *weft.Client
	// acks maps each acknowledged key to the id it was given.
	acks map[string]string
	seq  int
}

func openRig(t *testing.T, path string, logs *logTally) *sqliteRig {
	t.Helper()
	r := &sqliteRig{t: t, path: path, logs: logs, acks: map[string]string{}}
	if err := r.open(); err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(r.close)
	return r
}

// open opens the store and starts a client with four workers on it.
func (r *sqliteRig) open() error {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, r.path, &sqlite.Options{Logger: r.logs.Logger()})
	if err != nil {
		return err
	}
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[fillArgs]) error { return nil })
	c, err := weft.NewClient(st, &weft.Config{
		Workers: ws, Logger: r.logs.Logger(),
		Queues:       map[string]weft.QueueConfig{"default": {MaxWorkers: 4}},
		PollInterval: 200 * time.Millisecond,
	})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		st.Close()
		return err
	}
	r.st, r.client = st, c
	return nil
}

// close stops the client and closes the store, if open.
func (r *sqliteRig) close() {
	if r.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.client.Stop(ctx); err != nil {
		r.t.Logf("stop: %v", err)
	}
	if err := r.st.Close(); err != nil {
		r.t.Logf("close: %v", err)
	}
	r.client, r.st = nil, nil
}

// enqueue enqueues the next n tasks as one batch, recording them if
// acknowledged.
func (r *sqliteRig) enqueue(n int) error {
	params := make([]weft.EnqueueParams, n)
	keys := make([]string, n)
	for i := range params {
		r.seq++
		keys[i] = fmt.Sprintf("k%06d", r.seq)
		params[i] = weft.EnqueueParams{Args: fillArgs{Key: keys[i], Pad: pad}, Opts: &weft.EnqueueOpts{UniqueKey: keys[i]}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.client.EnqueueMany(ctx, params)
	if err != nil {
		return err
	}
	for i, key := range keys {
		r.acks[key] = res[i].ID
	}
	return nil
}

// enqueueOne enqueues one task.
func (r *sqliteRig) enqueueOne() error { return r.enqueue(1) }

// fillUp enqueues batches of ten until one fails and returns that error.
// The pauses between batches let the checkpointer copy the WAL into the
// database file, as it would under a steady load, so that the file grows
// and not only the WAL. A few more attempts follow, which should fail too
// (the filesystem is still full); the number that did not is returned.
func (r *sqliteRig) fillUp() (int, error) {
	r.t.Helper()
	for range 100_000 {
		if err := r.enqueue(10); err != nil {
			more := 0
			for range 5 {
				if r.enqueueOne() == nil {
					more++
				}
			}
			return more, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatal("100,000 batches and the filesystem is not full")
	return 0, nil
}

// checkStored checks that every acknowledged task is stored under its id
// and that nothing else is: a refused enqueue wrote nothing.
func (r *sqliteRig) checkStored() {
	r.t.Helper()
	ctx := context.Background()
	for key, id := range r.acks {
		task, err := r.st.Get(ctx, id)
		if err != nil {
			r.t.Errorf("acknowledged task %s (%s): %v", key, id, err)
			continue
		}
		if task.UniqueKey != key {
			r.t.Errorf("task %s has key %q, want %q", id, task.UniqueKey, key)
		}
	}
	if n := r.total(); n != len(r.acks) {
		r.t.Errorf("%d tasks stored, %d acknowledged", n, len(r.acks))
	}
}

// total counts the stored tasks in every state.
func (r *sqliteRig) total() int {
	r.t.Helper()
	stats, err := r.st.Stats(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for _, q := range stats {
		for _, c := range q.Counts {
			n += int(c)
		}
	}
	return n
}

// completed counts completed tasks.
func (r *sqliteRig) completed() int {
	r.t.Helper()
	stats, err := r.st.Stats(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for _, q := range stats {
		n += int(q.Counts[store.StateCompleted])
	}
	return n
}

// waitCompleted waits until every acknowledged task is completed.
func (r *sqliteRig) waitCompleted(d time.Duration) {
	r.t.Helper()
	start := time.Now()
	if !eventually(d, func() bool { return r.completed() == len(r.acks) }) {
		r.t.Errorf("%d of %d acknowledged tasks completed after %s", r.completed(), len(r.acks), d)
		return
	}
	r.t.Logf("all %d acknowledged tasks completed (%s after asking)", len(r.acks), time.Since(start).Round(time.Millisecond))
}

// describeErr says what a caller can recognise in err.
func describeErr(err error) string {
	var se sqlite3.Error
	s := fmt.Sprintf("%q", err.Error())
	if errors.As(err, &se) {
		s += fmt.Sprintf(" — wraps sqlite3.Error{Code: %d (%v), ExtendedCode: %d, SystemErrno: %d (%v)}", se.Code, se.Code, se.ExtendedCode, se.SystemErrno, se.SystemErrno)
	} else {
		s += fmt.Sprintf(" — %T, no sqlite3.Error inside", err)
	}
	s += fmt.Sprintf("; errors.Is ENOSPC %v, EROFS %v, store.ErrStorageFull %v, store.ErrReadOnly %v",
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EROFS), errors.Is(err, store.ErrStorageFull), errors.Is(err, store.ErrReadOnly))
	return s
}

// checkFullError requires a disk-full error a caller can recognise.
func checkFullError(t *testing.T, err error) {
	t.Helper()
	t.Logf("enqueue on the full filesystem failed: %s", describeErr(err))
	var se sqlite3.Error
	if !errors.As(err, &se) || se.Code != sqlite3.ErrFull {
		t.Errorf("the error does not wrap a sqlite3.Error with code SQLITE_FULL: %v", err)
	}
	if !errors.Is(err, store.ErrStorageFull) {
		t.Errorf("the error is not store.ErrStorageFull: %v", err)
	}
	if !strings.Contains(err.Error(), "full") {
		t.Errorf("the error does not say the disk is full: %v", err)
	}
}

// TestSQLiteDiskFull fills the filesystem under a running SQLite store:
// enqueues must fail with a recognisable disk-full error, every task
// acknowledged before must be intact, the file must pass integrity_check,
// and once space returns — a file deleted, or the filesystem grown — the
// same store (not reopened) must take enqueues and complete every task.
func TestSQLiteDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	path := filepath.Join(dir, "weft.db")
	logs := newLogTally()
	defer logs.Report(t, "log of the store and client")
	r := openRig(t, path, logs)

	// 1. A filler file leaves 1 MiB; enqueue until
	// the filesystem is full.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, freeBytes(t, dir)-1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	more, err := r.fillUp()
	t.Logf("filesystem full after %d acknowledged tasks (%s; %d KiB free); %d of 5 further enqueues succeeded",
		len(r.acks), fileSizes(path), freeBytes(t, dir)>>10, more)
	checkFullError(t, err)
	r.checkStored()
	if got := integrityCheck(t, path); got != "ok" {
		t.Errorf("integrity_check on the full filesystem: %s", got)
	}

	// 2. Space comes back by deleting the filler: the same store recovers.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	took, err := retryFor(10*time.Second, r.enqueueOne)
	if err != nil {
		t.Fatalf("no enqueue succeeded within 10s of freeing space, without reopening: %s", describeErr(err))
	}
	t.Logf("after deleting the filler, an enqueue succeeded %s later, without reopening the store", took.Round(time.Millisecond))
	r.waitCompleted(30 * time.Second)
	r.checkStored()

	// 3. Fill the filesystem with tasks alone, then grow it.
	more, err = r.fillUp()
	t.Logf("filesystem full again after %d acknowledged tasks (%s); %d of 5 further enqueues succeeded", len(r.acks), fileSizes(path), more)
	checkFullError(t, err)
	r.checkStored()
	if err := remount(dir, 0, "size=8m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	took, err = retryFor(10*time.Second, r.enqueueOne)
	if err != nil {
		t.Fatalf("no enqueue succeeded within 10s of growing the filesystem, without reopening: %s", describeErr(err))
	}
	t.Logf("after growing the filesystem to 8 MiB, an enqueue succeeded %s later, without reopening the store", took.Round(time.Millisecond))
	for range 5 {
		if err := r.enqueue(10); err != nil {
			t.Fatalf("enqueue after recovery: %v", err)
		}
	}
	r.waitCompleted(30 * time.Second)
	r.checkStored()

	// 4. Closed and reopened, the file is sound and holds every task.
	r.close()
	if got := integrityCheck(t, path); got != "ok" {
		t.Errorf("integrity_check after closing: %s", got)
	}
	if err := r.open(); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	r.checkStored()
	if n := r.completed(); n != len(r.acks) {
		t.Errorf("after reopening, %d of %d tasks completed", n, len(r.acks))
	}
	t.Logf("claims and outcomes that failed meanwhile: %d claim retries, %d outcome-recording retries (the engine retried them; no task was left running)",
		logs.Count("claim failed"), logs.Count("recording outcomes failed"))
}
