package maintenance_test

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/maintenance"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// syncBuffer collects log output across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// staleHold writes, behind the store's back, a slot held on the key by a
// task that does not run: the drift the reconciler exists to correct.
func staleHold(t *testing.T, path, limit, key string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ref := store.LimitRef{Limit: limit, Key: key}
	if _, err := db.Exec("INSERT INTO weft_limit_holds (task_id, id) VALUES (?, ?)", "no-such-task", ref.ID()); err != nil {
		t.Fatal(err)
	}
}

func TestLimitsReconcilerReportsDrift(t *testing.T) {
	ctx := context.Background()
	path, st := testenv.SQLite(t)
	if _, err := st.SetLimit(ctx, store.Limit{Name: "per-customer", Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k", LimitKeys: map[string]string{"per-customer": "acme"}}}); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	tick := maintenance.Limits(st, slog.New(slog.NewTextHandler(logs, nil)))
	before := maintenance.LimitCorrections()

	// Counters kept by the store's own transactions have nothing to
	// correct.
	if err := tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := maintenance.LimitCorrections(); got != before || strings.Contains(logs.String(), "WARN") {
		t.Fatalf("a clean store: corrections %+v (were %+v), logs:\n%s", got, before, logs)
	}

	staleHold(t, path, "per-customer", "acme")
	if err := tick(ctx); err != nil {
		t.Fatal(err)
	}
	want := before
	want.Keys++
	want.StaleHolds++
	if got := maintenance.LimitCorrections(); got != want {
		t.Fatalf("corrections = %+v, want %+v", got, want)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "per-customer/acme") || !strings.Contains(out, "stale_holds=1") {
		t.Fatalf("the drift is not logged at warn with its key:\n%s", out)
	}
	// Once corrected, it stays so.
	if err := tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := maintenance.LimitCorrections(); got != want {
		t.Fatalf("a second pass corrected again: %+v, want %+v", got, want)
	}
}

// TestClientRunsLimitsReconciler checks the wiring: a started client's
// maintenance leader runs the reconciler on Config.LimitsInterval.
func TestClientRunsLimitsReconciler(t *testing.T) {
	ctx := context.Background()
	path, st := testenv.SQLite(t)
	if _, err := st.SetLimit(ctx, store.Limit{Name: "openai", Rate: 10, Period: time.Second, Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	staleHold(t, path, "openai", "default")
	logs := &syncBuffer{}
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[noopArgs]) error { return nil })
	c, err := weft.NewClient(st, &weft.Config{Workers: ws, LimitsInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "openai/default") {
		if time.Now().After(deadline) {
			t.Fatalf("the reconciler did not report the drift within 5s; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLimitsIntervalFromEnvironment(t *testing.T) {
	t.Setenv("WEFT_LIMITS_INTERVAL", "soon")
	_, st := testenv.SQLite(t)
	if _, err := weft.NewClient(st, &weft.Config{Logger: testenv.Logger()}); err == nil || !strings.Contains(err.Error(), "WEFT_LIMITS_INTERVAL") {
		t.Fatalf("a malformed WEFT_LIMITS_INTERVAL: %v, want an error naming it", err)
	}
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }
