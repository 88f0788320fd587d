package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weftworks/weft/internal/benchmark"
	"github.com/weftworks/weft/store/sqlite"
)

// benchOptions are bench's own flags.
type benchOptions struct {
	scenarios string
	tasks     int
	workers   int
	samples   int
	interval  time.Duration
	runs      int
	sync      string
	seed      string
	json      bool
	// producer makes this process xlatency's producer (hidden: bench
	// starts itself with it).
	producer bool
}

func newBenchCmd(g *globals) *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency on a fresh, throw-away database",
		Long: `Run Weft's benchmark scenarios with the same engine code applications run, and
print the figures.

Every run gets a database of its own, created for it and removed afterwards,
so a benchmark never reads or changes existing data:
  (no --database)          a temporary SQLite file under ` + os.TempDir() + `
  --database DIR           a temporary SQLite file in DIR (to measure that disk)
  --database FILE          that SQLite file, which must not exist yet
  --database postgres://…  a new schema weft_bench_<random> on that server,
                           dropped afterwards; nothing else on it is touched
WEFT_DATABASE_URL is ignored: a benchmark only runs where its command line says.

Scenarios (--scenario, a comma-separated list, or all):
  burndown  --tasks no-op tasks (default 100,000) are enqueued in batches of
            1,000, then --workers workers drain them; timed from the
            client's start until its last outcome is recorded.
  insert    --tasks tasks (default 100,000) enqueued in batches of 1,000;
            percentiles are per batch.
  latency   --samples tasks enqueued one at a time, one every --interval,
            into a running engine: percentiles of enqueue to handler start,
            and of enqueue to the completion being visible to a reader (an
            observer reads each started task back every 200µs — less often
            when reads are slow, to stay below a fifth of one connection —
            until it reads it completed: an upper bound within one poll
            interval plus one read).
  xlatency  latency with the producer in another process (weft starts
            itself) on the same database.
  scale     a table of --tasks rows (default 1,000,000): 90% completed
            through the normal API (enqueued, claimed, completed in batches
            of 1,000; --seed sql writes them with SQL instead, SQLite only),
            10% pending, spread through the table. The table is then
            settled (SQLite: WAL checkpointed; PostgreSQL: VACUUM ANALYZE),
            and 1,000 single-task claims, each followed by its completion,
            and 100 queue statistics reads are timed.
  memory    the peak resident set size (getrusage) while --workers workers
            drain --tasks pending tasks (default 1,000,000).
  flow-submit    one flow of --tasks members (at most 10,000) submitted in
                 one request: members per second.
  flow-burndown  --tasks tasks as flows of 1 -> 98 -> 1 (a root, 98 steps
                 after it, a fan-in after those), drained by --workers
                 workers: compare with burndown.
  flow-latency   --samples two-step flows, one every --interval: percentiles
                 of the parent's handler returning to the child's starting.
  stream-append  --workers tasks write --tasks text frames of 100 bytes in
                 all, one durable write each, at once: frames per second.
  stream-lag     one task writes --samples frames, one every --interval,
                 while a reader follows its stream: percentiles of a frame's
                 write acknowledged to the follower receiving it.
  limit-keys     --tasks tasks over 1,000 keys of a limit capped at 1 per
                 key, drained by --workers workers: compare with burndown.
  limit-hotkey   10,000 tasks of one key capped at 5, then --tasks plain
                 tasks in the same queue: the rate of the plain ones, to
                 compare with burndown (a full key must not slow them).
all runs them in this order; with the defaults that takes a few minutes.

A progress line is shown on stderr. At the end a table is printed, or with
--json one JSON object per run on stdout (and, with --runs above 1, one more
per scenario with the median of each figure, marked "median_of").`,
		Example: `  weft bench
  weft bench --scenario burndown --tasks 100000 --workers 2000 --runs 5
  weft bench --scenario latency,xlatency --samples 2000 --sync NORMAL
  weft bench --scenario scale --tasks 10000000
  weft bench --scenario burndown,insert,latency --database postgres://postgres@127.0.0.1:5432/postgres
  weft bench --scenario all --tasks 2000 --samples 50 --json | jq .tasks_per_sec`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.producer {
				return runBenchProducer(cmd.Context(), g, o)
			}
			scenarios, target, err := o.resolve(g, cmd.Flags())
			if err != nil {
				return err
			}
			target.Logger = benchLogger(g, cmd.Flags())
			return runBench(cmd.Context(), g, o, scenarios, target)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.scenarios, "scenario", "all", "scenarios to run: burndown, insert, latency, xlatency, scale, memory, flow-submit, flow-burndown, flow-latency, stream-append, stream-lag, limit-keys, limit-hotkey, a comma-separated list, or all")
	f.IntVar(&o.tasks, "tasks", 0, "tasks of burndown and insert (default 100,000), rows of scale and tasks of memory (default 1,000,000)")
	f.IntVar(&o.workers, "workers", benchmark.DefaultWorkers, "engine concurrency in burndown, latency, xlatency and memory")
	f.IntVar(&o.samples, "samples", benchmark.DefaultSamples, "tasks timed by latency and xlatency")
	f.DurationVar(&o.interval, "interval", benchmark.DefaultInterval, "time between two enqueues in latency and xlatency")
	f.IntVar(&o.runs, "runs", 1, "runs of each scenario; with more than one the median is reported too")
	f.StringVar(&o.sync, "sync", string(sqlite.SyncFull), "SQLite synchronous setting: FULL (every commit durable) or NORMAL")
	f.StringVar(&o.seed, "seed", "api", "how scale writes its completed rows: api (through the store) or sql (straight into the SQLite file; no events)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per result on stdout, and nothing else there")
	f.BoolVar(&o.producer, "producer", false, "run as xlatency's producer process")
	_ = f.MarkHidden("producer")
	return cmd
}

// resolve checks the flags and says where the databases go.
func (o *benchOptions) resolve(g *globals, flags *pflag.FlagSet) ([]benchmark.Scenario, benchmark.Target, error) {
	var t benchmark.Target
	scenarios, err := benchmark.ParseScenarios(o.scenarios)
	if err != nil {
		return nil, t, usagef("--scenario: %v", err)
	}
	switch {
	case o.tasks < 0:
		return nil, t, usagef("--tasks: %d is negative", o.tasks)
	case o.workers < 1 || o.workers > 100_000:
		return nil, t, usagef("--workers: %d is out of range (1 to 100000)", o.workers)
	case o.samples < 1:
		return nil, t, usagef("--samples: %d must be at least 1", o.samples)
	case o.interval <= 0:
		return nil, t, usagef("--interval: %s must be positive", o.interval)
	case o.runs < 1:
		return nil, t, usagef("--runs: %d must be at least 1", o.runs)
	}
	o.sync = strings.ToUpper(o.sync)
	if o.sync != string(sqlite.SyncFull) && o.sync != string(sqlite.SyncNormal) {
		return nil, t, usagef("--sync: %q is not FULL or NORMAL", o.sync)
	}
	if o.seed != "api" && o.seed != "sql" {
		return nil, t, usagef("--seed: %q is not api or sql", o.seed)
	}
	if g.formatFlag && g.Format != formatHuman {
		o.json = true
	}

	// Only a --database given on the command line counts: the
	// environment's database is the application's, not a benchmark's.
	if !g.databaseFlag {
		t.Sync = sqlite.Synchronous(o.sync)
		return scenarios, t, nil
	}
	db, err := parseDatabase(g.Database)
	if err != nil {
		return nil, t, err
	}
	if db.postgres != "" {
		if flags.Changed("sync") {
			return nil, t, usagef("--sync applies to SQLite only")
		}
		if o.seed == "sql" {
			return nil, t, usagef("--seed sql needs SQLite")
		}
		t.Postgres = db.postgres
		return scenarios, t, nil
	}
	t.Sync = sqlite.Synchronous(o.sync)
	info, err := os.Stat(db.path)
	switch {
	case err == nil && info.IsDir():
		t.Dir = db.path
	case err == nil:
		return nil, t, usagef("--database: %s exists; weft bench only runs on a database it creates: give a new file or a directory", db.path)
	case errors.Is(err, fs.ErrNotExist):
		if err := checkSQLitePath(db.path); err != nil {
			return nil, t, &usageError{err: err}
		}
		t.File = db.path
	default:
		return nil, t, fmt.Errorf("--database: %w", err)
	}
	return scenarios, t, nil
}

// describe says where the benchmark's databases are, for people.
func describe(t benchmark.Target) string {
	switch {
	case t.Postgres != "":
		return "PostgreSQL at " + redactURL(t.Postgres) + ", a new schema per run (dropped afterwards)"
	case t.File != "":
		return fmt.Sprintf("SQLite file %s (synchronous=%s; removed after each run)", t.File, t.Sync)
	}
	dir := t.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	return fmt.Sprintf("a temporary SQLite file in %s per run (synchronous=%s; removed afterwards)", dir, t.Sync)
}

// benchLogger is the engine's logger: warnings and errors only, unless a
// log level was asked for, so that routine messages do not break the
// progress line.
func benchLogger(g *globals, flags *pflag.FlagSet) *slog.Logger {
	level := g.LogLevel
	if _, fromEnv := g.lookupEnv("WEFT_LOG_LEVEL"); !flags.Changed("log-level") && !fromEnv {
		level = "warn"
	}
	l, err := newLogger(g.stderr, g.LogFormat, level)
	if err != nil {
		return g.logger(g.stderr)
	}
	return l
}

func runBench(ctx context.Context, g *globals, o benchOptions, scenarios []benchmark.Scenario, t benchmark.Target) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this program for the producer process: %w", err)
	}
	bo := benchmark.Options{
		Tasks: o.tasks, Workers: o.workers, Samples: o.samples, Interval: o.interval,
		SeedSQL:  o.seed == "sql",
		Producer: producerCommand(exe, o.interval),
	}
	fmt.Fprintf(g.stderr, "weft bench: %s; %d CPUs\n", describe(t), runtime.NumCPU())

	var all []benchmark.Result
	for _, sc := range scenarios {
		var runs []benchmark.Result
		for run := 1; run <= o.runs; run++ {
			label := string(sc)
			if o.runs > 1 {
				label = fmt.Sprintf("%s run %d/%d", sc, run, o.runs)
			}
			line := newProgressLine(g.stderr, label)
			bo.Progress = line.update
			r, err := benchmark.Run(ctx, t, sc, bo)
			line.done(r, err)
			if err != nil {
				if !o.json {
					printBenchTable(g.stdout, all)
				}
				return err
			}
			r.Run = run
			runs = append(runs, r)
			if o.json {
				if err := writeJSON(g.stdout, formatNDJSON, r); err != nil {
					return err
				}
			}
		}
		all = append(all, runs...)
		if o.runs > 1 {
			m := benchmark.Median(runs)
			all = append(all, m)
			if o.json {
				if err := writeJSON(g.stdout, formatNDJSON, m); err != nil {
					return err
				}
			}
		}
	}
	if !o.json {
		printBenchTable(g.stdout, all)
	}
	return nil
}

// producerCommand starts this program again as xlatency's producer.
func producerCommand(exe string, interval time.Duration) func(ctx context.Context, p benchmark.ProducerArgs) *exec.Cmd {
	return func(ctx context.Context, p benchmark.ProducerArgs) *exec.Cmd {
		args := []string{"bench", "--producer", "--database", p.DSN, "--samples", strconv.Itoa(p.Samples),
			"--interval", interval.String(), "--log-level", "warn"}
		if p.Sync != "" {
			args = append(args, "--sync", string(p.Sync))
		}
		return exec.CommandContext(ctx, exe, args...)
	}
}

// runBenchProducer is the producer process of xlatency.
func runBenchProducer(ctx context.Context, g *globals, o benchOptions) error {
	if !g.databaseFlag {
		return usagef("--producer needs --database")
	}
	p := benchmark.ProducerArgs{DSN: g.Database, Samples: o.samples, Interval: o.interval}
	if !isPostgres(g.Database) {
		p.Sync = sqlite.Synchronous(strings.ToUpper(o.sync))
	}
	return benchmark.Produce(ctx, p, g.logger(g.stderr))
}

// progressLine shows a scenario's progress on stderr: one line rewritten
// in place on a terminal, otherwise a line per phase and every few
// seconds, so that logs and CI output stay readable.
type progressLine struct {
	w       io.Writer
	tty     bool
	label   string
	start   time.Time
	phase   string
	printed time.Time
	width   int
}

// progressEvery is how often a non-terminal gets a progress line within a
// phase; progressRedraw bounds the redraws on a terminal.
const (
	progressEvery  = 5 * time.Second
	progressRedraw = 100 * time.Millisecond
)

func newProgressLine(w io.Writer, label string) *progressLine {
	return &progressLine{w: w, tty: isTerminal(w), label: label, start: time.Now()}
}

// update is the benchmark's progress callback.
func (p *progressLine) update(done, total int, phase string) {
	now := time.Now()
	changed := phase != p.phase
	p.phase = phase
	pct := 0
	if total > 0 {
		pct = done * 100 / total
	}
	text := fmt.Sprintf("%s: %s %s/%s (%d%%) %s", p.label, phase, thousands(int64(done)), thousands(int64(total)), pct,
		now.Sub(p.start).Round(100*time.Millisecond))
	if p.tty {
		if !changed && now.Sub(p.printed) < progressRedraw && done < total {
			return
		}
		p.redraw(text)
	} else {
		if !changed && now.Sub(p.printed) < progressEvery {
			return
		}
		fmt.Fprintln(p.w, text)
	}
	p.printed = now
}

// redraw replaces the terminal's progress line with text.
func (p *progressLine) redraw(text string) {
	pad := ""
	if n := p.width - len(text); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", text, pad)
	p.width = len(text)
}

// done ends the progress line with the run's outcome.
func (p *progressLine) done(r benchmark.Result, err error) {
	text := fmt.Sprintf("%s: done in %s: %s", p.label, time.Since(p.start).Round(100*time.Millisecond), headline(r))
	if err != nil {
		text = fmt.Sprintf("%s: failed after %s", p.label, time.Since(p.start).Round(100*time.Millisecond))
	}
	if p.tty {
		p.redraw(text)
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintln(p.w, text)
}

// headline is a result's main figure.
func headline(r benchmark.Result) string {
	switch r.Scenario {
	case benchmark.Latency, benchmark.XLatency:
		return fmt.Sprintf("start p50 %s ms, p99 %s ms; visible p50 %s ms, p99 %s ms",
			fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.VisibleP50Ms), fmtMs(r.VisibleP99Ms))
	case benchmark.Scale:
		return fmt.Sprintf("claim p50 %s ms, p99 %s ms; stats %s ms on %s rows", fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.StatsMs), thousands(r.Rows))
	case benchmark.Memory:
		return fmt.Sprintf("peak RSS %.0f MiB, %s tasks/s", r.PeakRSSMB, thousands(int64(r.TasksPerSec+0.5)))
	}
	return thousands(int64(r.TasksPerSec+0.5)) + " tasks/s"
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// printBenchTable prints the results as a table, with what each
// scenario's percentiles time and its own figures as notes.
func printBenchTable(w io.Writer, results []benchmark.Result) {
	if len(results) == 0 {
		return
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SCENARIO\tRUN\tBACKEND\tTASKS\tWORKERS\tSECONDS\tTASKS/S\tP50 MS\tP90 MS\tP99 MS\tMAX MS\tPEAK RSS MB\tNOTES")
	for _, r := range results {
		run := strconv.Itoa(r.Run)
		if r.MedianOf > 0 {
			run = fmt.Sprintf("median of %d", r.MedianOf)
		}
		backend := r.Backend
		if r.Sync != "" {
			backend += " " + r.Sync
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\n",
			r.Scenario, run, backend, thousands(int64(r.Tasks)), thousands(int64(r.Workers)), r.Seconds, thousands(int64(r.TasksPerSec+0.5)),
			fmtMs(r.P50Ms), fmtMs(r.P90Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), r.PeakRSSMB, notes(r))
	}
	_ = tw.Flush()
}

// notes explains a result's percentiles and adds its own figures.
func notes(r benchmark.Result) string {
	switch r.Scenario {
	case benchmark.Insert:
		return "percentiles: " + r.PercentilesOf
	case benchmark.Latency, benchmark.XLatency:
		s := fmt.Sprintf("percentiles: %s; to completion visible p50 %s, p90 %s, p99 %s, max %s ms",
			r.PercentilesOf, fmtMs(r.VisibleP50Ms), fmtMs(r.VisibleP90Ms), fmtMs(r.VisibleP99Ms), fmtMs(r.VisibleMaxMs))
		if r.EnqueueP50Ms != nil {
			s += fmt.Sprintf("; Enqueue call p50 %s ms", fmtMs(r.EnqueueP50Ms))
		}
		return s
	case benchmark.Scale:
		return fmt.Sprintf("percentiles: %s, on %s rows (%s pending); completion p50 %s, p99 %s ms; Stats %s ms (max %s); seeded (%s) in %.1fs",
			r.PercentilesOf, thousands(r.Rows), thousands(int64(r.Pending)), fmtMs(r.FinishP50Ms), fmtMs(r.FinishP99Ms),
			fmtMs(r.StatsMs), fmtMs(r.StatsMaxMs), r.Seed, r.SeedSeconds)
	case benchmark.Memory:
		return "peak RSS while draining"
	case benchmark.StreamAppend:
		return "tasks: frames written; workers: tasks writing them"
	case benchmark.StreamLag:
		return "percentiles: " + r.PercentilesOf + "; tasks: frames"
	}
	return ""
}

// fmtMs shows milliseconds: "-" when not measured.
func fmtMs(v *float64) string {
	switch {
	case v == nil:
		return "-"
	case *v < 10:
		return strconv.FormatFloat(*v, 'f', 2, 64)
	case *v < 100:
		return strconv.FormatFloat(*v, 'f', 1, 64)
	}
	return strconv.FormatFloat(*v, 'f', 0, 64)
}

// thousands shows n with comma separators: 1,000,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
