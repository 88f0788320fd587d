package weft_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/benchmark"
	"github.com/weftworks/weft/store/sqlite"
)

// The scenarios themselves live in internal/benchmark, shared with `weft
// bench`; these benchmarks run them under `go test -bench`.
//
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

// benchTarget makes each run's fresh database: an SQLite file in the
// benchmark's temporary directory, or, when WEFT_BENCH_POSTGRES_URL is
// set, a fresh schema on that server.
func benchTarget(b *testing.B) benchmark.Target {
	return benchmark.Target{
		Postgres: os.Getenv("WEFT_BENCH_POSTGRES_URL"),
		Dir:      b.TempDir(),
		Sync:     sqlite.Synchronous(os.Getenv("WEFT_BENCH_SYNC")),
	}
}

// benchOptions sizes the scenarios from the environment.
func benchOptions(b *testing.B) benchmark.Options {
	return benchmark.Options{
		Tasks:    envInt("WEFT_BENCH_TASKS", benchmark.DefaultTasks),
		Workers:  envInt("WEFT_BENCH_WORKERS", benchmark.DefaultWorkers),
		Samples:  envInt("WEFT_BENCH_SAMPLES", benchmark.DefaultSamples),
		Producer: producerCommand(b),
	}
}

// runScenario runs one scenario on a fresh database.
func runScenario(b *testing.B, sc benchmark.Scenario, o benchmark.Options) benchmark.Result {
	b.Helper()
	r, err := benchmark.Run(context.Background(), benchTarget(b), sc, o)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// sqliteOnly skips benchmarks that seed an SQLite file directly.
func sqliteOnly(b *testing.B) {
	if os.Getenv("WEFT_BENCH_POSTGRES_URL") != "" {
		b.Skip("seeds an SQLite file directly")
	}
}

// BenchmarkInsert measures batch enqueue throughput: batches of 1,000.
func BenchmarkInsert(b *testing.B) {
	o := benchOptions(b)
	var total float64
	for i := 0; i < b.N; i++ {
		total += runScenario(b, benchmark.Insert, o).Seconds
	}
	b.ReportMetric(float64(o.Tasks*b.N)/total, "tasks/s")
}

// BenchmarkBurndown inserts N no-op tasks, then measures from Start until
// the last completion is recorded.
func BenchmarkBurndown(b *testing.B) {
	o := benchOptions(b)
	var total float64
	for i := 0; i < b.N; i++ {
		total += runScenario(b, benchmark.Burndown, o).Seconds
	}
	b.ReportMetric(float64(o.Tasks*b.N)/total, "tasks/s")
}

// BenchmarkFlowSubmit measures the submit of one flow of up to 10,000
// members.
func BenchmarkFlowSubmit(b *testing.B) {
	o := benchOptions(b)
	var total float64
	var n int
	for i := 0; i < b.N; i++ {
		r := runScenario(b, benchmark.FlowSubmit, o)
		total, n = total+r.Seconds, n+r.Tasks
	}
	b.ReportMetric(float64(n)/total, "members/s")
}

// BenchmarkFlowBurndown drains N tasks enqueued as flows of 1 → 98 → 1:
// compare with BenchmarkBurndown.
func BenchmarkFlowBurndown(b *testing.B) {
	o := benchOptions(b)
	var total float64
	var n int
	for i := 0; i < b.N; i++ {
		r := runScenario(b, benchmark.FlowBurndown, o)
		total, n = total+r.Seconds, n+r.Tasks
	}
	b.ReportMetric(float64(n)/total, "tasks/s")
}

// BenchmarkFlowLatency measures the time from a parent's handler returning
// to its child's handler starting.
func BenchmarkFlowLatency(b *testing.B) {
	o := benchOptions(b)
	for i := 0; i < b.N; i++ {
		reportPercentiles(b, runScenario(b, benchmark.FlowLatency, o))
	}
}

// reportPercentiles reports a latency result's figures.
func reportPercentiles(b *testing.B, r benchmark.Result) {
	for _, m := range []struct {
		v    *float64
		name string
	}{
		{r.P50Ms, "p50_ms"}, {r.P90Ms, "p90_ms"}, {r.P99Ms, "p99_ms"}, {r.MaxMs, "max_ms"},
		{r.VisibleP50Ms, "visible_p50_ms"}, {r.VisibleP99Ms, "visible_p99_ms"},
		// The Enqueue call itself — mostly the fsync of its commit — is
		// part of the latency above; this shows how much.
		{r.EnqueueP50Ms, "enqueue_p50_ms"},
	} {
		if m.v != nil {
			b.ReportMetric(*m.v, m.name)
		}
	}
}

// BenchmarkLatency measures enqueue-to-handler-start (and to the
// completion being visible to a reader) in one process: tasks are enqueued
// one at a time, every 2ms, into a running client.
func BenchmarkLatency(b *testing.B) {
	o := benchOptions(b)
	for i := 0; i < b.N; i++ {
		reportPercentiles(b, runScenario(b, benchmark.Latency, o))
	}
}

// BenchmarkCrossProcessLatency measures enqueue-to-handler-start when the
// producer is another process on the same database.
func BenchmarkCrossProcessLatency(b *testing.B) {
	o := benchOptions(b)
	for i := 0; i < b.N; i++ {
		reportPercentiles(b, runScenario(b, benchmark.XLatency, o))
	}
}

// Environment of the producer process of BenchmarkCrossProcessLatency.
const (
	envProducerDB    = "WEFT_BENCH_PRODUCER_DB"
	envProducerCount = "WEFT_BENCH_PRODUCER_COUNT"
)

// producerCommand starts this test binary again as the producer.
func producerCommand(b *testing.B) func(ctx context.Context, p benchmark.ProducerArgs) *exec.Cmd {
	return func(ctx context.Context, p benchmark.ProducerArgs) *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envProducerDB+"="+p.DSN, envProducerCount+"="+strconv.Itoa(p.Samples),
			"WEFT_BENCH_SYNC="+string(p.Sync))
		return cmd
	}
}

// TestMain turns the test binary into the producer process of
// BenchmarkCrossProcessLatency when asked to.
func TestMain(m *testing.M) {
	if dsn := os.Getenv(envProducerDB); dsn != "" {
		p := benchmark.ProducerArgs{DSN: dsn, Samples: envInt(envProducerCount, 1000), Sync: sqlite.Synchronous(os.Getenv("WEFT_BENCH_SYNC"))}
		if err := benchmark.Produce(context.Background(), p, nil); err != nil {
			fmt.Fprintln(os.Stderr, "producer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkLatencyDuringRetention measures enqueue-to-handler-start while
// retention purges WEFT_BENCH_TERMINAL (default 1,000,000) expired
// completed tasks: purging must not stall claims.
func BenchmarkLatencyDuringRetention(b *testing.B) {
	terminal := envInt("WEFT_BENCH_TERMINAL", 1_000_000)
	o := benchOptions(b)
	o.Tune = func(c *weft.Config) { c.RetentionInterval = 50 * time.Millisecond }
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		sqliteOnly(b)
		db, err := benchTarget(b).Open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := benchmark.SeedCompleted(ctx, db, terminal, time.Now().Add(-48*time.Hour)); err != nil {
			b.Fatal(err)
		}
		r, err := benchmark.RunOn(ctx, db, benchmark.Latency, o)
		if err != nil {
			b.Fatal(err)
		}
		stats, err := db.Store.Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		left := int64(0)
		for _, qs := range stats {
			left += qs.Counts[weft.StateCompleted]
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		reportPercentiles(b, r)
		b.ReportMetric(float64(int64(terminal)+int64(o.Samples)-left)/r.Seconds, "purged/s")
	}
}

// BenchmarkStats reads queue statistics with WEFT_BENCH_TERMINAL (default
// 1,000,000) finished tasks and 1,000 pending ones in the table.
func BenchmarkStats(b *testing.B) {
	sqliteOnly(b)
	ctx := context.Background()
	db, err := benchTarget(b).Open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := benchmark.SeedCompleted(ctx, db, envInt("WEFT_BENCH_TERMINAL", 1_000_000), time.Now().Add(-48*time.Hour)); err != nil {
		b.Fatal(err)
	}
	c, err := weft.NewClient(db.Store, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := benchmark.EnqueueNoops(ctx, c, 1000, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Stats(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
