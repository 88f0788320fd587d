// Package engine runs tasks: it turns wakeups into batched claims, runs
// handlers under renewed, fenced leases, records their outcomes in batches,
// and stops gracefully.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft/internal/tracing"
	"github.com/weftworks/weft/store"
)

// Causes with which a handler's context is cancelled; context.Cause tells
// the handler which one applied.
var (
	// ErrCancelRequested: someone cancelled the task while it ran.
	ErrCancelRequested = errors.New("task cancellation requested")
	// ErrShutdown: the engine is stopping and the grace period is over; the
	// task goes back to pending without spending its attempt.
	ErrShutdown = errors.New("worker shutting down")
	// ErrAttemptTimeout: the attempt ran longer than its timeout.
	ErrAttemptTimeout = errors.New("attempt timed out")
)

// Action is what a handler's verdict asks the engine to record.
type Action int

// The actions a verdict can take.
const (
	// Complete records success, with Verdict.Result.
	Complete Action = iota
	// Retry records a failed attempt; the task runs again after a backoff
	// (or Verdict.Delay when set) while attempts remain, else it fails.
	Retry
	// Snooze runs the task again after Verdict.Delay without spending the
	// attempt.
	Snooze
	// Fail fails the task at once, whatever attempts remain.
	Fail
	// Cancel ends the task cancelled.
	Cancel
	// Wait suspends the task on its waitpoints (Verdict.Wait) without
	// spending the attempt: it holds no lease until a signal (or the
	// wait's timeout) makes it pending again.
	Wait
)

// String names the action: complete, retry, snooze, fail, cancel, wait.
func (a Action) String() string {
	names := []string{"complete", "retry", "snooze", "fail", "cancel", "wait"}
	if a < 0 || int(a) >= len(names) {
		return fmt.Sprintf("action(%d)", int(a))
	}
	return names[a]
}

// Verdict is a handler's answer for one attempt.
type Verdict struct {
	Action Action
	Result json.RawMessage
	Err    error
	Delay  time.Duration
	// Stack is the goroutine stack of a recovered panic.
	Stack string
	// Wait is the suspension of a Wait verdict.
	Wait *store.WaitSpec
	// RateLimited, on a Snooze, says the handler met an upstream's rate
	// limit: the task's rate limits are held back for every task until
	// the snooze ends.
	RateLimited bool
}

// Handler runs one attempt of a task.
type Handler func(ctx context.Context, x *Execution) Verdict

// Kind is the registration of one task kind.
type Kind struct {
	Handler Handler
	// Timeout bounds an attempt when the task sets no timeout of its own.
	Timeout time.Duration
	// Backoff returns the delay before retrying after a failed attempt;
	// nil means DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// NotResumable tasks are failed, not retried, when their owner dies
	// while running them.
	NotResumable bool
}

// Config configures an Engine.
type Config struct {
	// Store is where an engine in the process that owns it claims tasks
	// and records their outcomes.
	Store store.Runner
	// Flows, with Store, lets handlers read their parents and add members
	// to their flows.
	Flows store.Flows
	// Waits, with Store, lets handlers create waitpoints and read their
	// signals.
	Waits store.Waits
	// Streams, with Store, lets handlers write output streams.
	Streams store.Streams
	// Source, when set, takes the place of Store: `weft worker`'s is a
	// Weft server's HTTP API.
	Source Source
	// Owner identifies this node in leases; it must be unique per engine.
	Owner string
	// Queues maps each queue this engine works to its concurrency.
	Queues map[string]int
	Kinds  map[string]Kind
	// FailUnknownKinds makes the engine claim tasks of kinds it has no
	// handler for and fail them; by default they are left for other
	// workers.
	FailUnknownKinds bool
	// LeaseTTL is how long a claim holds a task without renewal. Leases
	// are renewed every LeaseTTL/3. Default 30s.
	LeaseTTL time.Duration
	// PollInterval is the safety-net poll. Default 5s.
	PollInterval time.Duration
	// MaxClaim bounds one claim per queue. Default 1000.
	MaxClaim int
	// Labels are the node's worker labels: it claims the tasks whose
	// requirements they satisfy.
	Labels map[string]string
	Logger *slog.Logger
	// LogOutcomes logs each attempt that ends its task, and each retry, at
	// info (LogOutcome), after its outcome is recorded.
	LogOutcomes bool
	// Tracer, when set, makes each attempt a span (tracing.StartAttempt)
	// that its handler's context carries.
	Tracer trace.Tracer
}

// Engine runs the tasks of the configured queues. An Engine runs once:
// Start, then Stop.
type Engine struct {
	cfg    Config
	src    Source
	notify Notifier // nil when the source cannot tell when work is ready
	log    *slog.Logger
	queues []string
	slots  int      // the sum of the queues' concurrency
	kinds  []string // claim filter; nil when unknown kinds are claimed too
	once   []string // kinds that may not be resumed

	// startLater: the source records starts (Starter), so the engine
	// claims ahead of its free workers into local run queues.
	startLater bool

	mu sync.Mutex
	qs map[string]*queueState
	// running holds every task this engine holds a lease on: running, or
	// waiting in a local run queue.
	running map[string]*runningTask
	// lagging is signalled when a run queue holds tasks that no worker was
	// woken for; the starter then watches how long they wait.
	lagging chan struct{}

	gen       atomic.Int64
	slotFreed chan struct{}

	workCtx    context.Context
	stopWork   context.CancelCauseFunc
	stopClaim  chan struct{}
	bgCtx      context.Context
	stopBg     context.CancelFunc
	claimCtx   context.Context
	cutClaim   context.CancelFunc
	handlers   sync.WaitGroup
	workers    sync.WaitGroup
	idle       chan *runningTask
	retire     chan struct{}
	dispatched chan struct{}
	background sync.WaitGroup
	done       *completer
	started    atomic.Bool
	stopOnce   sync.Once
	stopErr    error
}

type runningTask struct {
	task    *store.Task
	ctx     context.Context
	cancel  context.CancelCauseFunc
	gen     int64
	expires time.Time
	// queued is when the task entered its run queue.
	queued time.Time
}

// queueState is the engine's view of one queue: its slots, the tasks
// claimed ahead of free workers (its local run queue), and its measured
// throughput, which sizes that run queue.
type queueState struct {
	limit int // concurrency
	busy  int // handlers running
	// ready holds claimed tasks no handler has started, oldest first.
	ready []*runningTask
	// target is the run queue's size: queueHorizon of the queue's
	// throughput, which finished and rate measure, sampled at sampled.
	target   int
	finished int
	rate     float64
	sampled  time.Time
}

// Sizes of the local run queues. A queue holds about queueHorizon of its
// measured throughput, so a worker that finishes takes the next task at
// once while the next claim is under way, without one node hoarding work
// others could run: a node doing 60,000 no-op tasks a second queues 1,500
// (capped at MaxClaim), one doing 10 one-second tasks at a time queues
// none. The rate is sampled every rateWindow.
const (
	queueHorizon = 25 * time.Millisecond
	rateWindow   = 50 * time.Millisecond
	rateMemory   = 100 * time.Millisecond
	// startLag is how long a queued task may wait for a busy worker before
	// a parked one is woken for it; wakeBurst bounds the workers woken at
	// once. Waking one goroutine per claimed task was the cost at 2,000
	// workers; waking a few, and more only for tasks that wait, keeps a
	// blocking handler from delaying the next task by more than startLag.
	startLag  = time.Millisecond
	wakeBurst = 16
)

// New validates cfg and builds an engine.
func New(cfg Config) (*Engine, error) {
	src := cfg.Source
	switch {
	case src == nil && cfg.Store == nil:
		return nil, errors.New("engine: no store")
	case src == nil:
		src = &storeSource{Runner: cfg.Store, flows: cfg.Flows, waits: cfg.Waits, streams: cfg.Streams}
	case cfg.Store != nil:
		return nil, errors.New("engine: both a store and a source")
	}
	if cfg.Owner == "" {
		return nil, errors.New("engine: no owner id")
	}
	if len(cfg.Queues) == 0 {
		return nil, errors.New("engine: no queues to work")
	}
	for q, n := range cfg.Queues {
		if !store.ValidName(q) {
			return nil, &store.ValidationError{Index: -1, Field: "queue", Message: fmt.Sprintf("%q is not a valid queue name", q)}
		}
		if n <= 0 {
			return nil, &store.ValidationError{Index: -1, Field: "queue " + q, Message: fmt.Sprintf("concurrency %d must be at least 1", n)}
		}
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.MaxClaim <= 0 {
		cfg.MaxClaim = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Engine{
		cfg:        cfg,
		src:        src,
		log:        cfg.Logger,
		qs:         make(map[string]*queueState, len(cfg.Queues)),
		running:    make(map[string]*runningTask),
		lagging:    make(chan struct{}, 1),
		slotFreed:  make(chan struct{}, 1),
		stopClaim:  make(chan struct{}),
		idle:       make(chan *runningTask),
		retire:     make(chan struct{}),
		dispatched: make(chan struct{}),
	}
	e.notify, _ = src.(Notifier)
	_, e.startLater = src.(Starter)
	for q, n := range cfg.Queues {
		e.queues = append(e.queues, q)
		e.qs[q] = &queueState{limit: n}
		e.slots += n
	}
	slices.Sort(e.queues)
	for k, spec := range cfg.Kinds {
		if !cfg.FailUnknownKinds {
			e.kinds = append(e.kinds, k)
		}
		if spec.NotResumable {
			e.once = append(e.once, k)
		}
	}
	slices.Sort(e.kinds)
	slices.Sort(e.once)
	return e, nil
}

// Start begins claiming and running tasks. ctx bounds nothing beyond the
// call: use Stop to end the engine.
func (e *Engine) Start(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("engine: already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e.workCtx, e.stopWork = context.WithCancelCause(context.WithoutCancel(ctx))
	e.bgCtx, e.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	e.claimCtx, e.cutClaim = context.WithCancel(e.bgCtx)
	e.done = newCompleter(e.src, e.log, e.poke)
	e.done.logOutcomes = e.cfg.LogOutcomes
	// Subscribing before the first claim means no commit can slip between
	// the claim and the subscription unnoticed. Without a notifier the
	// wakeups never come: claims wait for work themselves.
	var wakeups <-chan struct{}
	unsubscribe := func() {}
	if e.notify != nil {
		wakeups, unsubscribe = e.notify.Subscribe()
		e.background.Add(1)
		go func() {
			defer e.background.Done()
			e.watchCancels()
		}()
	}
	e.background.Add(3)
	go func() {
		defer e.background.Done()
		defer close(e.dispatched)
		defer unsubscribe()
		e.dispatch(wakeups)
	}()
	go func() {
		defer e.background.Done()
		e.startLagging()
	}()
	go func() {
		defer e.background.Done()
		e.renewLeases()
	}()
	return nil
}

// Stop stops claiming, waits for running handlers until ctx is done, then
// cancels those still running (their tasks go back to pending without
// spending an attempt), records every outcome, and returns. It returns an
// error naming the handlers that ignored cancellation; their tasks stay
// leased until rescued.
func (e *Engine) Stop(ctx context.Context) error {
	if !e.started.Load() {
		return nil
	}
	e.stopOnce.Do(func() { e.stopErr = e.stop(ctx) })
	return e.stopErr
}

// abandonAfter bounds how long Stop waits for handlers that were cancelled
// at the end of the grace period.
const abandonAfter = 5 * time.Second

func (e *Engine) stop(ctx context.Context) error {
	close(e.stopClaim)
	if e.notify == nil {
		// The claim under way may be waiting for work for as long as its
		// long poll lasts; a stop does not wait for it. Tasks it was being
		// handed are rescued when their leases expire.
		e.cutClaim()
	}
	// A claim under way finishes and queues its tasks first; tasks no
	// handler has started go back at once, without spending an attempt.
	<-e.dispatched
	e.releaseQueued()
	handlersDone := make(chan struct{})
	go func() {
		e.handlers.Wait()
		close(handlersDone)
	}()
	var err error
	select {
	case <-handlersDone:
	case <-ctx.Done():
		e.stopWork(ErrShutdown)
		select {
		case <-handlersDone:
		case <-time.After(abandonAfter):
			e.mu.Lock()
			n := len(e.running)
			e.mu.Unlock()
			err = fmt.Errorf("engine: %d handlers ignored cancellation; their tasks stay leased until rescued", n)
		}
	}
	e.stopWork(ErrShutdown)
	close(e.retire)
	if err == nil {
		e.workers.Wait()
	}
	e.done.close()
	e.stopBg()
	e.background.Wait()
	return err
}

// CancelLocal cancels the handler running taskID in this engine, if any.
func (e *Engine) CancelLocal(taskID string) bool {
	e.mu.Lock()
	r, ok := e.running[taskID]
	e.mu.Unlock()
	if ok {
		r.cancel(ErrCancelRequested)
	}
	return ok
}

// Held is the number of tasks this engine holds a lease on: running, or
// waiting in its local run queues.
func (e *Engine) Held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.running)
}

// releaseQueued hands back the tasks no handler started, at stop.
func (e *Engine) releaseQueued() {
	e.mu.Lock()
	var queued []*runningTask
	for _, q := range e.qs {
		queued = append(queued, q.ready...)
		clear(q.ready)
		q.ready = q.ready[:0]
	}
	for _, r := range queued {
		delete(e.running, r.task.ID)
	}
	e.mu.Unlock()
	for _, r := range queued {
		r.cancel(ErrShutdown)
		e.finish(r, Verdict{Action: Retry, Err: ErrShutdown}, ErrShutdown, time.Time{})
		e.handlers.Done()
	}
}

func (e *Engine) dispatch(wakeups <-chan struct{}) {
	mayHaveWork := make(map[string]bool, len(e.queues))
	markAll := func() {
		for _, q := range e.queues {
			mayHaveWork[q] = true
		}
	}
	markAll()
	poll := time.NewTicker(e.cfg.PollInterval)
	defer poll.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var failures int
	for {
		next, err := e.claim(mayHaveWork)
		switch {
		case err != nil && e.claimCtx.Err() != nil:
			return
		case err != nil:
			failures++
			delay := min(time.Duration(failures)*50*time.Millisecond, e.cfg.PollInterval)
			e.log.Error("weft: claim failed; retrying", "err", err, "retry_in", delay)
			timer.Reset(delay)
		case !next.IsZero():
			failures = 0
			timer.Reset(max(time.Until(next), time.Millisecond))
		default:
			failures = 0
		}
		select {
		case <-e.stopClaim:
			return
		case <-wakeups:
			markAll()
		case <-e.slotFreed:
		case <-poll.C:
			markAll()
		case <-timer.C:
			markAll()
		}
	}
}

// poke makes the dispatcher look at its slots again.
func (e *Engine) poke() {
	select {
	case e.slotFreed <- struct{}{}:
	default:
	}
}

// claim claims for every queue that may have work and either has idle
// slots or a run queue below half its target. It returns the earliest
// run_at of pending work it left behind, if any, so the dispatcher can
// sleep exactly until then.
//
// A handler's slot is free once it returns, but its outcome is written
// later, in batches. While the store is slow those unwritten outcomes pile
// up, and a crash would run every one of them again; so no claim is made
// while they outnumber the tasks the node may hold (its slots and run
// queues; the completer pokes the dispatcher after each batch).
func (e *Engine) claim(mayHaveWork map[string]bool) (time.Time, error) {
	req := store.ClaimRequest{Owner: e.cfg.Owner, Kinds: e.kinds, LeaseTTL: e.cfg.LeaseTTL, NotResumable: e.once, StartLater: e.startLater, Labels: e.cfg.Labels}
	now := time.Now()
	capacity := e.slots
	e.mu.Lock()
	for _, name := range e.queues {
		q := e.qs[name]
		capacity += e.sizeQueue(q, now)
		if !mayHaveWork[name] {
			continue
		}
		idle := q.limit - q.busy - len(q.ready)
		room := idle + q.target - len(q.ready)
		if idle > 0 || (len(q.ready) <= q.target/2 && room > 0) {
			req.Queues = append(req.Queues, store.QueueClaim{Queue: name, Limit: min(room, e.cfg.MaxClaim)})
		}
	}
	e.mu.Unlock()
	if len(req.Queues) == 0 || e.done.backlog.Load() >= int64(capacity) {
		return time.Time{}, nil
	}
	tasks, err := e.src.Claim(e.claimCtx, req)
	if err != nil {
		return time.Time{}, err
	}
	// Stamped after the claim committed: see renewLeases.
	gen := e.gen.Add(1)
	got := make(map[string]int, len(req.Queues))
	now = time.Now()
	expires := now.Add(e.cfg.LeaseTTL)
	e.mu.Lock()
	for _, t := range tasks {
		got[t.Queue]++
		ctx, cancel := context.WithCancelCause(e.workCtx)
		r := &runningTask{task: t, ctx: ctx, cancel: cancel, gen: gen, expires: expires, queued: now}
		e.running[t.ID] = r
		e.handlers.Add(1)
		q := e.qs[t.Queue]
		q.ready = append(q.ready, r)
	}
	lagging := false
	for name := range got {
		lagging = e.wake(e.qs[name], wakeBurst) || lagging
	}
	e.mu.Unlock()
	if lagging {
		e.signalLagging()
	}
	if len(tasks) > 0 {
		// Let the woken workers start before this goroutine goes into the
		// store again: a cgo call holds the P, and a woken worker would
		// otherwise wait tens of microseconds for the scheduler to move it.
		runtime.Gosched()
	}
	var drained []string
	for _, qc := range req.Queues {
		if got[qc.Queue] < qc.Limit {
			mayHaveWork[qc.Queue] = false
			drained = append(drained, qc.Queue)
		}
	}
	if len(drained) == 0 {
		return time.Time{}, nil
	}
	if e.notify == nil {
		// The source's claims wait for work: claim again at once.
		return time.Now(), nil
	}
	next, ok, err := e.notify.NextRunAt(e.bgCtx, drained, e.kinds)
	if err != nil || !ok {
		return time.Time{}, err
	}
	return next, nil
}

// sizeQueue updates q's throughput sample and run-queue target, and
// returns the target. e.mu is held.
func (e *Engine) sizeQueue(q *queueState, now time.Time) int {
	if !e.startLater {
		return 0
	}
	if el := now.Sub(q.sampled); el >= rateWindow {
		r := 0.0
		if !q.sampled.IsZero() {
			r = float64(q.finished) / el.Seconds()
		}
		// A moving average whose weights decay with time, not with
		// samples: after an idle spell the old rate is forgotten, so a
		// node that was busy does not claim a short backlog whole.
		w := math.Exp(-el.Seconds() / rateMemory.Seconds())
		q.rate = w*q.rate + (1-w)*r
		q.finished, q.sampled = 0, now
		q.target = min(int(q.rate*queueHorizon.Seconds()), e.cfg.MaxClaim)
	}
	return q.target
}

// wake starts up to n of q's queued tasks on parked (or new) workers, as
// slots allow, and reports whether tasks were left queued with slots to
// spare. e.mu is held.
func (e *Engine) wake(q *queueState, n int) bool {
	for ; n > 0 && len(q.ready) > 0 && q.busy < q.limit; n-- {
		e.hand(e.pop(q))
	}
	return len(q.ready) > 0 && q.busy < q.limit
}

// pop takes q's oldest queued task for a handler. e.mu is held.
func (e *Engine) pop(q *queueState) *runningTask {
	r := q.ready[0]
	q.ready[0] = nil
	q.ready = q.ready[1:]
	q.busy++
	return r
}

func (e *Engine) signalLagging() {
	select {
	case e.lagging <- struct{}{}:
	default:
	}
}

// startLagging wakes parked workers for queued tasks that have waited
// startLag for a busy one: handlers that block are not left holding the
// tasks behind them. It sleeps while no run queue has tasks and spare
// slots.
func (e *Engine) startLagging() {
	timer := time.NewTimer(startLag)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-e.bgCtx.Done():
			return
		case <-e.lagging:
		}
		for lagging := true; lagging; {
			timer.Reset(startLag)
			select {
			case <-e.bgCtx.Done():
				return
			case <-timer.C:
			}
			lagging = false
			now := time.Now()
			e.mu.Lock()
			for _, q := range e.qs {
				if len(q.ready) > 0 && q.busy < q.limit && now.Sub(q.ready[0].queued) >= startLag {
					e.wake(q, wakeBurst)
				}
				lagging = lagging || (len(q.ready) > 0 && q.busy < q.limit)
			}
			e.mu.Unlock()
		}
	}
}

// hand gives r to an idle worker goroutine, or starts one. Workers live
// until Stop: a fresh goroutine per task regrew its stack for every handler
// (measured: 15% of CPU in a no-op burn-down).
func (e *Engine) hand(r *runningTask) {
	select {
	case e.idle <- r:
	default:
		e.workers.Add(1)
		go e.worker(r)
	}
}

// worker runs tasks until Stop: the one it was handed, then the next
// queued task of the same queue, without parking, for as long as there is
// one.
func (e *Engine) worker(r *runningTask) {
	defer e.workers.Done()
	for {
		for r != nil {
			r = e.run(r)
		}
		select {
		case r = <-e.idle:
		case <-e.retire:
			return
		}
	}
}

// run runs r's handler and returns the next queued task of its queue for
// the same worker, or nil.
func (e *Engine) run(r *runningTask) *runningTask {
	defer e.handlers.Done()
	t, ctx := r.task, r.ctx
	var (
		v     Verdict
		began time.Time
	)
	if cause := context.Cause(ctx); cause != nil {
		// Cancelled, lost or released while queued: the handler never runs.
		v = Verdict{Action: Retry, Err: cause}
	} else {
		began = time.Now()
		if e.startLater {
			e.done.submitStart(store.Start{TaskID: t.ID, Epoch: t.LeaseEpoch, At: began})
		}
		if e.cfg.Tracer != nil {
			actx, span := tracing.StartAttempt(ctx, e.cfg.Tracer, t)
			v = invoke(actx, e.cfg.Kinds, e.src, t)
			tracing.EndAttempt(span, v.Action.String(), v.Err)
		} else {
			v = invoke(ctx, e.cfg.Kinds, e.src, t)
		}
	}
	cause := context.Cause(ctx)
	var next *runningTask
	poke := false
	e.mu.Lock()
	if e.running[t.ID] == r {
		delete(e.running, t.ID)
	}
	q := e.qs[t.Queue]
	q.busy--
	q.finished++
	if len(q.ready) > 0 {
		next = e.pop(q)
	}
	// The dispatcher claims when slots go idle or the run queue runs low.
	poke = len(q.ready) <= q.target/2
	e.mu.Unlock()
	r.cancel(nil)
	if poke {
		e.poke()
	}
	e.finish(r, v, cause, began)
	return next
}

// finish submits the outcome of r's attempt, whose handler began at began
// (zero when it never ran).
func (e *Engine) finish(r *runningTask, v Verdict, cause error, began time.Time) {
	if o, ok := e.decide(r.task, v, cause); ok {
		e.done.submit(Finished{Outcome: o, Task: r.task, Verdict: v, Cause: cause, Began: began})
	}
}

// invoke runs t's handler from kinds under its attempt timeout, and turns
// a panic into a failed attempt.
func invoke(ctx context.Context, kinds map[string]Kind, src Source, t *store.Task) (v Verdict) {
	k, ok := kinds[t.Kind]
	if !ok {
		return Verdict{Action: Fail, Err: fmt.Errorf("no worker is registered for kind %q", t.Kind)}
	}
	timeout := t.AttemptTimeout
	if timeout <= 0 {
		timeout = k.Timeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w after %s", ErrAttemptTimeout, timeout))
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			v = Verdict{Action: Retry, Err: fmt.Errorf("panic: %v", p), Stack: string(debug.Stack())}
		}
	}()
	v = k.Handler(ctx, &Execution{Task: t, src: src})
	if v.Action != Complete && v.Err == nil {
		v.Err = errors.New("handler gave no error")
	}
	if v.Action == Retry && errors.Is(context.Cause(ctx), ErrAttemptTimeout) {
		v.Err = fmt.Errorf("%w: %w", context.Cause(ctx), v.Err)
	}
	return v
}

// decide turns a verdict of one of this engine's handlers into the outcome
// to record, with the kind's backoff.
func (e *Engine) decide(t *store.Task, v Verdict, cause error) (store.Outcome, bool) {
	if errors.Is(cause, store.ErrLeaseLost) {
		e.log.Warn("weft: lease lost; outcome not recorded", "task", t.ID, "kind", t.Kind, "epoch", t.LeaseEpoch)
		return store.Outcome{}, false
	}
	return Decide(t, v, cause, backoffOf(e.cfg.Kinds, t.Kind), time.Now()), true
}

// backoffOf is kind's retry policy in kinds: its own, or DefaultBackoff.
func backoffOf(kinds map[string]Kind, kind string) func(int) time.Duration {
	if k, ok := kinds[kind]; ok && k.Backoff != nil {
		return k.Backoff
	}
	return DefaultBackoff
}

// RunAttempt runs one attempt of t, a task claimed from st, synchronously,
// by the rules the engine runs every attempt by: the handler of t's kind
// in kinds (a kind missing from kinds fails the task) under its attempt
// timeout, a panic recovered as a failed attempt, and the verdict decided
// (Decide) with the kind's backoff at the time now reads once the handler
// returned. Progress and output frames are written to st under the
// claim's epoch. Nothing else is recorded: the caller finishes the
// outcome, and has the verdict it was decided from. Package weftest runs
// users' handlers in their tests through it.
func RunAttempt(ctx context.Context, st AttemptStore, kinds map[string]Kind, t *store.Task, now func() time.Time) (store.Outcome, Verdict) {
	v := invoke(ctx, kinds, &storeSource{Runner: st, streams: st}, t)
	return Decide(t, v, context.Cause(ctx), backoffOf(kinds, t.Kind), now()), v
}

// AttemptStore is what RunAttempt writes an attempt's progress and output
// frames to.
type AttemptStore interface {
	store.Runner
	store.Streams
}

// Decide turns a verdict into the outcome to record for the attempt t. A
// handler that completed is recorded completed whatever cancelled its
// context; otherwise a cancel request or a shutdown (cause) decides, except
// that an explicit verdict (fail, cancel, snooze) is honoured over a
// shutdown. A retry waits Verdict.Delay, or backoff(attempt) when that is
// zero, and fails the task once no attempt remains. Remote workers' outcomes
// go through the same rules as in-process handlers'.
func Decide(t *store.Task, v Verdict, cause error, backoff func(int) time.Duration, now time.Time) store.Outcome {
	o := store.Outcome{TaskID: t.ID, Epoch: t.LeaseEpoch, InFlow: t.FlowID != "", Limited: len(t.LimitKeys) > 0}
	if v.Action != Complete && v.Err == nil {
		v.Err = errors.New("no error given")
	}
	attemptErr := func() *store.AttemptError {
		return &store.AttemptError{Attempt: t.Attempt, At: now.UTC(), Error: v.Err.Error(), Stack: v.Stack}
	}
	switch {
	case v.Action == Complete:
		o.State, o.Event, o.Result = store.StateCompleted, store.EventCompleted, v.Result
	case errors.Is(cause, ErrShutdown) && v.Action == Retry:
		// An attempt cut short by shutdown is not the task's failure; an
		// explicit verdict (fail, cancel, snooze) is still honoured below.
		o.State, o.Event, o.RunAt, o.Refund = store.StatePending, store.EventReleased, now, true
		o.EventData = mustJSON(map[string]any{"reason": "shutdown"})
	case errors.Is(cause, ErrCancelRequested), v.Action == Cancel:
		o.State, o.Event, o.Error = store.StateCancelled, store.EventCancelled, attemptErr()
		o.EventData = mustJSON(map[string]any{"error": v.Err.Error()})
	case v.Action == Fail:
		o.State, o.Event, o.Error = store.StateFailed, store.EventFailed, attemptErr()
		o.EventData = mustJSON(map[string]any{"error": v.Err.Error()})
	case v.Action == Snooze:
		o.State, o.Event, o.RunAt, o.Refund = store.StatePending, store.EventSnoozed, now.Add(v.Delay).Truncate(time.Microsecond), true
		o.EventData = mustJSON(map[string]any{"run_at": o.RunAt.UTC()})
		if v.RateLimited {
			o.RateLimited = true
			o.EventData = mustJSON(map[string]any{"run_at": o.RunAt.UTC(), "reason": "rate_limited"})
		}
	case v.Action == Wait && v.Wait != nil:
		o.State, o.Event, o.Wait, o.Refund = store.StateWaiting, store.EventWaiting, v.Wait, true
	case t.Attempt >= t.MaxAttempts:
		o.State, o.Event, o.Error = store.StateFailed, store.EventFailed, attemptErr()
		o.EventData = mustJSON(map[string]any{"error": v.Err.Error(), "reason": "attempts_exhausted"})
	default:
		delay := v.Delay
		if delay <= 0 {
			if backoff == nil {
				backoff = DefaultBackoff
			}
			delay = backoff(t.Attempt)
		}
		// Stores keep microseconds; the event data says what was stored.
		o.State, o.Event, o.RunAt, o.Error = store.StatePending, store.EventRetryScheduled, now.Add(delay).Truncate(time.Microsecond), attemptErr()
		o.EventData = mustJSON(map[string]any{"error": v.Err.Error(), "run_at": o.RunAt.UTC()})
	}
	return o
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("engine: encode event data: %v", err))
	}
	return b
}

// renewLeases extends this node's leases every LeaseTTL/3 and cancels the
// handlers whose lease is gone: re-claimed elsewhere, rescued, or not
// renewed in time.
func (e *Engine) renewLeases() {
	e.every(e.cfg.LeaseTTL/3, func() {
		if e.Held() == 0 {
			return
		}
		// Only tasks whose claim committed before this renewal started are
		// judged: a claim under way may commit after the renewal and so be
		// missing from its answer. Claims are stamped after they commit.
		gen := e.gen.Add(1)
		started := time.Now()
		leases, err := e.src.ExtendLeases(e.bgCtx, e.cfg.Owner, e.cfg.LeaseTTL)
		if err != nil {
			e.log.Error("weft: lease renewal failed", "err", err)
		}
		held := make(map[string]store.Lease, len(leases))
		for _, l := range leases {
			held[l.TaskID] = l
		}
		e.mu.Lock()
		for id, r := range e.running {
			l, ok := held[id]
			switch {
			case err == nil && r.gen < gen && (!ok || l.Epoch != r.task.LeaseEpoch):
				r.cancel(store.ErrLeaseLost)
			case err == nil && ok && l.CancelRequested:
				r.cancel(ErrCancelRequested)
			case err == nil && ok:
				r.expires = started.Add(e.cfg.LeaseTTL)
			case time.Now().After(r.expires):
				r.cancel(store.ErrLeaseLost)
			}
		}
		e.mu.Unlock()
	})
}

// watchCancels notices cancellations requested by other processes: after a
// commit by another connection, it asks the store which of this node's
// tasks were cancelled. Checks are at most every cancelCheckEvery.
func (e *Engine) watchCancels() {
	wakeups, unsubscribe := e.notify.Subscribe()
	defer unsubscribe()
	for {
		select {
		case <-e.bgCtx.Done():
			return
		case <-wakeups:
		}
		if e.Held() > 0 {
			ids, err := e.notify.CancelRequests(e.bgCtx, e.cfg.Owner)
			if err != nil && e.bgCtx.Err() == nil {
				e.log.Error("weft: cancel check failed", "err", err)
			}
			for _, id := range ids {
				e.CancelLocal(id)
			}
		}
		select {
		case <-e.bgCtx.Done():
			return
		case <-time.After(cancelCheckEvery):
		}
	}
}

const cancelCheckEvery = 50 * time.Millisecond

// every runs tick every interval until the engine stops; the first run is
// one interval after the call.
func (e *Engine) every(interval time.Duration, tick func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-e.bgCtx.Done():
			return
		case <-ticker.C:
			tick()
		}
	}
}
