//go:build linux

package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// soakArgs is every task of the soak; Mode says what its handler does and
// Due when it was meant to start, for the enqueue-to-start latency.
type soakArgs struct {
	Mode string    `json:"mode"`
	Due  time.Time `json:"due"`
}

func (soakArgs) Kind() string { return "soak.task" }

// The soak's modes.
const (
	modeOK      = "ok"      // completes
	modeDelayed = "delayed" // completes, enqueued with a delay
	modeFlaky   = "flaky"   // fails twice, then completes
	modeDoomed  = "doomed"  // fails both its attempts
	modeLong    = "long"    // runs until cancelled while running
	modeCancel  = "cancel"  // cancelled while pending; never runs
	modeSlow    = "slow"    // 20ms each on a queue with two workers
)

var soakModes = []string{modeOK, modeDelayed, modeFlaky, modeDoomed, modeLong, modeCancel, modeSlow}

// The soak's load, per tick of soakTick: ten ticks a second make about 150
// tasks a second on the default queue, plus a burst of slowBurst tasks on
// the slow queue every slowEvery, which its two workers need 2.5s (more
// under the race detector) to catch up with.
const (
	soakTick  = 100 * time.Millisecond
	slowBurst = 250
	slowEvery = 5 * time.Second
	// soakRetention is the age after which finished tasks are purged.
	soakRetention = 2 * time.Second
)

var soakPerTick = map[string]int{modeOK: 8, modeDelayed: 2, modeFlaky: 2, modeDoomed: 1, modeLong: 1, modeCancel: 1}

// soakDuration is WEFT_SOAK, default 15s.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("WEFT_SOAK")
	if v == "" {
		return 15 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second {
		t.Fatalf("WEFT_SOAK=%q: want a duration of at least 10s, like 10m", v)
	}
	return d
}

// latencyHist counts latencies in logarithmic buckets, so that a run of
// any length keeps a fixed amount of memory for them.
type latencyHist struct {
	n       int
	buckets [200]int
}

// bucket i holds latencies up to 10µs·1.1^i (about 1.9 hours for i=199).
func latencyBucket(d time.Duration) int {
	if d <= 10*time.Microsecond {
		return 0
	}
	return min(int(math.Ceil(math.Log(float64(d)/float64(10*time.Microsecond))/math.Log(1.1))), 199)
}

func (h *latencyHist) add(d time.Duration) {
	h.n++
	h.buckets[latencyBucket(d)]++
}

// quantile returns the upper bound of the bucket holding the q-quantile.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := int(math.Ceil(q * float64(h.n)))
	seen := 0
	for i, c := range h.buckets {
		seen += c
		if seen >= want {
			return time.Duration(float64(10*time.Microsecond) * math.Pow(1.1, float64(i)))
		}
	}
	return time.Hour
}

// soakSample is one second of the soak.
type soakSample struct {
	at         time.Duration
	rss, heap  uint64
	goroutines int
	starts     int
	p99        time.Duration
	backlog    int64 // pending on the slow queue
	rows       int64 // stored tasks in every state
	dbBytes    int64 // database file and WAL
}

// soakState is what the handlers, the producer and the sampler share.
// Counters only: a soak of hours must not grow the test's own memory.
type soakState struct {
	enqueued, runs, finished map[string]*atomic.Int64
	cancelledRunning         atomic.Int64
	errs                     atomic.Int64
	lastErr                  atomic.Value

	mu sync.Mutex
	// second holds this second's latencies.
	second []time.Duration
}

func newSoakState() *soakState {
	s := &soakState{enqueued: map[string]*atomic.Int64{}, runs: map[string]*atomic.Int64{}, finished: map[string]*atomic.Int64{}}
	for _, m := range soakModes {
		s.enqueued[m], s.runs[m], s.finished[m] = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	}
	return s
}

func (s *soakState) fail(err error) {
	s.errs.Add(1)
	s.lastErr.Store(err.Error())
}

// started records a first attempt's enqueue-to-start latency.
func (s *soakState) started(lat time.Duration) {
	s.mu.Lock()
	s.second = append(s.second, lat)
	s.mu.Unlock()
}

// quarterLatency is one quarter's latency: every latency pooled, and the
// p99 of each second. The check uses the median of the seconds' p99s: a
// stall of a shared machine (a neighbour's fsync, a descheduled process)
// spoils a second or two, which the pooled p99 of a short run shows, while
// latency that creeps up shows in most seconds.
type quarterLatency struct {
	all       latencyHist
	perSecond []time.Duration
}

// addSecond adds one second's latencies, whose p99 is p99.
func (q *quarterLatency) addSecond(lats []time.Duration, p99 time.Duration) {
	for _, l := range lats {
		q.all.add(l)
	}
	if len(lats) > 0 {
		q.perSecond = append(q.perSecond, p99)
	}
}

// typical is the median of the seconds' p99s.
func (q *quarterLatency) typical() time.Duration {
	return percentile(slices.Clone(q.perSecond), 0.5)
}

// quarterOf is the quarter of the measured run that the second ending at
// is in, or -1 for the warm-up.
func quarterOf(at, warmup, quarter time.Duration) int {
	if at <= warmup {
		return -1
	}
	return min(int((at-warmup-1)/quarter), 3)
}

// TestSoak runs a mixed load for WEFT_SOAK (default 15s) on a SQLite store
// and samples memory, goroutines and latency every second. After a warm-up
// the measured run is cut in quarters, and the last must look like the
// first: goroutines within +50, live heap at most twice (or 4 MiB more),
// p99 enqueue-to-start latency at most max(4×, 100ms) (the median over the
// quarter of each second's p99), stored rows (kept down by retention) at
// most twice. Every task must end as its mode says.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	warmup := max(3*time.Second, d/10)
	quarter := (d - warmup) / 4
	ctx := context.Background()
	logs := newLogTally()
	defer logs.Report(t, "log of the store and client")
	path := filepath.Join(t.TempDir(), "soak.db")
	// Synchronous NORMAL: the soak looks for growth — leaks, backlogs,
	// latency creeping up — not at the disk. Under FULL every commit
	// waits for an fsync, and on a shared machine the disk's stalls
	// (hundreds of milliseconds when a neighbour writes) would make p99.
	st, err := sqlite.Open(ctx, path, &sqlite.Options{Logger: logs.Logger(), Synchronous: sqlite.SyncNormal})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := newSoakState()
	longStarted := make(chan string, 1024)

	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[soakArgs]) error {
		m := task.Args.Mode
		s.runs[m].Add(1)
		if task.Attempt == 1 && m != modeSlow {
			s.started(time.Since(task.Args.Due))
		}
		switch m {
		case modeFlaky:
			if task.Attempt < 3 {
				return errors.New("flaky: not yet")
			}
		case modeDoomed:
			return errors.New("doomed")
		case modeLong:
			select {
			case longStarted <- task.ID:
			default:
			}
			select {
			case <-ctx.Done():
				if errors.Is(context.Cause(ctx), weft.ErrCancelRequested) {
					s.cancelledRunning.Add(1)
				}
				return ctx.Err()
			case <-time.After(10 * time.Second):
				s.fail(fmt.Errorf("long task %s was not cancelled within 10s", task.ID))
			}
		case modeSlow:
			time.Sleep(20 * time.Millisecond)
		case modeCancel:
			s.fail(fmt.Errorf("task %s, cancelled while pending, ran", task.ID))
		}
		s.finished[m].Add(1)
		return nil
	}, weft.WithBackoff(func(int) time.Duration { return 20 * time.Millisecond }))
	client, err := weft.NewClient(st, &weft.Config{
		Workers: ws, Logger: logs.Logger(),
		Queues: map[string]weft.QueueConfig{"default": {MaxWorkers: 50}, "slow": {MaxWorkers: 2}},
		Retention: map[weft.TaskState]time.Duration{
			weft.StateCompleted: soakRetention, weft.StateFailed: soakRetention, weft.StateCancelled: soakRetention,
		},
		RetentionInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := client.Stop(sctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()

	start := time.Now()
	runCtx, stop := context.WithDeadline(ctx, start.Add(d))
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { soakProduce(runCtx, client, s) })
	// The canceller outlives the load: long tasks started at its very end
	// must be cancelled too, while the queues drain.
	cancelCtx, stopCancelling := context.WithCancel(ctx)
	defer stopCancelling()
	var canceller sync.WaitGroup
	canceller.Go(func() {
		// Cancels running tasks as they start.
		for {
			select {
			case <-cancelCtx.Done():
				return
			case id := <-longStarted:
				if _, err := client.Cancel(ctx, id); err != nil {
					s.fail(fmt.Errorf("cancel running %s: %w", id, err))
				}
			}
		}
	})

	csvPath := filepath.Join(t.TempDir(), "soak.csv")
	csv, err := os.Create(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(csv, "second,rss_bytes,heap_live_bytes,goroutines,starts,p99_us,slow_backlog,rows,db_bytes")
	t.Logf("soak for %s: warm-up %s, then quarters of %s; CSV in %s", d, warmup, quarter, csvPath)
	t.Logf("%6s %9s %9s %10s %6s %9s %8s %6s %9s", "t", "rss", "heap", "goroutines", "starts", "p99", "backlog", "rows", "db+wal")
	var (
		samples []soakSample
		lat     [4]quarterLatency
	)
	tick := time.NewTicker(time.Second)
	for now := range tick.C {
		elapsed := now.Sub(start)
		if elapsed > d {
			break
		}
		s.mu.Lock()
		lats := s.second
		s.second = make([]time.Duration, 0, cap(lats))
		s.mu.Unlock()
		smp := sampleProcess(t, st, path, elapsed)
		smp.starts, smp.p99 = len(lats), percentile(lats, 0.99)
		samples = append(samples, smp)
		if q := quarterOf(elapsed, warmup, quarter); q >= 0 {
			lat[q].addSecond(lats, smp.p99)
		}
		fmt.Fprintf(csv, "%.0f,%d,%d,%d,%d,%d,%d,%d,%d\n", elapsed.Seconds(), smp.rss, smp.heap, smp.goroutines,
			smp.starts, smp.p99.Microseconds(), smp.backlog, smp.rows, smp.dbBytes)
		t.Logf("%5.0fs %8.1fM %8.1fM %10d %6d %9s %8d %6d %8.1fM", elapsed.Seconds(), mib(smp.rss), mib(smp.heap),
			smp.goroutines, smp.starts, smp.p99.Round(10*time.Microsecond), smp.backlog, smp.rows, mib(uint64(smp.dbBytes)))
	}
	tick.Stop()
	stop()
	wg.Wait()
	if err := csv.Close(); err != nil {
		t.Fatal(err)
	}
	if out := os.Getenv("WEFT_SOAK_OUT"); out != "" {
		if err := copyFile(csvPath, out); err != nil {
			t.Errorf("copy the CSV to WEFT_SOAK_OUT: %v", err)
		} else {
			t.Logf("CSV copied to %s", out)
		}
	}

	checkFlat(t, samples, &lat, warmup, quarter)
	soakDrain(t, st, s)
	stopCancelling()
	canceller.Wait()
	total, workers := goroutinesIn("internal/engine.(*Engine).worker")
	t.Logf("after the drain: %d goroutines, %d of them engine workers (a worker stays until Stop once started; at most one per queue slot, %d here)",
		total, workers, 50+2)
}

// goroutinesIn counts all goroutines, and those with fn on their stack.
func goroutinesIn(fn string) (total, in int) {
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		return runtime.NumGoroutine(), -1
	}
	// debug=1 groups identical stacks: a line "N @ 0x…" starts a group
	// of N goroutines, and "#\t0x…\tfunc+0x…\tfile:line" lines follow.
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		if count, _, ok := strings.Cut(line, " @ "); ok {
			if v, err := strconv.Atoi(count); err == nil {
				n = v
				total += v
				continue
			}
		}
		if strings.Contains(line, fn) {
			in += n
			n = 0 // once per group
		}
	}
	return total, in
}

// soakProduce enqueues the load until ctx ends.
func soakProduce(ctx context.Context, c *weft.Client, s *soakState) {
	tick := time.NewTicker(soakTick)
	defer tick.Stop()
	lastBurst := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		var batch []weft.EnqueueParams
		add := func(mode string, delay time.Duration, queue string) {
			batch = append(batch, weft.EnqueueParams{
				Args: soakArgs{Mode: mode, Due: now.Add(delay)},
				Opts: &weft.EnqueueOpts{Delay: delay, Queue: queue, MaxAttempts: map[string]int{modeFlaky: 5, modeDoomed: 2}[mode]},
			})
			s.enqueued[mode].Add(1)
		}
		for _, mode := range []string{modeOK, modeFlaky, modeDoomed, modeLong} {
			for range soakPerTick[mode] {
				add(mode, 0, "")
			}
		}
		for range soakPerTick[modeDelayed] {
			add(modeDelayed, time.Duration(50+rand.IntN(450))*time.Millisecond, "")
		}
		if now.Sub(lastBurst) >= slowEvery {
			lastBurst = now
			for range slowBurst {
				add(modeSlow, 0, "slow")
			}
		}
		if _, err := c.EnqueueMany(ctx, batch); err != nil {
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("enqueue: %w", err))
			}
			// Not enqueued after all: the counts must match the store.
			for _, p := range batch {
				s.enqueued[p.Args.(soakArgs).Mode].Add(-1)
			}
			continue
		}
		// Tasks cancelled while pending: far in the future, cancelled at
		// once.
		for range soakPerTick[modeCancel] {
			res, err := c.Enqueue(ctx, soakArgs{Mode: modeCancel, Due: now.Add(time.Hour)}, &weft.EnqueueOpts{Delay: time.Hour})
			if err != nil {
				if ctx.Err() == nil {
					s.fail(fmt.Errorf("enqueue: %w", err))
				}
				continue
			}
			s.enqueued[modeCancel].Add(1)
			task, err := c.Cancel(context.WithoutCancel(ctx), res.ID)
			switch {
			case err != nil:
				s.fail(fmt.Errorf("cancel pending %s: %w", res.ID, err))
			case task.State != weft.StateCancelled:
				s.fail(fmt.Errorf("pending task %s is %s after Cancel", res.ID, task.State))
			default:
				s.finished[modeCancel].Add(1)
			}
		}
	}
}

// sampleProcess reads the process's and the store's figures.
func sampleProcess(t *testing.T, st store.Store, path string, at time.Duration) soakSample {
	t.Helper()
	smp := soakSample{at: at, goroutines: runtime.NumGoroutine()}
	// statm's second field is the resident set in pages.
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			smp.rss = pages * uint64(os.Getpagesize())
		}
	}
	// The live heap as of the last GC: unlike the allocated heap, it does
	// not saw up and down between collections.
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	if m[0].Value.Kind() == metrics.KindUint64 {
		smp.heap = m[0].Value.Uint64()
	}
	stats, err := st.Stats(context.Background())
	if err != nil {
		t.Errorf("stats: %v", err)
	}
	for _, q := range stats {
		for _, n := range q.Counts {
			smp.rows += n
		}
		if q.Queue == "slow" {
			smp.backlog = q.Counts[store.StatePending]
		}
	}
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			smp.dbBytes += fi.Size()
		}
	}
	return smp
}

// checkFlat compares the last quarter of the measured run with the first.
func checkFlat(t *testing.T, samples []soakSample, lat *[4]quarterLatency, warmup, quarter time.Duration) {
	t.Helper()
	var first, last []soakSample
	for _, smp := range samples {
		switch quarterOf(smp.at, warmup, quarter) {
		case 0:
			first = append(first, smp)
		case 3:
			last = append(last, smp)
		}
	}
	if len(first) == 0 || len(last) == 0 {
		t.Fatalf("too few samples: %d in the first quarter, %d in the last", len(first), len(last))
	}
	med := func(xs []soakSample, f func(soakSample) float64) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	heap := func(x soakSample) float64 { return float64(x.heap) }
	rss := func(x soakSample) float64 { return float64(x.rss) }
	gor := func(x soakSample) float64 { return float64(x.goroutines) }
	rows := func(x soakSample) float64 { return float64(x.rows) }
	p99First, p99Last := lat[0].typical(), lat[3].typical()
	var qs []string
	for i := range lat {
		qs = append(qs, fmt.Sprintf("Q%d %s (seconds' median %s; %d starts)", i+1,
			lat[i].all.quantile(0.99).Round(10*time.Microsecond), lat[i].typical().Round(10*time.Microsecond), lat[i].all.n))
	}
	startS, endS := samples[0], samples[len(samples)-1]
	t.Logf("soak figures: RSS %.1f MiB at +%.0fs, %.1f MiB at +%.0fs (median %.1f → %.1f MiB first → last quarter); "+
		"live heap median %.1f → %.1f MiB; goroutines median %.0f → %.0f (start %d, end %d); "+
		"rows median %.0f → %.0f; p99 enqueue-to-start by quarter: %s",
		mib(startS.rss), startS.at.Seconds(), mib(endS.rss), endS.at.Seconds(), med(first, rss)/(1<<20), med(last, rss)/(1<<20),
		med(first, heap)/(1<<20), med(last, heap)/(1<<20), med(first, gor), med(last, gor), startS.goroutines, endS.goroutines,
		med(first, rows), med(last, rows), strings.Join(qs, ", "))

	if g0, g1 := med(first, gor), med(last, gor); g1 > g0+50 {
		t.Errorf("goroutines grew: median %.0f in the first quarter, %.0f in the last", g0, g1)
	}
	// A few MiB of slack: the live heap of a short run can be well under
	// one MiB, where doubling is noise.
	if h0, h1 := med(first, heap), med(last, heap); h1 > max(2*h0, h0+4<<20) {
		t.Errorf("live heap grew: median %.1f MiB in the first quarter, %.1f MiB in the last", h0/(1<<20), h1/(1<<20))
	}
	if bound := max(4*p99First, 100*time.Millisecond); p99Last > bound {
		t.Errorf("p99 enqueue-to-start latency grew: median of the seconds' p99 %s in the first quarter, %s in the last (bound %s)", p99First, p99Last, bound)
	}
	// Retention keeps the table small: rows must not pile up.
	if r0, r1 := med(first, rows), med(last, rows); r1 > 2*r0+float64(slowBurst) {
		t.Errorf("stored rows grew: median %.0f in the first quarter, %.0f in the last; retention is not keeping up", r0, r1)
	}
}

// soakDrain waits for the load to finish and checks every mode's ending.
func soakDrain(t *testing.T, st store.Store, s *soakState) {
	t.Helper()
	unfinished := func() int64 {
		stats, err := st.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, q := range stats {
			n += q.Counts[store.StatePending] + q.Counts[store.StateRunning]
		}
		return n
	}
	if !eventually(60*time.Second, func() bool { return unfinished() == 0 }) {
		t.Errorf("%d tasks still pending or running a minute after the load stopped", unfinished())
	}
	if n := s.errs.Load(); n > 0 {
		t.Errorf("%d errors during the soak; the last: %v", n, s.lastErr.Load())
	}
	// Each mode ends as designed: exact counts, since without crashes no
	// attempt runs twice.
	want := map[string]struct{ runs, finished int64 }{}
	var b strings.Builder
	for _, m := range soakModes {
		n := s.enqueued[m].Load()
		switch m {
		case modeFlaky:
			want[m] = struct{ runs, finished int64 }{3 * n, n}
		case modeDoomed:
			want[m] = struct{ runs, finished int64 }{2 * n, 0}
		case modeLong:
			want[m] = struct{ runs, finished int64 }{n, 0}
		case modeCancel:
			want[m] = struct{ runs, finished int64 }{0, n}
		default:
			want[m] = struct{ runs, finished int64 }{n, n}
		}
		fmt.Fprintf(&b, " %s %d enqueued/%d runs/%d finished;", m, n, s.runs[m].Load(), s.finished[m].Load())
		if got := s.runs[m].Load(); got != want[m].runs {
			t.Errorf("%s: %d runs for %d tasks, want %d", m, got, n, want[m].runs)
		}
		if got := s.finished[m].Load(); got != want[m].finished {
			t.Errorf("%s: %d finished as designed of %d tasks, want %d", m, got, n, want[m].finished)
		}
	}
	if got, want := s.cancelledRunning.Load(), s.enqueued[modeLong].Load(); got != want {
		t.Errorf("%d of %d long tasks saw their cancellation while running", got, want)
	}
	t.Logf("modes:%s %d running tasks cancelled", strings.TrimSuffix(b.String(), ";"), s.cancelledRunning.Load())
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
