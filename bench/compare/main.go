// Command compare runs Weft's benchmark scenarios on Weft and on other
// durable queues, on SQLite and on PostgreSQL, alternating runs, each run on
// a fresh database, and prints each run and a summary of medians and
// ratios. It lives in its own module so that Weft never depends on a
// competitor.
//
//	go run ./compare -backend all -runs 3
//
// The contenders (-systems), each on the backends it supports:
//
//   - weft: Weft's SQLite store (synchronous=FULL, its default) and its
//     PostgreSQL store.
//   - river: River with riverpgxv5 on PostgreSQL and with riversqlite
//     (database/sql on mattn/go-sqlite3, one connection, WAL,
//     synchronous=FULL) on SQLite.
//   - goqite: goqite's job runner on its queue, on SQLite (same settings as
//     River's). Not on PostgreSQL: see goqitePostgresSkipped.
//   - raw: Weft's own claim and complete statements in a tight loop on one
//     connection, no engine: the practical limit of each database for
//     Weft's schema (burn-down only; see rawSystem).
//
// The scenarios (-scenarios), as in Weft's benchmark_test.go:
//
//   - burndown: insert -tasks no-op tasks (not timed), then time from
//     starting -workers workers until the last completion is recorded.
//   - insert: time enqueueing -tasks tasks in batches of 1,000.
//   - latency: enqueue -samples tasks one at a time, one every -interval,
//     into a running consumer with -workers workers; percentiles of
//     enqueue-to-handler-start. Polling systems keep their default poll
//     intervals unless -poll is set.
//
// Every system gets the same task and worker counts; a system that cannot
// run that many workers runs its maximum and a note says so. PostgreSQL
// systems get pools of 20 connections. Each run gets its own SQLite file
// in a temporary directory, or its own PostgreSQL schema (selected by
// search_path, dropped afterwards). Within a run, the order of the systems
// rotates from one run to the next, so no system always runs first.
//
// With -json, each run is printed as one JSON object per line on stdout
// (fields scenario, system, backend, tasks, workers, seconds,
// tasks_per_sec, p50_ms, p90_ms, p99_ms, max_ms, run; the percentiles are
// null outside the latency scenario), and the summary goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	server         string
	backends       []string
	systems        []string
	scenarios      []string
	tasks, workers int
	runs           int
	latency        latencyParams
	timeout        time.Duration
	json           bool
	rawBookkeeping bool
}

func main() {
	var (
		c         config
		backend   string
		systems   string
		scenarios string
	)
	flag.StringVar(&c.server, "db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	flag.StringVar(&backend, "backend", "all", "sqlite, postgres or all")
	flag.StringVar(&systems, "systems", "weft,river,goqite,raw", "comma-separated systems: weft, river, goqite, raw")
	flag.StringVar(&scenarios, "scenarios", "burndown,insert,latency", "comma-separated scenarios: burndown, insert, latency")
	flag.IntVar(&c.tasks, "tasks", 100_000, "tasks per burn-down and per insert")
	flag.IntVar(&c.workers, "workers", 2000, "workers for every system (River's benchmark uses 2,000)")
	flag.IntVar(&c.runs, "runs", 3, "runs of each system and scenario, alternating")
	flag.IntVar(&c.latency.samples, "samples", 2000, "latency samples per run")
	flag.DurationVar(&c.latency.interval, "interval", 2*time.Millisecond, "time between two enqueues in the latency scenario")
	flag.DurationVar(&c.latency.poll, "poll", 0, "poll interval for systems that poll for new work (River's FetchCooldown and FetchPollInterval, goqite's PollInterval); 0 keeps their defaults")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "limit for one run of one scenario")
	flag.BoolVar(&c.json, "json", false, "print one JSON object per run on stdout, the summary on stderr")
	flag.BoolVar(&c.rawBookkeeping, "raw-bookkeeping", false, "make the raw loop also write Weft's counts and event rows")
	flag.Parse()
	c.latency.workers = c.workers
	var err error
	if c.backends, err = oneOf("backend", backend, []string{backendSQLite, backendPostgres}); err == nil {
		if c.systems, err = oneOf("systems", systems, []string{"weft", "river", "goqite", "raw"}); err == nil {
			c.scenarios, err = oneOf("scenarios", scenarios, []string{scenarioBurndown, scenarioInsert, scenarioLatency})
		}
	}
	if err == nil && (c.tasks < 1 || c.workers < 1 || c.runs < 1 || c.latency.samples < 1 || c.latency.interval <= 0) {
		err = errors.New("-tasks, -workers, -runs, -samples and -interval must be positive")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		flag.Usage()
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// oneOf splits a comma list and checks it against the allowed values;
// "all" means every allowed value. The result keeps the allowed order.
func oneOf(flagName, list string, allowed []string) ([]string, error) {
	if list == "all" {
		return allowed, nil
	}
	var out []string
	for _, v := range strings.Split(list, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(allowed, v) {
			return nil, fmt.Errorf("-%s: %q is not one of %s", flagName, v, strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(allowed, a) - slices.Index(allowed, b) })
	return out, nil
}

// newSystem builds a contender on a backend.
func newSystem(name, backend string, c config) system {
	switch name {
	case "weft":
		return weftSystem{be: backend}
	case "river":
		return riverSystem{be: backend}
	case "goqite":
		return goqiteSystem{be: backend}
	default:
		return rawSystem{be: backend, bookkeeping: c.rawBookkeeping}
	}
}

func run(c config) error {
	// Run lines and JSON go to stdout; with -json, the human-readable
	// summary and notes go to stderr so that stdout stays JSON lines.
	out, human := io.Writer(os.Stdout), io.Writer(os.Stdout)
	if c.json {
		human = os.Stderr
	}
	rep := newReport(out, human, c.json)
	byBackend := map[string][]system{}
	for _, be := range c.backends {
		for _, name := range c.systems {
			sys := newSystem(name, be, c)
			if u, ok := sys.(interface{ unsupported() string }); ok && u.unsupported() != "" {
				rep.note("%s on %s not run: %s", name, be, u.unsupported())
				continue
			}
			byBackend[be] = append(byBackend[be], sys)
		}
	}
	// Worker caps are reported once, before any run.
	for _, be := range c.backends {
		for _, sys := range byBackend[be] {
			if limit, why := sys.maxWorkers(); limit > 0 && limit < c.workers {
				rep.note("%s on %s runs %d workers, not %d: %s", sys.name(), be, limit, c.workers, why)
			}
		}
	}
	if c.latency.poll > 0 {
		rep.note("latency: polling systems poll every %s (-poll); Weft is unaffected: it is woken by its store", c.latency.poll)
	}
	// An interrupt ends the current run through its context, so that its
	// database is still removed, and prints the summary so far.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	skipped := map[string]bool{}
	for r := 1; r <= c.runs && ctx.Err() == nil; r++ {
		for _, sc := range c.scenarios {
			for _, be := range c.backends {
				systems := byBackend[be]
				if len(systems) == 0 {
					continue
				}
				// Rotate the order from run to run: whoever runs first
				// meets a colder cache and a fresher disk.
				k := (r - 1) % len(systems)
				order := append(slices.Clone(systems[k:]), systems[:k]...)
				for _, sys := range order {
					key := sc + "/" + sys.name() + "/" + be
					if skipped[key] || ctx.Err() != nil {
						continue
					}
					res, err := runOne(ctx, c, sys, sc, r)
					var se *skipError
					switch {
					case errors.As(err, &se):
						skipped[key] = true
						rep.note("%s on %s, %s: %s", sys.name(), be, sc, se.reason)
					case err != nil:
						rep.fail(r, sc, sys, err)
					default:
						rep.add(res)
					}
				}
			}
		}
	}
	rep.summary()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// runOne runs one scenario of one system on a fresh database.
func runOne(parent context.Context, c config, sys system, scenario string, run int) (result, error) {
	workers := c.workers
	if limit, _ := sys.maxWorkers(); limit > 0 && limit < workers {
		workers = limit
	}
	db, err := newTarget(sys.backend(), c.server)
	if err != nil {
		return result{}, fmt.Errorf("fresh database: %w", err)
	}
	defer db.cleanup()
	// Start every run with the previous run's garbage collected, so that
	// no system pays for another's allocations.
	runtime.GC()
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	before, cpuOK := readCPU()
	res := result{Scenario: scenario, System: sys.name(), Backend: sys.backend(), Tasks: c.tasks, Workers: workers, Run: run}
	var m measure
	switch scenario {
	case scenarioBurndown:
		m, err = sys.burndown(ctx, db, c.tasks, workers)
	case scenarioInsert:
		// An insert runs no workers.
		res.Workers = 0
		m, err = sys.insert(ctx, db, c.tasks)
	case scenarioLatency:
		p := c.latency
		p.workers = workers
		res.Tasks = p.samples
		m, err = sys.latency(ctx, db, p)
	}
	if err != nil {
		return result{}, err
	}
	res.setMeasure(m)
	res.SelfCPU, res.OtherCPU = -1, -1
	if after, ok := readCPU(); ok && cpuOK {
		res.SelfCPU, res.OtherCPU = cpuShares(before, after)
	}
	return res, nil
}
