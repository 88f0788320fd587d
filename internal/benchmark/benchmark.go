// Package benchmark holds Weft's benchmark scenarios, shared by `weft
// bench` and the Go benchmarks of the root package. Every scenario drives
// the engine and stores that users run — weft.Client, store.Store — with
// no benchmark-only path, on a fresh database made for the run (see
// Target), and returns a Result.
//
// Scenarios:
//
//   - burndown: N no-op tasks are enqueued in batches of 1,000, then a
//     client with W workers is started; the figure is from Start until
//     Stop returned after the last completion (Stop returns once every
//     outcome is recorded).
//   - insert: N no-op tasks enqueued in batches of 1,000; percentiles are
//     per batch.
//   - latency: tasks enqueued one at a time, one every Interval, into a
//     running client; percentiles of enqueue-to-handler-start, and of
//     enqueue-to-completion-visible (see below).
//   - xlatency: the same with the producer in another process, on the same
//     database.
//   - scale: a table of N rows (90% completed, 10% pending), brought to a
//     steady state (see DB.Settle), and the time of single-task claims and
//     of queue statistics at that size.
//   - memory: the peak resident set size while W workers drain N pending
//     tasks.
//   - flow-submit, flow-burndown, flow-latency: flows (see flows.go).
//   - stream-append, stream-lag: output streams (see streams.go).
//   - limit-keys, limit-hotkey: limits (see limits.go).
//
// Completion visibility is measured without touching the engine: when a
// handler starts, it hands the task to an observer goroutine, which reads
// the task back with store.Get every 200µs until it reads it completed
// (pausing longer when reads are slow, so that they never take more than a
// fifth of one connection). The figure is the time from the enqueue until
// that read returned: an upper bound, within one poll interval plus one
// read, of when a reader could first have seen the outcome. Only tasks
// already started are polled, so at one task every 2ms the observer makes
// a few reads per task.
package benchmark

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
)

// Scenario names a benchmark scenario.
type Scenario string

// The scenarios, as `weft bench --scenario` names them.
const (
	Burndown Scenario = "burndown"
	Insert   Scenario = "insert"
	Latency  Scenario = "latency"
	XLatency Scenario = "xlatency"
	Scale    Scenario = "scale"
	Memory   Scenario = "memory"
)

// Scenarios lists every scenario, in the order `all` runs them.
func Scenarios() []Scenario {
	return []Scenario{Burndown, Insert, Latency, XLatency, Scale, Memory, FlowSubmit, FlowBurndown, FlowLatency, StreamAppend, StreamLag, LimitKeys, LimitHotKey}
}

// ParseScenarios reads a comma-separated list of scenario names, or "all".
// Duplicates are dropped; the order given is kept.
func ParseScenarios(s string) ([]Scenario, error) {
	var out []Scenario
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "all" {
			for _, sc := range Scenarios() {
				if !slices.Contains(out, sc) {
					out = append(out, sc)
				}
			}
			continue
		}
		sc := Scenario(name)
		if !slices.Contains(Scenarios(), sc) {
			return nil, fmt.Errorf("%q is not a scenario (use %s, or all)", name, joinScenarios())
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scenario given")
	}
	return out, nil
}

func joinScenarios() string {
	var names []string
	for _, sc := range Scenarios() {
		names = append(names, string(sc))
	}
	return strings.Join(names, ", ")
}

// Defaults of Options.
const (
	// DefaultTasks is the size of burndown and insert.
	DefaultTasks = 100_000
	// DefaultLargeTasks is the size of scale and memory.
	DefaultLargeTasks = 1_000_000
	// DefaultWorkers is the concurrency of the engine, as in River's
	// benchmark.
	DefaultWorkers = 2000
	// DefaultSamples is how many tasks latency and xlatency time.
	DefaultSamples = 2000
	// DefaultInterval is the time between two latency samples' enqueues.
	DefaultInterval = 2 * time.Millisecond
	// DefaultClaims is how many single-task claims scale times.
	DefaultClaims = 1000
	// BatchSize is the batch of every bulk enqueue.
	BatchSize = 1000
)

// Options sizes and instruments a scenario. Zero fields take the defaults.
type Options struct {
	// Tasks is how many tasks burndown and insert enqueue (default
	// 100,000), how many rows scale's table holds and how many tasks
	// memory drains (default 1,000,000).
	Tasks int
	// Workers is the engine's concurrency in burndown, latency, xlatency
	// and memory. Default 2,000.
	Workers int
	// Samples is how many tasks latency and xlatency time. Default 2,000.
	Samples int
	// Interval is the time between two enqueues of latency and xlatency.
	// Default 2ms.
	Interval time.Duration
	// Claims is how many single-task claims scale times, at most its
	// pending rows. Default 1,000.
	Claims int
	// SeedSQL makes scale write its completed rows straight into the
	// SQLite file (see SeedCompleted) instead of enqueueing, claiming and
	// completing them through the store: far faster at 10^7 rows.
	SeedSQL bool
	// Producer builds the command of xlatency's producer process, which
	// must call Produce with the arguments given. Required for xlatency.
	Producer func(ctx context.Context, p ProducerArgs) *exec.Cmd
	// Progress, when set, is told how far the scenario got: done out of
	// total in phase (such as "insert", "drain", "seed"). Calls never
	// overlap.
	Progress func(done, total int, phase string)
	// Tune, when set, adjusts the configuration of the scenario's client
	// before it is created (the retention benchmark turns retention on
	// with it).
	Tune func(*weft.Config)
}

// withDefaults fills the zero fields for scenario sc.
func (o Options) withDefaults(sc Scenario) Options {
	if o.Tasks <= 0 {
		o.Tasks = DefaultTasks
		if sc == Scale || sc == Memory {
			o.Tasks = DefaultLargeTasks
		}
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Samples <= 0 {
		o.Samples = DefaultSamples
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Claims <= 0 {
		o.Claims = DefaultClaims
	}
	return o
}

// Result is the outcome of one run of a scenario. Latency percentiles are
// null when the scenario does not time single operations; PercentilesOf
// says what they time otherwise.
type Result struct {
	Scenario Scenario `json:"scenario"`
	Backend  string   `json:"backend"`
	// Sync is SQLite's synchronous setting.
	Sync string `json:"sync,omitempty"`
	// Run numbers the runs of a scenario from 1; a median has none.
	Run int `json:"run,omitempty"`
	// MedianOf is set on a median of runs (see Median): how many.
	MedianOf int `json:"median_of,omitempty"`
	// Tasks is how many tasks the scenario enqueued, drained or timed
	// (the samples for latency and xlatency, the table's rows for scale).
	Tasks int `json:"tasks"`
	// Workers is the engine's concurrency; 0 when no engine ran.
	Workers int `json:"workers"`
	// Seconds is the measured time: the drain, the inserts, from the first
	// enqueue to the last completion seen, or scale's claims.
	Seconds     float64 `json:"seconds"`
	TasksPerSec float64 `json:"tasks_per_sec"`
	// PercentilesOf names what P50Ms…MaxMs time.
	PercentilesOf string   `json:"percentiles_of,omitempty"`
	P50Ms         *float64 `json:"p50_ms"`
	P90Ms         *float64 `json:"p90_ms"`
	P99Ms         *float64 `json:"p99_ms"`
	MaxMs         *float64 `json:"max_ms"`
	// PeakRSSMB is the process's peak resident set size during the run
	// (for memory: during the drain), in MiB; see resetPeakRSS.
	PeakRSSMB float64 `json:"peak_rss_mb"`

	// Enqueue-to-completion-visible, for latency and xlatency.
	VisibleP50Ms *float64 `json:"visible_p50_ms,omitempty"`
	VisibleP90Ms *float64 `json:"visible_p90_ms,omitempty"`
	VisibleP99Ms *float64 `json:"visible_p99_ms,omitempty"`
	VisibleMaxMs *float64 `json:"visible_max_ms,omitempty"`
	// EnqueueP50Ms is the median time of the Enqueue call itself (its
	// durable commit), in process; part of the latency above.
	EnqueueP50Ms *float64 `json:"enqueue_p50_ms,omitempty"`

	// Rows is the size of scale's table when it was measured.
	Rows int64 `json:"rows,omitempty"`
	// Pending is how many of scale's rows were pending.
	Pending int `json:"pending,omitempty"`
	// Seed says how scale's completed rows were written: "api" (enqueued,
	// claimed and completed through the store) or "sql" (SeedCompleted).
	Seed        string  `json:"seed,omitempty"`
	SeedSeconds float64 `json:"seed_seconds,omitempty"`
	// FinishP50Ms and FinishP99Ms time the completion of each claimed task.
	FinishP50Ms *float64 `json:"finish_p50_ms,omitempty"`
	FinishP99Ms *float64 `json:"finish_p99_ms,omitempty"`
	// StatsMs is the median time of store.Stats, StatsMaxMs the slowest.
	StatsMs    *float64 `json:"stats_ms,omitempty"`
	StatsMaxMs *float64 `json:"stats_max_ms,omitempty"`
}

// setPercentiles fills the percentile fields from p.
func (r *Result) setPercentiles(of string, p Percentiles) {
	r.PercentilesOf = of
	r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs = msPtr(p.P50), msPtr(p.P90), msPtr(p.P99), msPtr(p.Max)
}

// Run runs scenario sc once on a fresh database made by t, and removes the
// database afterwards.
func Run(ctx context.Context, t Target, sc Scenario, o Options) (res Result, err error) {
	db, err := t.Open(ctx)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove benchmark database: %w", cerr))
		}
	}()
	return RunOn(ctx, db, sc, o)
}

// RunOn runs scenario sc once on db, which should be fresh (the Go
// benchmarks seed it first for their own variants).
func RunOn(ctx context.Context, db *DB, sc Scenario, o Options) (Result, error) {
	o = o.withDefaults(sc)
	resetPeakRSS()
	r := &runner{db: db, o: o, log: db.logger, progress: newProgress(o.Progress)}
	var (
		res Result
		err error
	)
	switch sc {
	case Burndown:
		res, err = r.burndown(ctx, false)
	case Memory:
		res, err = r.burndown(ctx, true)
	case Insert:
		res, err = r.insert(ctx)
	case Latency:
		res, err = r.latency(ctx, false)
	case XLatency:
		res, err = r.latency(ctx, true)
	case Scale:
		res, err = r.scale(ctx)
	case FlowSubmit:
		res, err = r.flowSubmit(ctx)
	case FlowBurndown:
		res, err = r.flowBurndown(ctx)
	case FlowLatency:
		res, err = r.flowLatency(ctx)
	case StreamAppend:
		res, err = r.streamAppend(ctx)
	case StreamLag:
		res, err = r.streamLag(ctx)
	case LimitKeys:
		res, err = r.limitKeys(ctx)
	case LimitHotKey:
		res, err = r.limitHotKey(ctx)
	default:
		return Result{}, fmt.Errorf("unknown scenario %q", sc)
	}
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", sc, err)
	}
	res.Scenario, res.Backend, res.Sync = sc, db.Backend, string(db.Sync)
	if res.Seconds > 0 && res.TasksPerSec == 0 {
		res.TasksPerSec = float64(res.Tasks) / res.Seconds
	}
	res.PeakRSSMB = peakRSSMB()
	return res, nil
}

// runner runs one scenario on one database.
type runner struct {
	db       *DB
	o        Options
	log      *slog.Logger
	progress *progress
}

// config is the client configuration of a scenario with workers ws;
// pollInterval 0 keeps the default.
func (r *runner) config(ws *weft.Workers, pollInterval time.Duration) *weft.Config {
	cfg := &weft.Config{
		Workers:      ws,
		Queues:       map[string]weft.QueueConfig{"default": {MaxWorkers: r.o.Workers}},
		PollInterval: pollInterval,
		Logger:       r.log,
	}
	if r.o.Tune != nil {
		r.o.Tune(cfg)
	}
	return cfg
}

// progress serialises calls of an Options.Progress callback.
type progress struct {
	mu sync.Mutex
	fn func(done, total int, phase string)
}

func newProgress(fn func(done, total int, phase string)) *progress {
	return &progress{fn: fn}
}

// report calls the callback, if any.
func (p *progress) report(done, total int, phase string) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fn(done, total, phase)
}

// watch reports done() out of total every 200ms until the returned
// function is called, which reports once more and returns after the last
// report.
func (p *progress) watch(total int, phase string, done func() int) (stop func()) {
	if p.fn == nil {
		return func() {}
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				p.report(done(), total, phase)
				return
			case <-tick.C:
				p.report(done(), total, phase)
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// stopClient stops c, giving running handlers a bounded time even when
// ctx is already cancelled.
func stopClient(ctx context.Context, c *weft.Client) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		return fmt.Errorf("stop the client: %w", err)
	}
	return nil
}

// ProducerArgs is what xlatency's producer process is asked to do.
type ProducerArgs struct {
	// DSN opens the benchmark's database (DB.DSN).
	DSN string
	// Samples is how many tasks to enqueue, one every Interval.
	Samples  int
	Interval time.Duration
	// Sync is SQLite's synchronous setting for the producer's commits.
	Sync sqlite.Synchronous
}
