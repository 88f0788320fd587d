package weft_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/benchmark"
	"github.com/weftworks/weft/store"
)

// The waits benchmarks, on SQLite or (WEFT_BENCH_POSTGRES_URL) PostgreSQL:
//
//   - BenchmarkSignalLatency: WEFT_BENCH_SAMPLES tasks (default 2,000)
//     suspend on a waitpoint each; then, one every 2ms, each is signalled
//     by token with Client.Signal. Percentiles of the time from the Signal
//     call to its task's handler starting again, the call included (as
//     BenchmarkLatency includes the Enqueue call); signal_p50_ms is the
//     call alone.
//   - BenchmarkClaimsWithWaiting: the p50 and p99 of single-task claims
//     (each completed before the next) of WEFT_BENCH_CLAIMS no-op tasks
//     (default 1,000), first on an empty table, then with
//     WEFT_BENCH_WAITING tasks (default 100,000) waiting on waitpoints in
//     the same queue, suspended through the engine. Both are measured
//     after the database settled (benchmark.DB.Settle).

// waitArgs is a task that waits for a signal on its first run.
type waitArgs struct {
	N int `json:"n"`
}

// Kind implements weft.TaskArgs.
func (waitArgs) Kind() string { return "bench.wait" }

// waiters runs waitArgs tasks: each suspends on its waitpoint "go" until
// signalled, and reports its token on its first run and its start time
// on its second.
type waiters struct {
	tokens  chan<- token
	resumed func(n int, at time.Time)
}

type token struct {
	n   int
	tok string
}

func (w waiters) register(ws *weft.Workers) {
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[waitArgs]) error {
		start := time.Now()
		wp, err := t.Waitpoint(ctx, "go", nil)
		if err != nil {
			return err
		}
		if wp.Resolved {
			if w.resumed != nil {
				w.resumed(t.Args.N, start)
			}
			return nil
		}
		if w.tokens != nil {
			w.tokens <- token{t.Args.N, wp.Token}
		}
		return weft.Wait(weft.WaitFor{Waitpoints: []string{"go"}, Timeout: 24 * time.Hour})
	})
}

// enqueueWaiters enqueues n waitArgs tasks in batches.
func enqueueWaiters(ctx context.Context, c *weft.Client, n int) error {
	params := make([]weft.EnqueueParams, 0, benchmark.BatchSize)
	for done := 0; done < n; done += len(params) {
		params = params[:0]
		for i := range min(benchmark.BatchSize, n-done) {
			params = append(params, weft.EnqueueParams{Args: waitArgs{N: done + i}})
		}
		if _, err := c.EnqueueMany(ctx, params); err != nil {
			return fmt.Errorf("enqueue waiters: %w", err)
		}
	}
	return nil
}

// awaitWaiting polls the queue counts until n tasks wait.
func awaitWaiting(ctx context.Context, c *weft.Client, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		stats, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		var waiting int64
		for _, q := range stats {
			waiting += q.Counts[weft.StateWaiting]
		}
		if waiting >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d tasks wait after %s", waiting, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func BenchmarkSignalLatency(b *testing.B) {
	n := envInt("WEFT_BENCH_SAMPLES", benchmark.DefaultSamples)
	for i := 0; i < b.N; i++ {
		latency, calls, err := signalLatency(b, n)
		if err != nil {
			b.Fatal(err)
		}
		p, c := benchmark.Summarize(latency), benchmark.Summarize(calls)
		b.ReportMetric(benchmark.Millis(p.P50), "p50_ms")
		b.ReportMetric(benchmark.Millis(p.P90), "p90_ms")
		b.ReportMetric(benchmark.Millis(p.P99), "p99_ms")
		b.ReportMetric(benchmark.Millis(p.Max), "max_ms")
		b.ReportMetric(benchmark.Millis(c.P50), "signal_p50_ms")
	}
}

// signalLatency suspends n tasks, then signals them one every 2ms, and
// returns each one's signal-to-handler-start time and each Signal call's.
func signalLatency(b *testing.B, n int) (latency, calls []time.Duration, err error) {
	ctx := context.Background()
	db, err := benchTarget(b).Open(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	var (
		sent    = make([]atomic.Int64, n) // when each task's signal was sent
		mu      sync.Mutex
		all     = make(chan struct{})
		tokens  = make(chan token, n)
		started = make([]time.Duration, 0, n)
	)
	ws := weft.NewWorkers()
	waiters{tokens: tokens, resumed: func(i int, at time.Time) {
		d := at.Sub(time.Unix(0, sent[i].Load()))
		mu.Lock()
		defer mu.Unlock()
		started = append(started, d)
		if len(started) == n {
			close(all)
		}
	}}.register(ws)
	c, err := weft.NewClient(db.Store, &weft.Config{Workers: ws, Queues: map[string]weft.QueueConfig{store.DefaultQueue: {MaxWorkers: 100}}})
	if err != nil {
		return nil, nil, err
	}
	if err := enqueueWaiters(ctx, c, n); err != nil {
		return nil, nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer func() { err = errors.Join(err, c.Stop(context.WithoutCancel(ctx))) }()
	if err := awaitWaiting(ctx, c, int64(n), 5*time.Minute); err != nil {
		return nil, nil, err
	}
	toks := make([]string, n)
	for range n {
		t := <-tokens
		toks[t.n] = t.tok
	}
	b.ResetTimer()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	calls = make([]time.Duration, 0, n)
	for i, tok := range toks {
		<-tick.C
		t0 := time.Now()
		sent[i].Store(t0.UnixNano())
		rec, err := c.Signal(ctx, tok, weft.SignalParams{Name: "go", Key: "k"})
		if err != nil {
			return nil, nil, err
		}
		if !rec.Resumed {
			return nil, nil, fmt.Errorf("signal %d did not resume its task", i)
		}
		calls = append(calls, time.Since(t0))
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		return nil, nil, errors.New("not every signalled task started again within a minute")
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	return started, calls, nil
}

func BenchmarkClaimsWithWaiting(b *testing.B) {
	waiting := envInt("WEFT_BENCH_WAITING", 100_000)
	claims := envInt("WEFT_BENCH_CLAIMS", benchmark.DefaultClaims)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		db, err := benchTarget(b).Open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		without, err := timeClaims(ctx, db, claims)
		if err != nil {
			b.Fatal(err)
		}
		seeded := time.Now()
		if err := seedWaiting(ctx, db, waiting); err != nil {
			b.Fatal(err)
		}
		seed := time.Since(seeded)
		with, err := timeClaims(ctx, db, claims)
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(benchmark.Millis(without.P50), "claim_p50_ms")
		b.ReportMetric(benchmark.Millis(without.P99), "claim_p99_ms")
		b.ReportMetric(benchmark.Millis(with.P50), "claim_p50_ms_waiting")
		b.ReportMetric(benchmark.Millis(with.P99), "claim_p99_ms_waiting")
		b.ReportMetric(seed.Seconds(), "seed_s")
	}
}

// timeClaims settles the database, enqueues n no-op tasks and times their
// single-task claims; each claimed task is completed before the next
// claim.
func timeClaims(ctx context.Context, db *benchmark.DB, n int) (benchmark.Percentiles, error) {
	c, err := weft.NewClient(db.Store, nil)
	if err != nil {
		return benchmark.Percentiles{}, err
	}
	if _, err := benchmark.EnqueueNoops(ctx, c, n, nil); err != nil {
		return benchmark.Percentiles{}, err
	}
	if err := db.Settle(ctx); err != nil {
		return benchmark.Percentiles{}, err
	}
	st := db.Store
	samples := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		tasks, err := st.Claim(ctx, store.ClaimRequest{Owner: "bench", LeaseTTL: time.Minute, Kinds: []string{"bench.noop"},
			Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: 1}}})
		if err != nil {
			return benchmark.Percentiles{}, fmt.Errorf("claim %d: %w", i, err)
		}
		samples = append(samples, time.Since(t0))
		if len(tasks) != 1 {
			return benchmark.Percentiles{}, fmt.Errorf("claim %d: %d tasks", i, len(tasks))
		}
		res, err := st.Finish(ctx, []store.Outcome{{TaskID: tasks[0].ID, Epoch: tasks[0].LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}})
		if err == nil {
			err = res[0].Err
		}
		if err != nil {
			return benchmark.Percentiles{}, fmt.Errorf("complete %d: %w", i, err)
		}
	}
	return benchmark.Summarize(samples), nil
}

// seedWaiting makes n tasks wait on a waitpoint each, through the engine:
// enqueued, run, suspended.
func seedWaiting(ctx context.Context, db *benchmark.DB, n int) (err error) {
	ws := weft.NewWorkers()
	waiters{}.register(ws)
	c, err := weft.NewClient(db.Store, &weft.Config{Workers: ws, Queues: map[string]weft.QueueConfig{store.DefaultQueue: {MaxWorkers: benchmark.DefaultWorkers}}})
	if err != nil {
		return err
	}
	if err := enqueueWaiters(ctx, c, n); err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Stop(context.WithoutCancel(ctx))) }()
	return awaitWaiting(ctx, c, int64(n), 30*time.Minute)
}
