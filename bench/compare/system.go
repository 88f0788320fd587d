package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The backends a system runs on.
const (
	backendSQLite   = "sqlite"
	backendPostgres = "postgres"
)

// The scenarios, in the order they run and are reported.
const (
	scenarioBurndown = "burndown"
	scenarioInsert   = "insert"
	scenarioLatency  = "latency"
)

// insertBatch is the batch size of every batch insert, as in Weft's own
// BenchmarkInsert and in River's benchmark.
const insertBatch = 1000

// pgPoolConns is the connection pool size every PostgreSQL contender gets,
// so that no system wins by having more connections than another.
const pgPoolConns = 20

// system is one contender on one backend. Every scenario method gets a
// fresh, empty database of its own and returns what it measured; a
// scenario the system cannot run returns a skipError saying why.
type system interface {
	// name is the contender: weft, river, goqite or raw.
	name() string
	// backend is backendSQLite or backendPostgres.
	backend() string
	// maxWorkers is the most workers the system runs with (0: no limit)
	// and why, printed as a note when it is below -workers.
	maxWorkers() (int, string)
	// burndown inserts n no-op tasks (not timed), then times from starting
	// the workers until the last completion is recorded.
	burndown(ctx context.Context, db *target, n, workers int) (measure, error)
	// insert times enqueueing n tasks in batches of insertBatch.
	insert(ctx context.Context, db *target, n int) (measure, error)
	// latency enqueues p.samples tasks one at a time, one every
	// p.interval, into a running consumer, and returns each task's
	// enqueue-to-handler-start time.
	latency(ctx context.Context, db *target, p latencyParams) (measure, error)
}

// measure is what one scenario run measured.
type measure struct {
	// elapsed is the timed part of the run.
	elapsed time.Duration
	// samples are enqueue-to-handler-start latencies (latency only).
	samples []time.Duration
}

// latencyParams configures the latency scenario.
type latencyParams struct {
	samples  int
	interval time.Duration
	workers  int
	// poll, when positive, replaces the polling intervals of the systems
	// that find new work by polling (River's fetch cooldown and poll,
	// goqite's runner poll); zero keeps each system's defaults.
	poll time.Duration
}

// skipError is returned by a scenario a system cannot run meaningfully.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

func skip(reason string) error { return &skipError{reason: reason} }

// target is one fresh database for one run: an SQLite file in its own
// temporary directory, or a PostgreSQL schema selected by search_path. Its
// cleanup removes it.
type target struct {
	backend string
	// path is the SQLite file, which does not exist yet.
	path string
	// dsn is the PostgreSQL URL of the schema, for single connections and
	// database/sql pools (pgx rejects pool settings outside pgxpool).
	dsn string
	// poolDSN is dsn with pool_max_conns, for pgxpool-based systems.
	poolDSN string
	cleanup func()
}

// newTarget creates a fresh database on the backend.
func newTarget(backend, server string) (*target, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	if backend == backendSQLite {
		dir, err := os.MkdirTemp("", "weft-compare-")
		if err != nil {
			return nil, err
		}
		return &target{backend: backend, path: filepath.Join(dir, "bench.db"), cleanup: func() { os.RemoveAll(dir) }}, nil
	}
	ctx := context.Background()
	schema := "compare_" + suffix
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return nil, err
	}
	u, err := url.Parse(server)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dsn := u.String()
	q.Set("pool_max_conns", fmt.Sprint(pgPoolConns))
	u.RawQuery = q.Encode()
	drop := func() {
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			fmt.Fprintln(os.Stderr, "compare: drop schema:", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "compare: drop schema:", err)
		}
	}
	return &target{backend: backend, dsn: dsn, poolDSN: u.String(), cleanup: drop}, nil
}

// discard is the logger every system gets: logging is not under test.
var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// countdown closes done when the n-th task has been handled.
type countdown struct {
	n    int64
	seen atomic.Int64
	done chan struct{}
}

func newCountdown(n int) *countdown {
	return &countdown{n: int64(n), done: make(chan struct{})}
}

// hit records one handled task.
func (c *countdown) hit() {
	if c.seen.Add(1) == c.n {
		close(c.done)
	}
}

// wait blocks until every task was handled or ctx ends.
func (c *countdown) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d of %d tasks handled: %w", c.seen.Load(), c.n, ctx.Err())
	}
}

// stamps collects enqueue-to-handler-start latencies. Every system's
// latency handler calls record with the enqueue time carried in the task's
// arguments, so all of them measure the same span.
type stamps struct {
	mu      sync.Mutex
	samples []time.Duration
	want    int
	done    chan struct{}
}

func newStamps(want int) *stamps {
	return &stamps{samples: make([]time.Duration, 0, want), want: want, done: make(chan struct{})}
}

// record takes one sample, t0 being the enqueue time in Unix nanoseconds.
func (s *stamps) record(t0 int64) {
	d := time.Duration(time.Now().UnixNano() - t0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, d)
	if len(s.samples) == s.want {
		close(s.done)
	}
}

// wait returns the samples once all arrived.
func (s *stamps) wait(ctx context.Context) ([]time.Duration, error) {
	select {
	case <-s.done:
	case <-ctx.Done():
		s.mu.Lock()
		got := len(s.samples)
		s.mu.Unlock()
		return nil, fmt.Errorf("%d of %d latency samples arrived: %w", got, s.want, ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.samples...), nil
}

// enqueueEvery calls enqueue n times, one call every interval, with the
// call's start in Unix nanoseconds: the producer side of every latency
// run, as in Weft's BenchmarkLatency.
func enqueueEvery(ctx context.Context, n int, interval time.Duration, enqueue func(t0 int64) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := enqueue(time.Now().UnixNano()); err != nil {
			return fmt.Errorf("enqueue %d: %w", i, err)
		}
	}
	return nil
}

// runLatency is the shape of every latency run: start the consumer,
// produce the samples, wait for them, stop the consumer.
func runLatency(ctx context.Context, p latencyParams, st *stamps, enqueue func(t0 int64) error, stop func() error) (measure, error) {
	start := time.Now()
	if err := enqueueEvery(ctx, p.samples, p.interval, enqueue); err != nil {
		return measure{}, errors.Join(err, stop())
	}
	samples, err := st.wait(ctx)
	elapsed := time.Since(start)
	if err := errors.Join(err, stop()); err != nil {
		return measure{}, err
	}
	return measure{elapsed: elapsed, samples: samples}, nil
}

// cpuSample is a reading of the machine's and this process's CPU time,
// to show how much of the machine other processes took during a run: the
// figures of a run that shared the cores are not comparable.
type cpuSample struct {
	at         time.Time
	busy, idle uint64 // machine-wide, in clock ticks (/proc/stat)
	self       time.Duration
}

// readCPU samples; on a system without /proc/stat it returns false.
func readCPU() (cpuSample, bool) {
	s := cpuSample{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s, false
	}
	// user nice system idle iowait irq softirq steal …
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return s, false
		}
		if i == 3 || i == 4 {
			s.idle += n
		} else {
			s.busy += n
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, false
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return s, true
}

// cpuShares returns, between two samples, the share of the machine's CPU
// used by this process and by everything else (a PostgreSQL server
// included), in percent of all cores.
func cpuShares(a, b cpuSample) (self, other float64) {
	ticks := float64((b.busy + b.idle) - (a.busy + a.idle))
	if ticks <= 0 {
		return 0, 0
	}
	busy := float64(b.busy-a.busy) / ticks
	cores := float64(runtime.NumCPU())
	self = (b.self - a.self).Seconds() / (b.at.Sub(a.at).Seconds() * cores)
	return 100 * self, 100 * max(0, busy-self)
}
