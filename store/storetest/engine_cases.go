package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Cases that run a real weft.Client on the backend: what users see of it.
// Their waits are for positive signals — a task reaching a state, a handler
// starting — under generous deadlines; none concludes that something did
// not happen from a pause.

var engineCases = []testCase{
	{"runs a task and records its result", testRunsTask},
	{"retries with backoff, then completes", testRetries},
	{"exhausted attempts fail", testExhausted},
	{"verdicts: permanent, cancel, snooze, panic", testVerdicts},
	{"attempt timeout cancels the handler", testAttemptTimeout},
	{"cancel a running task", testCancelRunning},
	{"cancel from another store reaches the handler", testCancelFromElsewhere},
	{"graceful stop waits, then releases without spending attempts", testGracefulStop},
	{"wakeup: an enqueue starts work at once", testWakeEnqueue},
	{"wakeup: commits by other connections", testWakeExternal},
	{"wakeup: a delayed task starts at its run_at", testWakeDelayed},
	{"priority order with one worker", testPriorityOrder},
	{"per-queue concurrency is honoured", testConcurrency},
	{"unknown kinds are left for others, or failed", testUnknownKinds},
	{"bad enqueue input is a clear error", testClientValidation},
	{"a client starts and stops many times", testRestart},
	{"retention purges finished tasks by state", testRetention},
	{"a flow: fan-out at run time, fan-in reading its parents", testEngineFlow},
	{"an approval: the handler waits, a signal with its token resumes it", testEngineWait},
	{"waiting tasks hold no slot: a queue of one keeps working", testEngineWaitNoSlot},
	{"a wait that times out resumes the handler, which sees it", testEngineWaitTimeout},
	{"a wait step in a flow: an approval with no worker of its own", testEngineWaitStep},
	{"limits: handlers of one key never run over its cap; set-aside tasks run as slots free", testEngineLimits},
}

type okArgs struct {
	N int `json:"n"`
}

func (okArgs) Kind() string { return "st.ok" }

type failArgs struct {
	Mode string `json:"mode"`
}

func (failArgs) Kind() string { return "st.fail" }

type blockArgs struct{}

func (blockArgs) Kind() string { return "st.block" }

// startClient starts a client on the env's store with fast test timings;
// it is stopped when the test ends.
func startClient(t *testing.T, e *env, st store.Store, workers *weft.Workers, cfg weft.Config) *weft.Client {
	t.Helper()
	if st == nil {
		st = e.st
	}
	cfg.Workers = workers
	if cfg.PollInterval == 0 {
		// Long, so that tests prove the wakeup paths, not the poll.
		cfg.PollInterval = time.Hour
	}
	c, err := weft.NewClient(st, &cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	if err := c.Start(e.ctx); err != nil {
		t.Fatalf("start client: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c
}

func waitState(t *testing.T, e *env, id string, want store.State) *store.Task {
	t.Helper()
	var got *store.Task
	eventually(t, time.Minute, fmt.Sprintf("task %s did not reach %s", id, want), func() bool {
		got = e.get(t, id)
		return got.State == want
	})
	return got
}

func fastRetry(int) time.Duration { return 5 * time.Millisecond }

func testRunsTask(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		return tk.SetResult(map[string]int{"double": tk.Args.N * 2})
	})
	c := startClient(t, e, nil, ws, weft.Config{})
	res, err := c.Enqueue(e.ctx, okArgs{N: 21}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(t, e, res.ID, store.StateCompleted)
	assertJSON(t, "result", got.Result, json.RawMessage(`{"double":42}`))
	if got.Attempt != 1 || got.FinalizedAt.IsZero() {
		t.Fatalf("attempt %d finalized %v", got.Attempt, got.FinalizedAt)
	}
	want := []store.EventType{store.EventCreated, store.EventStarted, store.EventCompleted}
	if evs := eventTypes(e.events(t, res.ID)); !reflect.DeepEqual(evs, want) {
		t.Fatalf("events = %v, want %v", evs, want)
	}
}

func testRetries(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[failArgs]) error {
		if tk.Attempt < 3 {
			return fmt.Errorf("flaky %d", tk.Attempt)
		}
		if len(tk.Errors) != 2 || tk.Errors[1].Error != "flaky 2" {
			return weft.Permanent(fmt.Errorf("history not passed to attempt 3: %+v", tk.Errors))
		}
		return nil
	}, weft.WithBackoff(fastRetry))
	c := startClient(t, e, nil, ws, weft.Config{})
	res, _ := c.Enqueue(e.ctx, failArgs{}, nil)
	got := waitState(t, e, res.ID, store.StateCompleted)
	if got.Attempt != 3 || len(got.Errors) != 2 || got.Errors[0].Error != "flaky 1" || got.Errors[0].Attempt != 1 {
		t.Fatalf("attempt %d errors %+v", got.Attempt, got.Errors)
	}
	want := []store.EventType{store.EventCreated, store.EventStarted, store.EventRetryScheduled, store.EventStarted,
		store.EventRetryScheduled, store.EventStarted, store.EventCompleted}
	if evs := eventTypes(e.events(t, res.ID)); !reflect.DeepEqual(evs, want) {
		t.Fatalf("events = %v", evs)
	}
}

func testExhausted(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[failArgs]) error {
		return errors.New("always")
	}, weft.WithBackoff(fastRetry))
	c := startClient(t, e, nil, ws, weft.Config{})
	res, _ := c.Enqueue(e.ctx, failArgs{}, &weft.EnqueueOpts{MaxAttempts: 2})
	got := waitState(t, e, res.ID, store.StateFailed)
	if got.Attempt != 2 || len(got.Errors) != 2 {
		t.Fatalf("attempt %d errors %d, want 2 and 2", got.Attempt, len(got.Errors))
	}
}

func testVerdicts(t *testing.T, e *env) {
	var snoozed atomic.Int32
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[failArgs]) error {
		switch tk.Args.Mode {
		case "permanent":
			return weft.Permanent(errors.New("bad input"))
		case "cancel":
			return weft.Cancel(errors.New("no longer wanted"))
		case "snooze":
			if snoozed.Add(1) <= 2 {
				return weft.Snooze(10 * time.Millisecond)
			}
			return nil
		case "panic":
			if tk.Attempt == 1 {
				panic("kaboom")
			}
			return nil
		}
		return errors.New("unknown mode")
	}, weft.WithBackoff(fastRetry))
	c := startClient(t, e, nil, ws, weft.Config{})
	enq := func(mode string) string {
		res, err := c.Enqueue(e.ctx, failArgs{Mode: mode}, &weft.EnqueueOpts{MaxAttempts: 5})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	perm, cancel, snooze, pnc := enq("permanent"), enq("cancel"), enq("snooze"), enq("panic")
	if got := waitState(t, e, perm, store.StateFailed); got.Attempt != 1 || !strings.Contains(got.Errors[0].Error, "bad input") {
		t.Errorf("permanent: attempt %d errors %+v", got.Attempt, got.Errors)
	}
	if got := waitState(t, e, cancel, store.StateCancelled); got.Attempt != 1 || !strings.Contains(got.Errors[0].Error, "no longer wanted") {
		t.Errorf("cancel: attempt %d errors %+v", got.Attempt, got.Errors)
	}
	if got := waitState(t, e, snooze, store.StateCompleted); got.Attempt != 1 || len(got.Errors) != 0 {
		t.Errorf("snooze spent attempts: attempt %d errors %+v", got.Attempt, got.Errors)
	}
	got := waitState(t, e, pnc, store.StateCompleted)
	if got.Attempt != 2 || len(got.Errors) != 1 || !strings.Contains(got.Errors[0].Error, "kaboom") || !strings.Contains(got.Errors[0].Stack, "goroutine") {
		t.Errorf("panic: attempt %d errors %+v; want the panic and its stack recorded", got.Attempt, got.Errors)
	}
}

func testAttemptTimeout(t *testing.T, e *env) {
	causes := make(chan error, 4)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[blockArgs]) error {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	}, weft.WithTimeout(time.Hour), weft.WithBackoff(fastRetry))
	c := startClient(t, e, nil, ws, weft.Config{})
	// The task's own timeout overrides the worker's.
	res, _ := c.Enqueue(e.ctx, blockArgs{}, &weft.EnqueueOpts{Timeout: 30 * time.Millisecond, MaxAttempts: 1})
	got := waitState(t, e, res.ID, store.StateFailed)
	if cause := <-causes; !errors.Is(cause, weft.ErrAttemptTimeout) {
		t.Fatalf("handler saw cause %v, want ErrAttemptTimeout", cause)
	}
	if !strings.Contains(got.Errors[0].Error, "timed out") {
		t.Fatalf("recorded error %q does not say it timed out", got.Errors[0].Error)
	}
}

func blockingWorkers(started chan<- string, causes chan<- error) *weft.Workers {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[blockArgs]) error {
		started <- tk.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	})
	return ws
}

func testCancelRunning(t *testing.T, e *env) {
	started, causes := make(chan string, 1), make(chan error, 1)
	c := startClient(t, e, nil, blockingWorkers(started, causes), weft.Config{})
	res, _ := c.Enqueue(e.ctx, blockArgs{}, nil)
	<-started
	if _, err := c.Cancel(e.ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	if cause := <-causes; !errors.Is(cause, weft.ErrCancelRequested) {
		t.Fatalf("cause = %v, want ErrCancelRequested", cause)
	}
	waitState(t, e, res.ID, store.StateCancelled)
	if _, err := c.Cancel(e.ctx, res.ID); !errors.Is(err, weft.ErrAlreadyFinished) {
		t.Fatalf("second cancel: %v, want ErrAlreadyFinished", err)
	}
}

func testCancelFromElsewhere(t *testing.T, e *env) {
	started, causes := make(chan string, 1), make(chan error, 1)
	c := startClient(t, e, nil, blockingWorkers(started, causes), weft.Config{})
	res, _ := c.Enqueue(e.ctx, blockArgs{}, nil)
	<-started
	other := e.open(t)
	if _, err := other.Cancel(e.ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, weft.ErrCancelRequested) {
			t.Fatalf("cause = %v", cause)
		}
	case <-time.After(wakeWithin):
		t.Fatalf("a cancel written by another store did not reach the handler within %s", wakeWithin)
	}
	waitState(t, e, res.ID, store.StateCancelled)
}

func testGracefulStop(t *testing.T, e *env) {
	release := make(chan struct{})
	var (
		graceOver atomic.Bool // set just before the grace period ends
		causes    sync.Map
		early     sync.Map // tasks whose handler was cancelled within the grace period
	)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		if tk.Args.N == 1 {
			<-release // finishes within the grace period
			return nil
		}
		<-ctx.Done() // outlives it
		if !graceOver.Load() {
			early.Store(tk.ID, true)
		}
		causes.Store(tk.ID, context.Cause(ctx))
		return ctx.Err()
	})
	c, err := weft.NewClient(e.st, &weft.Config{Workers: ws, PollInterval: time.Hour, NodeID: "stopping"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	quick, _ := c.Enqueue(e.ctx, okArgs{N: 1}, nil)
	slow, _ := c.Enqueue(e.ctx, okArgs{N: 2}, nil)
	waitState(t, e, quick.ID, store.StateRunning)
	waitState(t, e, slow.ID, store.StateRunning)
	// The grace period ends when the case says so: once the quick task's
	// outcome is recorded, whatever the machine's speed.
	ctx, endGrace := context.WithCancel(e.ctx)
	defer endGrace()
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(ctx) }()
	close(release)
	waitState(t, e, quick.ID, store.StateCompleted)
	graceOver.Store(true)
	endGrace()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Stop did not return after the grace period ended")
	}
	if _, cut := early.Load(slow.ID); cut {
		t.Fatal("the running handler was cancelled before the grace period ended")
	}
	// Stop returns only once every outcome is recorded.
	got := e.get(t, slow.ID)
	if got.State != store.StatePending || got.Attempt != 0 || len(got.Errors) != 0 || got.RunAt.After(e.now()) {
		t.Fatalf("interrupted task: state %s attempt %d errors %v run_at %v; want pending now, attempt unspent", got.State, got.Attempt, got.Errors, got.RunAt)
	}
	if cause, _ := causes.Load(slow.ID); cause == nil || !errors.Is(cause.(error), weft.ErrShutdown) {
		t.Fatalf("cause = %v, want ErrShutdown", cause)
	}
	evs := eventTypes(e.events(t, slow.ID))
	if evs[len(evs)-1] != store.EventReleased {
		t.Fatalf("events = %v, want a final released", evs)
	}
	// Nothing is claimed after Stop: a task enqueued now is left to a
	// client still running, which runs both it and the released one.
	late, _ := c.Enqueue(e.ctx, okArgs{N: 1}, nil)
	quickly := weft.NewWorkers()
	weft.AddWorkerFunc(quickly, func(ctx context.Context, tk *weft.Task[okArgs]) error { return nil })
	startClient(t, e, e.open(t), quickly, weft.Config{NodeID: "running"})
	for _, id := range []string{late.ID, slow.ID} {
		got := waitState(t, e, id, store.StateCompleted)
		if got.LeaseOwner != "running" || got.Attempt != 1 {
			t.Fatalf("task %s completed by %s as attempt %d; want the running client's first attempt", id, got.LeaseOwner, got.Attempt)
		}
		started := 0
		for _, ev := range e.events(t, id) {
			if ev.Type == store.EventStarted {
				started++
			}
		}
		if want := map[string]int{late.ID: 1, slow.ID: 2}[id]; started != want {
			t.Fatalf("task %s started %d times, want %d: the stopped client claimed it", id, started, want)
		}
	}
}

// timeToStart enqueues through enqueue and measures until the handler runs.
func timeToStart(t *testing.T, e *env, starts <-chan time.Time, enqueue func()) time.Duration {
	t.Helper()
	begin := time.Now()
	enqueue()
	select {
	case at := <-starts:
		return at.Sub(begin)
	case <-time.After(wakeWithin):
		t.Fatalf("the task did not start within %s (the poll is an hour away): no wakeup", wakeWithin)
	}
	return 0
}

func startRecorder(t *testing.T, e *env) (*weft.Client, chan time.Time) {
	starts := make(chan time.Time, 16)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		starts <- time.Now()
		return nil
	})
	c := startClient(t, e, nil, ws, weft.Config{})
	// A first task gets the dispatcher past its start-up claim, so that the
	// tasks of the case are found by a wakeup: the poll is an hour away.
	timeToStart(t, e, starts, func() {
		if _, err := c.Enqueue(e.ctx, okArgs{}, nil); err != nil {
			t.Fatal(err)
		}
	})
	return c, starts
}

func testWakeEnqueue(t *testing.T, e *env) {
	c, starts := startRecorder(t, e)
	for i := 0; i < 5; i++ {
		d := timeToStart(t, e, starts, func() {
			if _, err := c.Enqueue(e.ctx, okArgs{}, nil); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("enqueue %d started after %s", i, d)
	}
}

func testWakeExternal(t *testing.T, e *env) {
	_, starts := startRecorder(t, e)
	other := e.open(t)
	d := timeToStart(t, e, starts, func() {
		if _, err := other.Enqueue(e.ctx, []store.NewTask{{Kind: okArgs{}.Kind()}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("a commit by another store started after %s", d)
	d = timeToStart(t, e, starts, func() {
		if _, err := e.h.EnqueueInOwnTx(t, e.st, e.db, []store.NewTask{{Kind: okArgs{}.Kind()}}, true); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("a commit in the caller's own transaction started after %s", d)
}

func testWakeDelayed(t *testing.T, e *env) {
	c, starts := startRecorder(t, e)
	const delay = 300 * time.Millisecond
	var (
		id     string
		before time.Time
	)
	d := timeToStart(t, e, starts, func() {
		before = time.Now()
		res, err := c.Enqueue(e.ctx, okArgs{}, &weft.EnqueueOpts{Delay: delay})
		if err != nil {
			t.Fatal(err)
		}
		id = res.ID
	})
	// Started by the timer set for its run_at — the poll is an hour away,
	// and no commit came after the enqueue — and not before it. The start
	// is recorded as the handler begins, at the latest with the outcome.
	got := waitState(t, e, id, store.StateCompleted)
	if got.RunAt.Before(before.Add(delay).Truncate(time.Microsecond)) { // stores keep microseconds
		t.Fatalf("a task delayed %s from %v is due at %v", delay, before, got.RunAt)
	}
	if got.AttemptedAt.Before(got.RunAt) {
		t.Fatalf("a task due at %v was claimed at %v", got.RunAt, got.AttemptedAt)
	}
	t.Logf("due %s after the enqueue began, it started after %s", got.RunAt.Sub(before), d)
}

func testPriorityOrder(t *testing.T, e *env) {
	var (
		mu    sync.Mutex
		order []int
	)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		mu.Lock()
		order = append(order, tk.Args.N)
		mu.Unlock()
		return nil
	})
	c, _ := weft.NewClient(e.st, &weft.Config{})
	prios := []int{0, 5, -1, 5, 10, 0}
	var ids []string
	for i, p := range prios {
		res, err := c.Enqueue(e.ctx, okArgs{N: i}, &weft.EnqueueOpts{Queue: "serial", Priority: p})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	startClient(t, e, nil, ws, weft.Config{Queues: map[string]weft.QueueConfig{"serial": {MaxWorkers: 1}}})
	for _, id := range ids {
		waitState(t, e, id, store.StateCompleted)
	}
	want := []int{4, 1, 3, 0, 5, 2}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("ran in order %v, want %v (priority, then age)", order, want)
	}
}

func testConcurrency(t *testing.T, e *env) {
	const limit = 3
	var (
		running, peak atomic.Int32
		full          = make(chan struct{}) // closed once limit handlers ran at once
		fullOnce      sync.Once
	)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n >= limit {
			fullOnce.Do(func() { close(full) })
		}
		// Each handler holds its slot until the queue has been seen full,
		// so that the limit is reached whatever the machine's speed.
		select {
		case <-full:
		case <-ctx.Done():
		}
		return nil
	})
	c := startClient(t, e, nil, ws, weft.Config{Queues: map[string]weft.QueueConfig{"narrow": {MaxWorkers: limit}}})
	batch := make([]weft.EnqueueParams, 30)
	for i := range batch {
		batch[i] = weft.EnqueueParams{Args: okArgs{N: i}, Opts: &weft.EnqueueOpts{Queue: "narrow"}}
	}
	res, err := c.EnqueueMany(e.ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		waitState(t, e, r.ID, store.StateCompleted)
	}
	if p := peak.Load(); p != limit {
		t.Fatalf("peak concurrency %d, want exactly %d", p, limit)
	}
}

func testUnknownKinds(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error { return nil })
	leaver := startClient(t, e, nil, ws, weft.Config{Queues: map[string]weft.QueueConfig{"mixed": {MaxWorkers: 5}}})
	res, err := e.st.Enqueue(e.ctx, []store.NewTask{{Kind: "nobody.handles", Queue: "mixed"}, {Kind: okArgs{}.Kind(), Queue: "mixed"}})
	if err != nil {
		t.Fatal(err)
	}
	// Both were ready for the claim that took the known one: had the
	// client not left the unknown kind, that claim would have taken it too.
	waitState(t, e, res[1].ID, store.StateCompleted)
	if got := e.get(t, res[0].ID); got.State != store.StatePending || got.Attempt != 0 {
		t.Fatalf("an unknown kind was claimed by a client that leaves them: %s, attempt %d", got.State, got.Attempt)
	}
	_ = leaver.Stop(e.ctx)
	startClient(t, e, nil, ws, weft.Config{Queues: map[string]weft.QueueConfig{"mixed": {MaxWorkers: 5}}, FailUnknownKinds: true})
	got := waitState(t, e, res[0].ID, store.StateFailed)
	if got.Attempt != 1 || !strings.Contains(got.Errors[0].Error, `no worker is registered for kind "nobody.handles"`) {
		t.Fatalf("failed unknown kind: attempt %d errors %+v", got.Attempt, got.Errors)
	}
}

func testClientValidation(t *testing.T, e *env) {
	c, err := weft.NewClient(e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		opts  *weft.EnqueueOpts
		field string
	}{
		{&weft.EnqueueOpts{Delay: -time.Second}, "delay"},
		{&weft.EnqueueOpts{Delay: time.Second, RunAt: time.Now()}, "delay"},
		{&weft.EnqueueOpts{Queue: "no spaces"}, "queue"},
		{&weft.EnqueueOpts{MaxAttempts: -2}, "max_attempts"},
		{&weft.EnqueueOpts{Timeout: -time.Second}, "timeout"},
		{&weft.EnqueueOpts{Metadata: map[string]any{"f": func() {}}}, "metadata"},
	}
	for _, tc := range cases {
		_, err := c.Enqueue(e.ctx, okArgs{}, tc.opts)
		var ve *weft.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || !errors.Is(err, weft.ErrInvalid) {
			t.Errorf("opts %+v: err = %v, want a ValidationError on %q", tc.opts, err, tc.field)
		}
	}
	_, err = c.EnqueueMany(e.ctx, []weft.EnqueueParams{{Args: okArgs{}}, {Args: okArgs{}, Opts: &weft.EnqueueOpts{Delay: -1}}})
	var ve *weft.ValidationError
	if !errors.As(err, &ve) || ve.Index != 1 {
		t.Fatalf("batch: err = %v, want task 1 named", err)
	}
	if all, _ := e.st.List(e.ctx, store.ListParams{}); len(all) != 0 {
		t.Fatalf("rejected input wrote %d tasks", len(all))
	}
	if err := c.Start(e.ctx); err == nil {
		t.Fatal("a client without workers started")
	}
	if _, err := weft.NewClient(e.st, &weft.Config{Queues: map[string]weft.QueueConfig{"q": {MaxWorkers: 0}}}); !errors.Is(err, weft.ErrInvalid) {
		t.Fatalf("zero workers: %v", err)
	}
	if _, err := weft.EnqueueTx(e.ctx, c, 42, okArgs{}, nil); !errors.Is(err, weft.ErrTxUnsupported) {
		t.Fatalf("EnqueueTx with an int: %v, want ErrTxUnsupported", err)
	}
}

func testRestart(t *testing.T, e *env) {
	var ran atomic.Int32
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		ran.Add(1)
		return nil
	})
	c, err := weft.NewClient(e.st, &weft.Config{Workers: ws, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := c.Start(e.ctx); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		res, _ := c.Enqueue(e.ctx, okArgs{}, nil)
		waitState(t, e, res.ID, store.StateCompleted)
		if err := c.Stop(e.ctx); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	if ran.Load() != 3 {
		t.Fatalf("ran %d tasks, want 3", ran.Load())
	}
}

func testRetention(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[failArgs]) error {
		if tk.Args.Mode == "fail" {
			return weft.Permanent(errors.New("no"))
		}
		return nil
	})
	c := startClient(t, e, nil, ws, weft.Config{
		Retention:         map[weft.TaskState]time.Duration{weft.StateCompleted: 0, weft.StateFailed: -1},
		RetentionInterval: 20 * time.Millisecond,
	})
	purged := func(id string) func() bool {
		return func() bool {
			_, err := e.st.Get(e.ctx, id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
			return errors.Is(err, store.ErrNotFound)
		}
	}
	done, _ := c.Enqueue(e.ctx, failArgs{Mode: "ok"}, nil)
	failed, _ := c.Enqueue(e.ctx, failArgs{Mode: "fail"}, nil)
	waitState(t, e, failed.ID, store.StateFailed)
	eventually(t, time.Minute, "the completed task was not purged", purged(done.ID))
	// A task enqueued after the failed one finished is purged, once
	// completed, by a sweep that began after that too, and went past the
	// failed task.
	marker, _ := c.Enqueue(e.ctx, failArgs{Mode: "ok"}, nil)
	eventually(t, time.Minute, "a later completed task was not purged", purged(marker.ID))
	if got := e.get(t, failed.ID); got.State != store.StateFailed {
		t.Fatalf("a failed task kept forever is %s", got.State)
	}
	if _, err := weft.NewClient(e.st, &weft.Config{Retention: map[weft.TaskState]time.Duration{weft.StateRunning: time.Hour}}); !errors.Is(err, weft.ErrInvalid) {
		t.Fatalf("retention for running tasks: %v, want ErrInvalid", err)
	}
}

type splitArgs struct {
	Parts int `json:"parts"`
}

func (splitArgs) Kind() string { return "st.split" }

type partArgs struct {
	N int `json:"n"`
}

func (partArgs) Kind() string { return "st.part" }

type mergeArgs struct{}

func (mergeArgs) Kind() string { return "st.merge" }

func testEngineFlow(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[splitArgs]) error {
		parts := weft.NewFlow("")
		for i := range tk.Args.Parts {
			parts.Add(fmt.Sprintf("part-%d", i), partArgs{N: i + 1})
		}
		_, err := tk.AddToFlow(ctx, parts)
		return err
	})
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[partArgs]) error {
		return tk.SetResult(tk.Args.N * 10)
	})
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[mergeArgs]) error {
		ps, err := tk.Parents(ctx)
		if err != nil {
			return err
		}
		sum := 0
		for key := range ps {
			if !strings.HasPrefix(key, "part-") {
				continue
			}
			n, err := weft.ParentResult[int](ps, key)
			if err != nil {
				return weft.Permanent(err)
			}
			sum += n
		}
		return tk.SetResult(map[string]int{"parents": len(ps), "sum": sum})
	})
	c := startClient(t, e, nil, ws, weft.Config{})
	res, err := c.EnqueueFlow(e.ctx, weft.NewFlow("fan").
		Add("split", splitArgs{Parts: 4}).
		Add("merge", mergeArgs{}, weft.After("split/*")))
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(t, e, res.Tasks["merge"], store.StateCompleted)
	assertJSON(t, "merge's result", got.Result, json.RawMessage(`{"parents":5,"sum":100}`))
	if got.FlowID != res.ID || got.FlowKey != "merge" {
		t.Fatalf("merge: flow %q key %q", got.FlowID, got.FlowKey)
	}
	eventually(t, time.Minute, "the flow did not succeed", func() bool {
		f, err := c.Flow(e.ctx, res.ID)
		return err == nil && f.State == weft.FlowSucceeded && f.Counts.Total == 6
	})
	if _, err := c.EnqueueFlow(e.ctx, weft.NewFlow("bad").Add("a", partArgs{}, weft.After("a"))); !errors.Is(err, weft.ErrInvalid) {
		t.Fatalf("a step depending on itself: %v", err)
	}
	if _, err := c.EnqueueFlow(e.ctx, weft.NewFlow("nil").Add("a", nil)); !errors.Is(err, weft.ErrInvalid) {
		t.Fatalf("a step without args: %v", err)
	}
}

type approvalArgs struct {
	Order string `json:"order"`
}

func (approvalArgs) Kind() string { return "st.approval" }

// approvals runs the approval handler: it waits for "approve" or "reject"
// on its waitpoint, publishing the token on tokens, and completes with
// the decision and its payload.
func approvals(tokens chan<- string, timeout time.Duration, onTimeout weft.OnTimeout) *weft.Workers {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[approvalArgs]) error {
		wp, err := tk.Waitpoint(ctx, "approval", &weft.WaitpointOpts{Allow: []string{"approve", "reject"}})
		if err != nil {
			return err
		}
		if wp.TimedOut() {
			return tk.SetResult(map[string]string{"decision": "timed out"})
		}
		for _, name := range []string{"approve", "reject"} {
			if s, ok := wp.Signal(name); ok {
				by, err := weft.SignalPayload[map[string]string](s)
				if err != nil {
					return weft.Permanent(err)
				}
				return tk.SetResult(map[string]string{"decision": name, "by": by["by"]})
			}
		}
		if tokens != nil {
			tokens <- wp.Token
		}
		return weft.Wait(weft.WaitFor{Waitpoints: []string{wp.Name}, Timeout: timeout, OnTimeout: onTimeout})
	})
	return ws
}

func testEngineWait(t *testing.T, e *env) {
	tokens := make(chan string, 1)
	c := startClient(t, e, nil, approvals(tokens, 0, ""), weft.Config{})
	res, err := c.Enqueue(e.ctx, approvalArgs{Order: "42"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var token string
	select {
	case token = <-tokens:
	case <-e.ctx.Done():
		t.Fatal("the handler never handed out its token")
	}
	waiting := waitState(t, e, res.ID, store.StateWaiting)
	if waiting.Attempt != 0 {
		t.Fatalf("a waiting task spent its attempt: %d", waiting.Attempt)
	}
	if _, err := c.Signal(e.ctx, token+"x", weft.SignalParams{Name: "approve", Key: "k"}); !errors.Is(err, weft.ErrInvalidToken) {
		t.Fatalf("a tampered token: %v", err)
	}
	if _, err := c.Signal(e.ctx, token, weft.SignalParams{Name: "maybe", Key: "k"}); !errors.Is(err, weft.ErrInvalid) {
		t.Fatalf("a name the waitpoint does not allow: %v", err)
	}
	rec, err := c.Signal(e.ctx, token, weft.SignalParams{Name: "approve", Key: "mail-1", Payload: map[string]string{"by": "ada"}})
	if err != nil || !rec.Resumed {
		t.Fatalf("signal: %+v %v", rec, err)
	}
	got := waitState(t, e, res.ID, store.StateCompleted)
	assertJSON(t, "result", got.Result, json.RawMessage(`{"decision":"approve","by":"ada"}`))
	if got.Attempt != 1 {
		t.Fatalf("attempt after the resumed run = %d, want 1: a wait spends none", got.Attempt)
	}
	again, err := c.Signal(e.ctx, token, weft.SignalParams{Name: "approve", Key: "mail-1"})
	if err != nil || !again.Duplicate || again.Signal.ID != rec.Signal.ID {
		t.Fatalf("a repeat: %+v %v", again, err)
	}
	if _, err := c.Signal(e.ctx, token, weft.SignalParams{Name: "reject", Key: "mail-2"}); !errors.Is(err, weft.ErrAlreadyFinished) && !errors.Is(err, weft.ErrWaitpointClosed) {
		t.Fatalf("a signal after the task finished: %v", err)
	}
	evs := eventTypes(e.events(t, res.ID))
	for _, want := range []store.EventType{store.EventWaiting, store.EventSignalled, store.EventResumed} {
		if !slices.Contains(evs, want) {
			t.Fatalf("events %v lack %s", evs, want)
		}
	}
}

func testEngineWaitNoSlot(t *testing.T, e *env) {
	c := startClient(t, e, nil, func() *weft.Workers {
		ws := approvals(nil, 0, "")
		weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error { return nil })
		return ws
	}(), weft.Config{Queues: map[string]weft.QueueConfig{"default": {MaxWorkers: 1}}})
	const waiting = 50
	params := make([]weft.EnqueueParams, waiting)
	for i := range params {
		params[i] = weft.EnqueueParams{Args: approvalArgs{Order: fmt.Sprint(i)}}
	}
	if _, err := c.EnqueueMany(e.ctx, params); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "not every approval came to wait", func() bool {
		return countsOf(t, e, e.st)["default"].Counts[store.StateWaiting] == waiting
	})
	res, err := c.Enqueue(e.ctx, okArgs{N: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, res.ID, store.StateCompleted)
}

func testEngineWaitTimeout(t *testing.T, e *env) {
	c := startClient(t, e, nil, approvals(nil, time.Hour, weft.TimeoutResume), weft.Config{Now: e.clock.Now, WaitTimeoutInterval: 10 * time.Millisecond})
	res, err := c.Enqueue(e.ctx, approvalArgs{Order: "late"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, res.ID, store.StateWaiting)
	e.clock.Advance(time.Hour)
	got := waitState(t, e, res.ID, store.StateCompleted)
	assertJSON(t, "result", got.Result, json.RawMessage(`{"decision":"timed out"}`))
}

func testEngineWaitStep(t *testing.T, e *env) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[okArgs]) error {
		ps, err := tk.Parents(ctx)
		if err != nil {
			return err
		}
		return tk.SetResult(ps["approve"].Result)
	})
	c := startClient(t, e, nil, ws, weft.Config{})
	res, err := c.EnqueueFlow(e.ctx, weft.NewFlow("release").
		Add("approve", weft.WaitStep{Allow: []string{"ok"}}).
		Add("ship", okArgs{N: 1}, weft.After("approve")))
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, e, res.Tasks["approve"], store.StateWaiting)
	if _, err := c.SignalTask(e.ctx, res.Tasks["approve"], "signal", weft.SignalParams{Name: "ok", Key: "k", Payload: "lgtm"}); err != nil {
		t.Fatal(err)
	}
	got := waitState(t, e, res.Tasks["ship"], store.StateCompleted)
	var result struct {
		Signals []store.Signal `json:"signals"`
	}
	if err := json.Unmarshal(got.Result, &result); err != nil || len(result.Signals) != 1 || string(result.Signals[0].Payload) != `"lgtm"` {
		t.Fatalf("ship saw the approval as %s (%v)", got.Result, err)
	}
}

type limArgs struct {
	Key string `json:"key"`
}

func (limArgs) Kind() string { return "st.lim" }

func testEngineLimits(t *testing.T, e *env) {
	e.setLimit(t, store.Limit{Name: "cap", Concurrency: 2})
	var (
		mu      sync.Mutex
		running = map[string]int{}
		most    = map[string]int{}
	)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, tk *weft.Task[limArgs]) error {
		mu.Lock()
		running[tk.Args.Key]++
		most[tk.Args.Key] = max(most[tk.Args.Key], running[tk.Args.Key])
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		running[tk.Args.Key]--
		mu.Unlock()
		return nil
	})
	startClient(t, e, nil, ws, weft.Config{Queues: map[string]weft.QueueConfig{"default": {MaxWorkers: 10}}})
	var batch []store.NewTask
	for i := range 30 {
		key := fmt.Sprintf("k%d", i%3)
		batch = append(batch, store.NewTask{Kind: "st.lim", Args: json.RawMessage(`{"key":"` + key + `"}`), LimitKeys: map[string]string{"cap": key}})
	}
	e.enqueue(t, batch...)
	eventually(t, time.Minute, "not every limited task completed", func() bool {
		return countsOf(t, e, e.st)["default"].Counts[store.StateCompleted] == 30
	})
	mu.Lock()
	defer mu.Unlock()
	for k, n := range most {
		if n > 2 {
			t.Fatalf("%d handlers of key %s ran at once, over the cap of 2", n, k)
		}
	}
	e.noDrift(t)
}
