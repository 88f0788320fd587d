package benchmark

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Environment of the producer process that xlatency's test starts: this
// test binary again.
const (
	envProducerDSN     = "WEFT_BENCHMARK_TEST_PRODUCER_DSN"
	envProducerSamples = "WEFT_BENCHMARK_TEST_PRODUCER_SAMPLES"
)

func TestMain(m *testing.M) {
	if dsn := os.Getenv(envProducerDSN); dsn != "" {
		n, _ := strconv.Atoi(os.Getenv(envProducerSamples))
		if err := Produce(context.Background(), ProducerArgs{DSN: dsn, Samples: n}, nil); err != nil {
			fmt.Fprintln(os.Stderr, "producer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testProducer runs this test binary as xlatency's producer.
func testProducer(t *testing.T) func(ctx context.Context, p ProducerArgs) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, p ProducerArgs) *exec.Cmd {
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envProducerDSN+"="+p.DSN, envProducerSamples+"="+strconv.Itoa(p.Samples))
		return cmd
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// positive fails unless every named value is above zero.
func positive(t *testing.T, r Result, vals map[string]*float64) {
	t.Helper()
	for name, v := range vals {
		if v == nil || *v <= 0 {
			t.Errorf("%s: %s = %v, want > 0", r.Scenario, name, v)
		}
	}
}

// ordered fails unless p50 ≤ p90 ≤ p99 ≤ max.
func ordered(t *testing.T, r Result) {
	t.Helper()
	if r.P50Ms == nil || r.P90Ms == nil || r.P99Ms == nil || r.MaxMs == nil {
		t.Fatalf("%s: percentiles missing: %+v", r.Scenario, r)
	}
	if !(*r.P50Ms <= *r.P90Ms && *r.P90Ms <= *r.P99Ms && *r.P99Ms <= *r.MaxMs) {
		t.Errorf("%s: percentiles out of order: %v %v %v %v", r.Scenario, *r.P50Ms, *r.P90Ms, *r.P99Ms, *r.MaxMs)
	}
}

func TestScenarios(t *testing.T) {
	dir := t.TempDir()
	target := Target{Dir: dir, Logger: quiet()}
	o := Options{Tasks: 3000, Workers: 50, Samples: 40, Claims: 100, Producer: testProducer(t)}
	for _, sc := range Scenarios() {
		t.Run(string(sc), func(t *testing.T) {
			var phases []string
			o := o
			o.Progress = func(done, total int, phase string) {
				if done < 0 || done > total {
					t.Errorf("progress %d of %d in %s", done, total, phase)
				}
				if !slices.Contains(phases, phase) {
					phases = append(phases, phase)
				}
			}
			r, err := Run(context.Background(), target, sc, o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Scenario != sc || r.Backend != BackendSQLite || r.Sync != "FULL" {
				t.Errorf("result names %s on %s/%s", r.Scenario, r.Backend, r.Sync)
			}
			if r.Seconds <= 0 || r.TasksPerSec <= 0 || r.PeakRSSMB <= 0 {
				t.Errorf("%s: seconds %v, tasks/s %v, peak RSS %v MiB", sc, r.Seconds, r.TasksPerSec, r.PeakRSSMB)
			}
			if len(phases) == 0 {
				t.Errorf("%s: no progress reported", sc)
			}
			switch sc {
			case Burndown, Memory:
				if r.Tasks != 3000 || r.Workers != 50 || r.P50Ms != nil {
					t.Errorf("%s: %+v", sc, r)
				}
			case Insert:
				if r.Tasks != 3000 || r.Workers != 0 {
					t.Errorf("insert: %+v", r)
				}
				ordered(t, r)
			case FlowSubmit:
				if r.Tasks != 3000 || r.Workers != 0 || r.P50Ms != nil {
					t.Errorf("%s: %+v", sc, r)
				}
			case FlowBurndown:
				if r.Tasks != 3000 || r.Workers != 50 || r.P50Ms != nil {
					t.Errorf("%s: %+v", sc, r)
				}
			case FlowLatency:
				if r.Tasks != 40 || r.Workers != 50 {
					t.Errorf("%s: %+v", sc, r)
				}
				ordered(t, r)
			case Latency, XLatency:
				if r.Tasks != 40 {
					t.Errorf("%s: tasks %d", sc, r.Tasks)
				}
				ordered(t, r)
				positive(t, r, map[string]*float64{"visible_p50_ms": r.VisibleP50Ms, "visible_p99_ms": r.VisibleP99Ms})
				// A task is seen completed after it started.
				if *r.VisibleP50Ms < *r.P50Ms || *r.VisibleMaxMs < *r.P50Ms {
					t.Errorf("%s: visible p50 %v before start p50 %v", sc, *r.VisibleP50Ms, *r.P50Ms)
				}
				if (sc == Latency) != (r.EnqueueP50Ms != nil) {
					t.Errorf("%s: enqueue_p50_ms = %v", sc, r.EnqueueP50Ms)
				}
			case Scale:
				if r.Tasks != 3000 || r.Pending != 300 || r.Rows != 3000 || r.Seed != "api" || r.SeedSeconds <= 0 {
					t.Errorf("scale: %+v", r)
				}
				ordered(t, r)
				positive(t, r, map[string]*float64{"stats_ms": r.StatsMs, "finish_p50_ms": r.FinishP50Ms})
			}
		})
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("benchmark databases left behind: %v", left)
	}
}

func TestScaleSeedSQL(t *testing.T) {
	r, err := Run(context.Background(), Target{Dir: t.TempDir(), Logger: quiet()}, Scale, Options{Tasks: 5000, Claims: 50})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seed != "api" {
		t.Errorf("default seed %q", r.Seed)
	}
	r, err = Run(context.Background(), Target{Dir: t.TempDir(), Logger: quiet()}, Scale, Options{Tasks: 5000, Claims: 50, SeedSQL: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seed != "sql" || r.Rows != 5000 || r.Pending != 500 {
		t.Errorf("scale seeded with SQL: %+v", r)
	}
}

func TestTargetFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "given.db")
	target := Target{File: path, Sync: "NORMAL", Logger: quiet()}
	r, err := Run(context.Background(), target, Insert, Options{Tasks: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sync != "NORMAL" || r.Tasks != 1500 {
		t.Errorf("result %+v", r)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the database file was not removed (stat: %v)", err)
	}
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), target, Insert, Options{Tasks: 10}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("an existing file was used: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Errorf("the existing file was changed")
	}
}

func TestCancelled(t *testing.T) {
	for _, phase := range []string{"insert", "drain"} {
		t.Run(phase, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dir := t.TempDir()
			o := Options{Tasks: 50_000, Workers: 1, Progress: func(done, _ int, p string) {
				if p == phase && done > 0 {
					cancel()
				}
			}}
			start := time.Now()
			if _, err := Run(ctx, Target{Dir: dir, Logger: quiet()}, Burndown, o); err == nil {
				t.Fatal("a cancelled run succeeded")
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("cancellation took %s", d)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("benchmark databases left behind: %v", left)
			}
		})
	}
}

func TestParseScenarios(t *testing.T) {
	for in, want := range map[string][]Scenario{
		"all":                 Scenarios(),
		"latency":             {Latency},
		"scale, Insert,scale": {Scale, Insert},
		"memory,all":          {Memory, Burndown, Insert, Latency, XLatency, Scale, FlowSubmit, FlowBurndown, FlowLatency, StreamAppend, StreamLag, LimitKeys, LimitHotKey},
	} {
		got, err := ParseScenarios(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseScenarios(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "burn", "insert,,latency"} {
		if _, err := ParseScenarios(in); err == nil {
			t.Errorf("ParseScenarios(%q) succeeded", in)
		}
	}
}

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	p := Summarize(samples)
	if p.N != 100 || p.P50 != 51*time.Millisecond || p.P90 != 91*time.Millisecond || p.P99 != 100*time.Millisecond || p.Max != 100*time.Millisecond {
		t.Errorf("Summarize = %+v", p)
	}
	if (Summarize(nil) != Percentiles{}) {
		t.Error("Summarize(nil) is not zero")
	}
	if got := Millis(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("Millis = %v", got)
	}
}

func TestMedian(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	runs := []Result{
		{Scenario: Latency, Run: 1, Tasks: 10, Seconds: 3, TasksPerSec: 30, P50Ms: f(1)},
		{Scenario: Latency, Run: 2, Tasks: 10, Seconds: 1, TasksPerSec: 10, P50Ms: f(3)},
		{Scenario: Latency, Run: 3, Tasks: 10, Seconds: 2, TasksPerSec: 20, P50Ms: f(2)},
	}
	m := Median(runs)
	if m.Scenario != Latency || m.Run != 0 || m.MedianOf != 3 || m.Tasks != 10 || m.Seconds != 2 || m.TasksPerSec != 20 || *m.P50Ms != 2 || m.StatsMs != nil {
		t.Errorf("Median = %+v", m)
	}
	if m := Median(runs[:2]); m.Seconds != 2 || *m.P50Ms != 2 {
		t.Errorf("Median of two = %+v", m)
	}
}
