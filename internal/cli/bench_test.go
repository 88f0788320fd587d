package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/internal/benchmark"
	"github.com/weftworks/weft/internal/pgtest"
)

// TestMain lets this test binary stand in for weft when `weft bench`
// starts itself as xlatency's producer process (`weft bench --producer`).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// benchDirs lists the temporary directories weft bench makes by default.
func benchDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), "weft-bench-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestBenchAllJSON(t *testing.T) {
	before := benchDirs(t)
	r := ok(t, runWeft(t, "bench", "--scenario", "all", "--tasks", "2000", "--samples", "50", "--json"))

	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	var got []benchmark.Scenario
	for _, line := range lines {
		// Every field of the contract is present, as a number or (for
		// percentiles a scenario does not time) null.
		fields := decode[map[string]any](t, line)
		for _, name := range []string{"scenario", "backend", "tasks", "workers", "seconds", "tasks_per_sec",
			"p50_ms", "p90_ms", "p99_ms", "max_ms", "peak_rss_mb"} {
			if _, ok := fields[name]; !ok {
				t.Errorf("field %s missing from %s", name, line)
			}
		}
		res := decode[benchmark.Result](t, line)
		got = append(got, res.Scenario)
		if res.Backend != "sqlite" || res.Sync != "FULL" || res.Run != 1 || res.Seconds <= 0 || res.TasksPerSec <= 0 || res.PeakRSSMB <= 0 {
			t.Errorf("%s: %s", res.Scenario, line)
		}
		wantTasks, wantWorkers := 2000, 2000
		switch res.Scenario {
		case benchmark.FlowSubmit:
			wantWorkers = 0
		case benchmark.StreamLag:
			wantTasks, wantWorkers = 50, 1
			if res.P50Ms == nil || res.P99Ms == nil {
				t.Errorf("%s: latency figures missing: %s", res.Scenario, line)
			}
		case benchmark.FlowLatency:
			wantTasks = 50
			if res.P50Ms == nil || res.P99Ms == nil {
				t.Errorf("%s: latency figures missing: %s", res.Scenario, line)
			}
		case benchmark.Latency, benchmark.XLatency:
			wantTasks = 50
			if res.P50Ms == nil || res.P99Ms == nil || res.VisibleP50Ms == nil || res.VisibleP99Ms == nil || *res.VisibleP99Ms <= 0 {
				t.Errorf("%s: latency figures missing: %s", res.Scenario, line)
			}
		case benchmark.Insert:
			wantWorkers = 0
		case benchmark.Scale:
			wantWorkers = 0
			if res.Rows != 2000 || res.Pending != 200 || res.Seed != "api" || res.P50Ms == nil || res.StatsMs == nil {
				t.Errorf("scale: %s", line)
			}
		case benchmark.Burndown, benchmark.Memory:
			if res.P50Ms != nil {
				t.Errorf("%s times no single operation, yet p50_ms is %v", res.Scenario, *res.P50Ms)
			}
		}
		if res.Tasks != wantTasks || res.Workers != wantWorkers {
			t.Errorf("%s: tasks %d, workers %d; want %d, %d", res.Scenario, res.Tasks, res.Workers, wantTasks, wantWorkers)
		}
	}
	if !slices.Equal(got, benchmark.Scenarios()) {
		t.Errorf("scenarios %v, want %v", got, benchmark.Scenarios())
	}
	for _, sc := range benchmark.Scenarios() {
		if !strings.Contains(r.stderr, string(sc)+": done in") {
			t.Errorf("stderr shows no end of %s:\n%s", sc, r.stderr)
		}
	}
	if after := benchDirs(t); len(after) > len(before) {
		t.Errorf("temporary databases left behind: %v (before: %v)", after, before)
	}
}

func TestBenchTableAndRuns(t *testing.T) {
	dir := t.TempDir()
	r := ok(t, runWeft(t, "bench", "--scenario", "insert, scale", "--tasks", "1500", "--runs", "2", "--database", dir, "--sync", "normal"))
	for _, want := range []string{"SCENARIO", "PEAK RSS MB", "insert", "scale", "median of 2", "sqlite NORMAL", "1,500", "one claim of a single task"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r)
		}
	}
	if n := strings.Count(r.stdout, "\n"); n != 7 {
		t.Errorf("table has %d lines, want a header and 2×(2 runs + median):\n%s", n, r.stdout)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("databases left in %s: %v", dir, left)
	}

	// --runs with --json: each run, then the median.
	r = ok(t, runWeft(t, "bench", "--scenario", "insert", "--tasks", "1000", "--runs", "3", "--json", "--database", dir))
	results := ndjson[benchmark.Result](t, r.stdout)
	if len(results) != 4 || results[2].Run != 3 || results[3].MedianOf != 3 || results[3].Run != 0 {
		t.Errorf("runs and median:\n%s", r.stdout)
	}
}

func TestBenchDatabaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.db")
	ok(t, runWeft(t, "bench", "--scenario", "insert", "--tasks", "1000", "--json", "--database", path))
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s was not removed (stat: %v)", path, err)
	}
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	failsWith(t, runWeft(t, "bench", "--database", path), exitUsage, "exists", "only runs on a database it creates")
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Error("an existing database file was changed")
	}
}

func TestBenchUsage(t *testing.T) {
	pg := "postgres://nobody@127.0.0.1:1/x"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "fast"}, `"fast" is not a scenario`},
		{[]string{"--runs", "0"}, "--runs"},
		{[]string{"--workers", "0"}, "--workers"},
		{[]string{"--tasks", "-1"}, "--tasks"},
		{[]string{"--sync", "OFF"}, "--sync"},
		{[]string{"--seed", "magic"}, "--seed"},
		{[]string{"--database", pg, "--sync", "NORMAL"}, "SQLite only"},
		{[]string{"--database", pg, "--seed", "sql"}, "needs SQLite"},
		{[]string{"extra"}, "no arguments"},
	} {
		failsWith(t, runWeft(t, append([]string{"bench"}, c.args...)...), exitUsage, c.want)
	}
	// The application's database in the environment is never used.
	env := cli{t: t, env: map[string]string{"WEFT_DATABASE_URL": "postgres://nobody@127.0.0.1:1/x"}}
	r := ok(t, env.run(context.Background(), "bench", "--scenario", "insert", "--tasks", "1000", "--json"))
	if !strings.Contains(r.stdout, `"backend":"sqlite"`) {
		t.Errorf("WEFT_DATABASE_URL was used:\n%s", r)
	}
}

func TestBenchPostgres(t *testing.T) {
	server := pgtest.ServerURL(t)
	schemas := func() []string {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'weft_bench_%'")
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	before := schemas()
	r := ok(t, runWeft(t, "bench", "--scenario", "insert,xlatency", "--tasks", "1000", "--samples", "20", "--json", "--database", server))
	results := ndjson[benchmark.Result](t, r.stdout)
	if len(results) != 2 || results[0].Backend != "postgres" || results[0].Sync != "" || results[1].VisibleP50Ms == nil {
		t.Errorf("results on PostgreSQL:\n%s", r)
	}
	if after := schemas(); len(after) > len(before) {
		t.Errorf("schemas left behind: %v (before: %v)", after, before)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &raw)
	if _, has := raw["sync"]; has {
		t.Errorf("sync reported on PostgreSQL: %s", r.stdout)
	}
}
