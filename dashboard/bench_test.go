package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/dashboard"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// BenchmarkPages times every page of the dashboard on a large table:
// WEFT_BENCH_TASKS tasks (default 1,000,000) created over the last day,
// 97% completed, 1% each failed (with an error), pending and cancelled,
// in three queues and five kinds, and a day of rollups; on SQLite and on
// PostgreSQL (WEFT_BENCH_BACKENDS=sqlite or postgres picks one). Each
// page's p50 and p95 are reported in milliseconds.
//
//	go test ./dashboard -run '^$' -bench Pages -benchtime 20x
func BenchmarkPages(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("WEFT_BENCH_TASKS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 200 {
			b.Fatalf("WEFT_BENCH_TASKS=%q: want a number of at least 200", v)
		}
	}
	backends := os.Getenv("WEFT_BENCH_BACKENDS") // "sqlite", "postgres", or both when empty
	b.Run("sqlite", func(b *testing.B) {
		if backends == "postgres" {
			b.Skip("WEFT_BENCH_BACKENDS=postgres")
		}
		path := filepath.Join(b.TempDir(), "weft.db")
		st, err := sqlite.Open(context.Background(), path, &sqlite.Options{Logger: testenv.Logger()})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		db, err := sqlite.OpenSQL(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		seed := func(q string, args ...any) error { _, err := db.Exec(q, args...); return err }
		benchPages(b, st, n, seed, sqliteSeed)
	})
	b.Run("postgres", func(b *testing.B) {
		if backends == "sqlite" {
			b.Skip("WEFT_BENCH_BACKENDS=sqlite")
		}
		dsn := pgtest.NewSchema(b, pgtest.ServerURL(b))
		st, err := postgres.Open(context.Background(), dsn, &postgres.Options{Logger: testenv.Logger()})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		conn, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(context.Background())
		seed := func(q string, args ...any) error { _, err := conn.Exec(context.Background(), q, args...); return err }
		benchPages(b, st, n, seed, postgresSeed, "ANALYZE weft_tasks") // as autovacuum does after a bulk insert
	})
}

// The seeding statements: ids are UUIDv7 of their creation time, as the
// store makes them. Arguments: the count, the first creation time and the
// step between two, in milliseconds.
const (
	sqliteSeed = `WITH RECURSIVE seq(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1 - 1)
	INSERT INTO weft_tasks (id, kind, queue, args, state, run_at, attempt, max_attempts, errors, created_at, attempted_at, finalized_at)
	SELECT printf('%08x-%04x-7%03x-8000-%012x', (?2 + x * ?3) >> 16, (?2 + x * ?3) & 65535, x % 4096, x),
		'kind' || (x % 5), 'q' || (x % 3), CAST('{"customer":{"id":' || (x % 1000) || '}}' AS BLOB),
		CASE x % 100 WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' WHEN 2 THEN 'cancelled' ELSE 'completed' END,
		(?2 + x * ?3) * 1000, 1, 1,
		CASE WHEN x % 100 = 0 THEN CAST('[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"boom ' || (x % 7) || '"}]' AS BLOB) END,
		(?2 + x * ?3) * 1000, (?2 + x * ?3) * 1000, CASE WHEN x % 100 = 1 THEN NULL ELSE (?2 + x * ?3) * 1000 + 5000 END
	FROM seq`
	postgresSeed = `INSERT INTO weft_tasks (id, kind, queue, args, state, run_at, attempt, max_attempts, errors, created_at, attempted_at, finalized_at)
	SELECT lpad(to_hex(($2::bigint + x * $3::bigint) >> 16), 8, '0') || '-' || lpad(to_hex(($2::bigint + x * $3::bigint) & 65535), 4, '0')
			|| '-7' || lpad(to_hex(x % 4096), 3, '0') || '-8000-' || lpad(to_hex(x), 12, '0'),
		'kind' || (x % 5), 'q' || (x % 3), ('{"customer":{"id":' || (x % 1000) || '}}')::jsonb,
		CASE x % 100 WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' WHEN 2 THEN 'cancelled' ELSE 'completed' END,
		($2::bigint + x * $3::bigint) * 1000, 1, 1,
		CASE WHEN x % 100 = 0 THEN ('[{"attempt":1,"at":"2026-01-01T00:00:00Z","error":"boom ' || (x % 7) || '"}]')::jsonb END,
		($2::bigint + x * $3::bigint) * 1000, ($2::bigint + x * $3::bigint) * 1000,
		CASE WHEN x % 100 = 1 THEN NULL ELSE ($2::bigint + x * $3::bigint) * 1000 + 5000 END
	FROM generate_series(0, $1::bigint - 1) AS x`
)

func benchPages(b *testing.B, st store.Store, n int, seed func(q string, args ...any) error, insert string, after ...string) {
	ctx := context.Background()
	start := time.Now().Add(-24 * time.Hour)
	step := max(int64(24*time.Hour/time.Millisecond)/int64(n), 1)
	began := time.Now()
	if err := seed(insert, n, start.UnixMilli(), step); err != nil {
		b.Fatalf("seed: %v", err)
	}
	for _, q := range append([]string{"DELETE FROM weft_counts",
		"INSERT INTO weft_counts (queue, state, n) SELECT queue, state, count(*) FROM weft_tasks GROUP BY queue, state"}, after...) {
		if err := seed(q); err != nil {
			b.Fatalf("count: %v", err)
		}
	}
	// A day of rollups, one row a minute per queue and kind.
	var rows []store.Rollup
	var wait, run store.Histogram
	for i := range 50 {
		wait.Observe(time.Duration(i) * time.Millisecond)
		run.Observe(time.Duration(i*i) * time.Millisecond)
	}
	for m := start.Truncate(time.Minute); m.Before(time.Now()); m = m.Add(time.Minute) {
		for q := range 3 {
			for k := range 5 {
				rows = append(rows, store.Rollup{Minute: m, Queue: fmt.Sprintf("q%d", q), Kind: fmt.Sprintf("kind%d", k),
					Enqueued: 50, Completed: 48, Failed: 1, Retried: 1, Wait: wait, Run: run})
			}
		}
	}
	if ok, err := st.AddRollups(ctx, 0, 1, rows); err != nil || !ok {
		b.Fatalf("rollups: %v %v", ok, err)
	}
	b.Logf("seeded %d tasks and %d rollups in %v", n, len(rows), time.Since(began).Round(time.Millisecond))

	client, err := weft.NewClient(st, &weft.Config{Logger: testenv.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	d, err := dashboard.New(dashboard.Config{Client: client, Logger: testenv.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	failed, err := st.List(ctx, store.ListParams{States: []store.State{store.StateFailed}, Limit: 1})
	if err != nil || len(failed) == 0 {
		b.Fatalf("no failed task: %v", err)
	}
	pages := []string{
		"/ui/", "/ui/?range=24h", "/ui/queues",
		"/ui/tasks", "/ui/tasks?order=oldest", "/ui/tasks?state=failed", "/ui/tasks?state=pending&queue=q1",
		"/ui/tasks?kind=kind3&queue=q0", "/ui/tasks?error=boom+3", "/ui/tasks?arg_path=customer.id&arg_value=7",
		"/ui/tasks?since=" + time.Now().Add(-2*time.Hour).UTC().Format("2006-01-02T15:04"),
		"/ui/tasks/" + failed[0].ID, "/ui/schedules", "/ui/workers", "/ui/flows", "/ui/waits",
	}
	for _, p := range pages {
		b.Run(p, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				rec := httptest.NewRecorder()
				t0 := time.Now()
				d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
				took = append(took, time.Since(t0))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", p, rec.Code, rec.Body.String())
				}
			}
			slices.Sort(took)
			q := func(f float64) float64 { return float64(took[int(f*float64(len(took)-1))]) / 1e6 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.95), "p95-ms")
		})
	}
}
