package weft_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// Benchmark sizes come from the environment so that CI can run every
// benchmark once at a tiny size: WEFT_BENCH_TASKS (default 100,000),
// WEFT_BENCH_WORKERS (default 2,000, as River's benchmark),
// WEFT_BENCH_SAMPLES (default 2,000), WEFT_BENCH_SYNC (FULL or NORMAL);
// WEFT_BENCH_POSTGRES_URL runs them on PostgreSQL instead of SQLite.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "bench.noop" }

type stampArgs struct {
	// T0 is when the task was enqueued, in Unix nanoseconds.
	T0 int64 `json:"t0"`
}

func (stampArgs) Kind() string { return "bench.stamp" }

// openBenchStore opens a fresh store for one benchmark: an SQLite file in a
// temporary directory (synchronous=NORMAL when WEFT_BENCH_SYNC=NORMAL), or,
// when WEFT_BENCH_POSTGRES_URL is set, a fresh schema on that server. It
// returns the store and the string another process opens it by.
func openBenchStore(b *testing.B, name string) (store.Store, string) {
	b.Helper()
	ctx := context.Background()
	if server := os.Getenv("WEFT_BENCH_POSTGRES_URL"); server != "" {
		dsn := benchSchema(b, server)
		st, err := postgres.Open(ctx, dsn, nil)
		if err != nil {
			b.Fatal(err)
		}
		return st, dsn
	}
	path := filepath.Join(b.TempDir(), name)
	st, err := sqlite.Open(ctx, path, &sqlite.Options{Synchronous: sqlite.Synchronous(os.Getenv("WEFT_BENCH_SYNC"))})
	if err != nil {
		b.Fatal(err)
	}
	return st, path
}

// openByDSN opens what openBenchStore's second result names.
func openByDSN(ctx context.Context, dsn string) (store.Store, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return postgres.Open(ctx, dsn, nil)
	}
	return sqlite.Open(ctx, dsn, nil)
}

// benchSchema creates a schema dropped when the benchmark ends.
func benchSchema(b *testing.B, server string) string {
	b.Helper()
	ctx := context.Background()
	schema := fmt.Sprintf("weft_bench_%d", time.Now().UnixNano())
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), server); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// sqliteOnly skips benchmarks that seed an SQLite file directly.
func sqliteOnly(b *testing.B) {
	if os.Getenv("WEFT_BENCH_POSTGRES_URL") != "" {
		b.Skip("seeds an SQLite file directly")
	}
}

func insertNoops(b *testing.B, c *weft.Client, n int) time.Duration {
	b.Helper()
	const batch = 1000
	start := time.Now()
	for done := 0; done < n; done += batch {
		params := make([]weft.EnqueueParams, min(batch, n-done))
		for i := range params {
			params[i] = weft.EnqueueParams{Args: noopArgs{N: done + i}}
		}
		if _, err := c.EnqueueMany(context.Background(), params); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkInsert measures batch enqueue throughput: batches of 1,000.
func BenchmarkInsert(b *testing.B) {
	n := envInt("WEFT_BENCH_TASKS", 100_000)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		st, _ := openBenchStore(b, "insert.db")
		c, _ := weft.NewClient(st, nil)
		total += insertNoops(b, c, n)
		st.Close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
}

// BenchmarkBurndown inserts N no-op tasks, then measures from Start until
// the last completion is recorded.
func BenchmarkBurndown(b *testing.B) {
	n := envInt("WEFT_BENCH_TASKS", 100_000)
	workers := envInt("WEFT_BENCH_WORKERS", 2000)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		st, _ := openBenchStore(b, "burndown.db")
		var done atomic.Int64
		all := make(chan struct{})
		ws := weft.NewWorkers()
		weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[noopArgs]) error {
			if done.Add(1) == int64(n) {
				close(all)
			}
			return nil
		})
		c, err := weft.NewClient(st, &weft.Config{Workers: ws, Queues: map[string]weft.QueueConfig{"default": {MaxWorkers: workers}}})
		if err != nil {
			b.Fatal(err)
		}
		insertNoops(b, c, n)
		start := time.Now()
		if err := c.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		<-all
		// Stop returns once every outcome is recorded.
		if err := c.Stop(context.Background()); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		st.Close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
}

// latencyRun starts a client whose handler records enqueue-to-start
// latencies of stampArgs tasks, and returns a function that waits for want
// samples.
func latencyRun(b *testing.B, st store.Store, want int) (*weft.Client, func() []time.Duration) {
	b.Helper()
	var (
		mu      sync.Mutex
		samples []time.Duration
	)
	all := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[stampArgs]) error {
		d := time.Duration(time.Now().UnixNano() - t.Args.T0)
		mu.Lock()
		samples = append(samples, d)
		if len(samples) == want {
			close(all)
		}
		mu.Unlock()
		return nil
	})
	c, err := weft.NewClient(st, &weft.Config{Workers: ws, PollInterval: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c, func() []time.Duration {
		select {
		case <-all:
		case <-time.After(2 * time.Minute):
			b.Fatal("latency samples did not arrive")
		}
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(samples)
	}
}

func reportPercentiles(b *testing.B, samples []time.Duration) {
	slices.Sort(samples)
	at := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(p*float64(len(samples))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50_ms")
	b.ReportMetric(at(0.90), "p90_ms")
	b.ReportMetric(at(0.99), "p99_ms")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max_ms")
}

// enqueueStamped enqueues n tasks one at a time, one every interval, and
// returns how long each Enqueue call took (its durable commit included).
func enqueueStamped(ctx context.Context, c *weft.Client, n int, interval time.Duration) ([]time.Duration, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	calls := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		<-tick.C
		t0 := time.Now()
		if _, err := c.Enqueue(ctx, stampArgs{T0: t0.UnixNano()}, nil); err != nil {
			return nil, err
		}
		calls = append(calls, time.Since(t0))
	}
	return calls, nil
}

// BenchmarkLatency measures enqueue-to-handler-start in one process: tasks
// are enqueued one at a time, every 2ms, into a running client.
func BenchmarkLatency(b *testing.B) {
	n := envInt("WEFT_BENCH_SAMPLES", 2000)
	for i := 0; i < b.N; i++ {
		st, _ := openBenchStore(b, "latency.db")
		c, wait := latencyRun(b, st, n)
		calls, err := enqueueStamped(context.Background(), c, n, 2*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		reportPercentiles(b, wait())
		// The Enqueue call itself — mostly the fsync of its commit — is
		// part of the latency above; this shows how much.
		slices.Sort(calls)
		b.ReportMetric(float64(calls[len(calls)/2].Microseconds())/1000, "enqueue_p50_ms")
		_ = c.Stop(context.Background())
		st.Close()
	}
}

// BenchmarkCrossProcessLatency measures enqueue-to-handler-start when the
// producer is another process on the same database file.
func BenchmarkCrossProcessLatency(b *testing.B) {
	n := envInt("WEFT_BENCH_SAMPLES", 2000)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		st, path := openBenchStore(b, "xlatency.db")
		c, wait := latencyRun(b, st, n)
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envProducerDB+"="+path, envProducerCount+"="+strconv.Itoa(n))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("producer process: %v\n%s", err, out)
		}
		reportPercentiles(b, wait())
		_ = c.Stop(context.Background())
		st.Close()
	}
}

const (
	envProducerDB    = "WEFT_BENCH_PRODUCER_DB"
	envProducerCount = "WEFT_BENCH_PRODUCER_COUNT"
)

// TestMain turns the test binary into the producer process of
// BenchmarkCrossProcessLatency when asked to.
func TestMain(m *testing.M) {
	if path := os.Getenv(envProducerDB); path != "" {
		if err := produce(path, envInt(envProducerCount, 1000)); err != nil {
			fmt.Fprintln(os.Stderr, "producer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func produce(path string, n int) error {
	ctx := context.Background()
	st, err := openByDSN(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := weft.NewClient(st, nil)
	if err != nil {
		return err
	}
	_, err = enqueueStamped(ctx, c, n, 2*time.Millisecond)
	return err
}

// BenchmarkLatencyDuringRetention measures enqueue-to-handler-start while
// retention purges WEFT_BENCH_TERMINAL (default 1,000,000) expired
// completed tasks: purging must not stall claims.
func BenchmarkLatencyDuringRetention(b *testing.B) {
	terminal := envInt("WEFT_BENCH_TERMINAL", 1_000_000)
	n := envInt("WEFT_BENCH_SAMPLES", 2000)
	for i := 0; i < b.N; i++ {
		sqliteOnly(b)
		st, path := openBenchStore(b, "retention.db")
		seedCompleted(b, path, terminal)
		var (
			mu      sync.Mutex
			samples []time.Duration
		)
		all := make(chan struct{})
		ws := weft.NewWorkers()
		weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[stampArgs]) error {
			mu.Lock()
			samples = append(samples, time.Duration(time.Now().UnixNano()-t.Args.T0))
			if len(samples) == n {
				close(all)
			}
			mu.Unlock()
			return nil
		})
		c, err := weft.NewClient(st, &weft.Config{Workers: ws, PollInterval: time.Minute, RetentionInterval: 50 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := c.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		if _, err := enqueueStamped(context.Background(), c, n, 2*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		<-all
		elapsed := time.Since(start)
		stats, err := c.Stats(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		left := int64(0)
		for _, qs := range stats {
			left += qs.Counts[weft.StateCompleted]
		}
		_ = c.Stop(context.Background())
		st.Close()
		reportPercentiles(b, samples)
		b.ReportMetric(float64(int64(terminal)+int64(n)-left)/elapsed.Seconds(), "purged/s")
	}
}

// seedCompleted writes n completed tasks that finished two days ago
// straight into the database, with their counts.
func seedCompleted(b *testing.B, path string, n int) {
	b.Helper()
	db, err := sqlite.OpenSQL(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	old := time.Now().Add(-48 * time.Hour).UnixMicro()
	_, err = db.Exec(`WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?)
		INSERT INTO weft_tasks (id, kind, queue, args, state, run_at, attempt, max_attempts, created_at, attempted_at, finalized_at)
		SELECT printf('00000000-0000-7000-8000-%012d', x), 'bench.old', 'default', '{}', 'completed', ?2, 1, 25, ?2, ?2, ?2 FROM seq`, n, old)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO weft_counts (queue, state, n) VALUES ('default', 'completed', ?)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`, n); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStats reads queue statistics with WEFT_BENCH_TERMINAL (default
// 1,000,000) finished tasks and 1,000 pending ones in the table.
func BenchmarkStats(b *testing.B) {
	sqliteOnly(b)
	st, path := openBenchStore(b, "stats.db")
	defer st.Close()
	seedCompleted(b, path, envInt("WEFT_BENCH_TERMINAL", 1_000_000))
	c, _ := weft.NewClient(st, nil)
	insertNoops(b, c, 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Stats(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
