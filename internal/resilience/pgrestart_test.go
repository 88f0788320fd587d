//go:build linux

package resilience_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store/postgres"
)

// jobArgs is the task of the restart test; Key is also its unique key.
type jobArgs struct {
	Key string `json:"key"`
}

func (jobArgs) Kind() string { return "resilience.job" }

// The restart test's load: restartProducers goroutines enqueue restartRate
// tasks a second between them for restartRunFor, and the server restarts
// restartAt into the run.
const (
	restartProducers = 8
	restartRate      = 200
	restartRunFor    = 10 * time.Second
	restartAt        = 4 * time.Second
	// throughputWindow is the width of the windows throughput is counted in.
	throughputWindow = 2 * time.Second
	// resumeWithin bounds how long after the server is back completions
	// may take to resume: generous, since this is not a performance test.
	resumeWithin = 10 * time.Second
)

// TestPostgresRestart restarts PostgreSQL in the middle of a run — once
// with a fast shutdown, once with an immediate one (no checkpoint: crash
// recovery on start) — while two nodes work and producers enqueue. An
// enqueue that fails during the outage is retried with the same unique
// key, so every task ends acknowledged; each must then be stored once and
// completed exactly once, and work must resume after the restart.
func TestPostgresRestart(t *testing.T) {
	srv := startPostgres(t)
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) { testRestart(t, srv, mode) })
	}
	t.Run("claim-epoch-after-crash", func(t *testing.T) { testClaimEpochAfterCrash(t, srv) })
}

// restartRecord is what producers and handlers saw.
type restartRecord struct {
	mu         sync.Mutex
	acks       map[string]restartAck
	unacked    []string
	errs       int
	errSamples map[string]int
	execs      map[string][]restartExec
}

// restartAck is an acknowledged enqueue.
type restartAck struct {
	id  string
	dup bool
	at  time.Time
	// tries is the number of Enqueue calls it took.
	tries int
}

// restartExec is one run of a handler.
type restartExec struct {
	node    string
	attempt int
}

func (r *restartRecord) executed(key, node string, attempt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs[key] = append(r.execs[key], restartExec{node, attempt})
}

// produce enqueues key until an attempt is acknowledged, retrying errors
// for up to a minute, or until ctx ends (the test is over). An error
// leaves the caller unable to tell whether the task was stored: the retry
// with the same unique key settles it.
func (r *restartRecord) produce(ctx context.Context, c *weft.Client, key string) {
	for try := 1; ; try++ {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := c.Enqueue(callCtx, jobArgs{Key: key}, &weft.EnqueueOpts{UniqueKey: key})
		cancel()
		r.mu.Lock()
		if err == nil {
			r.acks[key] = restartAck{id: res.ID, dup: res.Duplicate, at: time.Now(), tries: try}
			r.mu.Unlock()
			return
		}
		r.errs++
		r.errSamples[truncate(err.Error(), 160)]++
		if try == 600 || ctx.Err() != nil {
			r.unacked = append(r.unacked, key)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

func testRestart(t *testing.T, srv *pgServer, mode string) {
	ctx := context.Background()
	url := pgtest.NewSchema(t, srv.URL())
	logs := newLogTally()
	defer logs.Report(t, "log of the nodes and the producer")
	rec := &restartRecord{acks: map[string]restartAck{}, errSamples: map[string]int{}, execs: map[string][]restartExec{}}

	// The producer's store needs no listener: it never works tasks.
	prodStore, err := postgres.Open(ctx, url, &postgres.Options{PollOnly: true, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prodStore.Close() })
	producer, err := weft.NewClient(prodStore, &weft.Config{Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"node-a", "node-b"} {
		st, err := postgres.Open(ctx, url, &postgres.Options{Logger: logs.Logger().With("node", name)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		ws := weft.NewWorkers()
		weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[jobArgs]) error {
			rec.executed(task.Args.Key, name, task.Attempt)
			return nil
		})
		node, err := weft.NewClient(st, &weft.Config{
			Workers: ws, NodeID: name, Logger: logs.Logger().With("node", name),
			Queues: map[string]weft.QueueConfig{"default": {MaxWorkers: 16}},
			// Only NOTIFY tells a node of new tasks within the test: a
			// listener that did not come back would show as stalled work.
			PollInterval: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := node.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := node.Stop(sctx); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
		})
	}

	start := time.Now()
	produceCtx, stopProducing := context.WithDeadline(ctx, start.Add(restartRunFor))
	defer stopProducing()
	var producers sync.WaitGroup
	for p := range restartProducers {
		producers.Go(func() {
			tick := time.NewTicker(time.Second * restartProducers / restartRate)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-produceCtx.Done():
					return
				case <-tick.C:
				}
				rec.produce(t.Context(), producer, fmt.Sprintf("p%d-%06d", p, i))
			}
		})
	}

	time.Sleep(time.Until(start.Add(restartAt)))
	down := time.Now()
	if err := srv.Restart(mode); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("pg_ctl restart -m %s took %s (server down, then accepting connections again)", mode, back.Sub(down).Round(time.Millisecond))
	producers.Wait()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	rec.mu.Lock()
	acked := len(rec.acks)
	unacked := slices.Clone(rec.unacked)
	rec.mu.Unlock()
	if len(unacked) > 0 {
		t.Errorf("%d enqueues were never acknowledged after a minute of retries (the store did not recover), e.g. %s", len(unacked), unacked[0])
	}
	completed := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM weft_tasks WHERE state = 'completed'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if !eventually(30*time.Second, func() bool { return completed() >= acked }) {
		t.Errorf("%d of %d acknowledged tasks completed 30s after the producers stopped", completed(), acked)
	}

	// Both listeners are back: each node's LISTEN session is idle on the
	// schema's channel.
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	listen := `LISTEN ` + pgx.Identifier{"weft_wake_" + schema}.Sanitize()
	listeners := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'idle'", listen).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if !eventually(15*time.Second, func() bool { return listeners() == 2 }) {
		t.Errorf("%d sessions are in %q after the restart, want 2 (one per node)", listeners(), listen)
	}
	// And they deliver: with the poll at a minute, only a NOTIFY gets
	// these probes started.
	probeAt := time.Now()
	probes := make([]weft.EnqueueParams, 20)
	for i := range probes {
		key := fmt.Sprintf("probe-%02d", i)
		probes[i] = weft.EnqueueParams{Args: jobArgs{Key: key}, Opts: &weft.EnqueueOpts{UniqueKey: key}}
	}
	if _, err := producer.EnqueueMany(ctx, probes); err != nil {
		t.Fatalf("probe enqueue after the restart: %v", err)
	}
	if !eventually(5*time.Second, func() bool { return completed() >= acked+len(probes) }) {
		t.Errorf("probes enqueued after the restart not all completed within 5s: wakeups do not arrive")
	} else {
		t.Logf("probes: %d tasks enqueued after the restart completed in %s (woken by NOTIFY)", len(probes), time.Since(probeAt).Round(time.Millisecond))
	}

	checkExactlyOnce(t, ctx, conn, rec)
	reportRestart(t, ctx, conn, rec, mode, start, down, back)
}

// checkExactlyOnce holds the database to the producers' acknowledgements:
// every acknowledged key is one stored task with the acknowledged id,
// completed, with exactly one completed event, and nothing else is there.
func checkExactlyOnce(t *testing.T, ctx context.Context, conn *pgx.Conn, rec *restartRecord) {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT t.unique_key, t.id, t.state,
			(SELECT count(*) FROM weft_events e WHERE e.task_id = t.id AND e.type = 'completed'),
			(SELECT count(*) FROM weft_events e WHERE e.task_id = t.id AND e.type IN ('failed', 'cancelled'))
		FROM weft_tasks t`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		id, state       string
		completed, fail int
	}
	byKey := map[string][]row{}
	for rows.Next() {
		var (
			key string
			r   row
		)
		if err := rows.Scan(&key, &r.id, &r.state, &r.completed, &r.fail); err != nil {
			t.Fatal(err)
		}
		byKey[key] = append(byKey[key], r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var lost, doubled, wrongID, notDone, multiEvent []string
	for key, a := range rec.acks {
		rs := byKey[key]
		switch {
		case len(rs) == 0:
			lost = append(lost, key)
			continue
		case len(rs) > 1:
			doubled = append(doubled, key)
		}
		r := rs[0]
		if r.id != a.id {
			wrongID = append(wrongID, fmt.Sprintf("%s: acknowledged %s, stored %s", key, a.id, r.id))
		}
		if r.state != "completed" || r.fail != 0 {
			notDone = append(notDone, fmt.Sprintf("%s: %s", key, r.state))
		}
		if r.completed != 1 {
			multiEvent = append(multiEvent, fmt.Sprintf("%s: %d completed events", key, r.completed))
		}
	}
	var stray []string
	for key := range byKey {
		if _, ok := rec.acks[key]; !ok && !strings.HasPrefix(key, "probe-") {
			stray = append(stray, key)
		}
	}
	report := func(what string, xs []string) {
		if len(xs) > 0 {
			slices.Sort(xs)
			t.Errorf("%d %s, e.g. %v", len(xs), what, xs[:min(len(xs), 5)])
		}
	}
	report("acknowledged tasks lost", lost)
	report("keys stored more than once", doubled)
	report("tasks stored under another id than acknowledged", wrongID)
	report("acknowledged tasks not completed", notDone)
	report("tasks without exactly one completed event", multiEvent)
	report("stored tasks never acknowledged (a producer gave up on them)", stray)

	// Execution is at least once; more than one run of a task is allowed
	// but reported. Two runs of the same attempt would mean two claims
	// with the same lease epoch.
	var reruns, sameAttempt int
	for key := range rec.acks {
		ex := rec.execs[key]
		if len(ex) > 1 {
			reruns++
			seen := map[int]bool{}
			for _, e := range ex {
				if seen[e.attempt] {
					sameAttempt++
					t.Logf("task %s ran attempt %d twice: %v", key, e.attempt, ex)
				}
				seen[e.attempt] = true
			}
		}
	}
	dupAcks, retried := 0, 0
	for _, a := range rec.acks {
		if a.tries > 1 {
			retried++
			if a.dup {
				dupAcks++
			}
		}
	}
	t.Logf("exactly once: %d acknowledged tasks, lost %d, stored twice %d, completed events ≠ 1: %d; "+
		"handlers ran more than once for %d tasks (%d runs of an attempt already run)",
		len(rec.acks), len(lost), len(doubled), len(multiEvent), reruns, sameAttempt)
	t.Logf("enqueue errors during the outage: %d, over %d keys; %d of those keys had been stored by an attempt that failed (the retry came back duplicate)",
		rec.errs, retried, dupAcks)
	var samples []string
	for msg, n := range rec.errSamples {
		samples = append(samples, fmt.Sprintf("%4d× %s", n, msg))
	}
	slices.Sort(samples)
	t.Logf("enqueue errors seen by the producer:\n  %s", strings.Join(samples, "\n  "))
}

// reportRestart logs throughput in windows and the recovery figures, and
// checks that completions resumed soon after the server came back.
func reportRestart(t *testing.T, ctx context.Context, conn *pgx.Conn, rec *restartRecord, mode string, start, down, back time.Time) {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT e.at FROM weft_events e JOIN weft_tasks t ON t.id = e.task_id
		WHERE e.type = 'completed' AND t.unique_key NOT LIKE 'probe-%' ORDER BY e.at`)
	if err != nil {
		t.Fatal(err)
	}
	var done []time.Time
	for rows.Next() {
		var us int64
		if err := rows.Scan(&us); err != nil {
			t.Fatal(err)
		}
		done = append(done, time.UnixMicro(us))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(done) == 0 {
		t.Fatal("no completions recorded")
	}

	// The longest stretch without a completion around the restart, and
	// the first completion once the server was back.
	var (
		gap                 time.Duration
		gapFrom, firstAfter time.Time
	)
	for i := 1; i < len(done); i++ {
		if done[i].After(down.Add(-time.Second)) && done[i-1].Before(back.Add(resumeWithin)) {
			if d := done[i].Sub(done[i-1]); d > gap {
				gap, gapFrom = d, done[i-1]
			}
		}
	}
	if i, _ := slices.BinarySearchFunc(done, back, func(d, b time.Time) int { return d.Compare(b) }); i < len(done) {
		firstAfter = done[i]
	}
	var firstAck time.Time
	rec.mu.Lock()
	for _, a := range rec.acks {
		if !a.at.Before(back) && (firstAck.IsZero() || a.at.Before(firstAck)) {
			firstAck = a.at
		}
	}
	rec.mu.Unlock()

	var b strings.Builder
	fmt.Fprintf(&b, "completions per %s window (restart -m %s from +%.1fs to +%.1fs):", throughputWindow, mode,
		down.Sub(start).Seconds(), back.Sub(start).Seconds())
	var before, after []float64
	for w := start; w.Before(done[len(done)-1]); w = w.Add(throughputWindow) {
		end := w.Add(throughputWindow)
		n := 0
		for _, d := range done {
			if !d.Before(w) && d.Before(end) {
				n++
			}
		}
		rate := float64(n) / throughputWindow.Seconds()
		var phase string
		switch {
		case !w.After(start):
			phase = "warm-up"
		case !end.After(down):
			phase = "before"
			before = append(before, rate)
		case w.Before(back):
			phase = "restart"
		case !end.After(start.Add(restartRunFor)):
			phase = "after"
			after = append(after, rate)
		default:
			phase = "tail (producers stopped)"
		}
		fmt.Fprintf(&b, "\n  +%5.1fs  %5d  %6.1f/s  %s", w.Sub(start).Seconds(), n, rate, phase)
	}
	t.Log(b.String())
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(max(len(xs), 1))
	}
	t.Logf("recovery (-m %s): server down for %s; longest stretch without a completion %s (from +%.2fs); "+
		"first acknowledged enqueue %s and first completion %s after the server was back; "+
		"throughput %.0f/s before, %.0f/s after (offered %d/s)",
		mode, back.Sub(down).Round(time.Millisecond), gap.Round(time.Millisecond), gapFrom.Sub(start).Seconds(),
		sinceOrNever(firstAck, back), sinceOrNever(firstAfter, back), mean(before), mean(after), restartRate)
	if firstAfter.IsZero() || firstAfter.Sub(back) > resumeWithin {
		t.Errorf("no completion within %s after the server was back (first: %s)", resumeWithin, sinceOrNever(firstAfter, back))
	}
}

// sinceOrNever formats t-ref, or "never" for a zero t.
func sinceOrNever(t, ref time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(ref).Round(time.Millisecond).String()
}
