package benchmark

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// stampArgs is the task of latency and xlatency.
type stampArgs struct {
	// T0 is when the task was enqueued, in Unix nanoseconds: the wall
	// clock, so that another process's stamp compares with this one's.
	T0 int64 `json:"t0"`
}

// Kind implements weft.TaskArgs.
func (stampArgs) Kind() string { return "bench.stamp" }

// The observer reads started tasks back every visiblePoll, or, when its
// reads are slow (a network round trip to PostgreSQL), after pausing
// visibleIdle times as long as its last round of reads took: its reads
// then occupy at most a fifth of one connection, whatever the backend.
// Measured on PostgreSQL with a fixed 200µs poll, the reads alone put the
// completion-visible p90 at 30–50ms instead of 8–9ms.
const (
	visiblePoll = 200 * time.Microsecond
	visibleIdle = 4
)

// sampleTimeout bounds the wait for the last sample after the last
// enqueue: a stuck engine fails the run instead of hanging it.
const sampleTimeout = 2 * time.Minute

// EnqueueStamped enqueues n stamped tasks through c one at a time, one
// every interval, and returns how long each Enqueue call took (its durable
// commit included). progress, when not nil, is called after each enqueue.
func EnqueueStamped(ctx context.Context, c *weft.Client, n int, interval time.Duration, progress func(done int)) ([]time.Duration, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	calls := make([]time.Duration, 0, n)
	for i := range n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		t0 := time.Now()
		if _, err := c.Enqueue(ctx, stampArgs{T0: t0.UnixNano()}, nil); err != nil {
			return nil, fmt.Errorf("enqueue sample %d: %w", i, err)
		}
		calls = append(calls, time.Since(t0))
		if progress != nil {
			progress(i + 1)
		}
	}
	return calls, nil
}

// Produce is xlatency's producer process: it opens the benchmark database
// p.DSN and enqueues p.Samples stamped tasks, one every p.Interval.
func Produce(ctx context.Context, p ProducerArgs, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.Default()
	}
	st, err := OpenDSN(ctx, p.DSN, p.Sync, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	c, err := weft.NewClient(st, &weft.Config{Logger: log})
	if err != nil {
		return err
	}
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	_, err = EnqueueStamped(ctx, c, p.Samples, p.Interval, nil)
	return err
}

// latency times stamped tasks from their enqueue — here, or in a producer
// process for xlatency — to their handler's start and to their completion
// being visible to a reader.
func (r *runner) latency(ctx context.Context, cross bool) (Result, error) {
	n := r.o.Samples
	if cross && r.o.Producer == nil {
		return Result{}, errors.New("no producer command (Options.Producer)")
	}
	obs := newObserver(r.db.Store, n)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(_ context.Context, t *weft.Task[stampArgs]) error {
		obs.started(t.ID, t.Args.T0, time.Now())
		return nil
	})
	// Wakeups alone must start the tasks: a frequent poll would only hide
	// a missed one.
	c, err := weft.NewClient(r.db.Store, r.config(ws, time.Minute))
	if err != nil {
		return Result{}, err
	}
	octx, cancelObs := context.WithCancel(ctx)
	defer cancelObs()
	go obs.run(octx)
	if err := c.Start(ctx); err != nil {
		return Result{}, err
	}
	stopWatch := r.progress.watch(n, "samples", obs.visibleCount)
	start := time.Now()
	var calls []time.Duration
	if cross {
		cmd := r.o.Producer(ctx, ProducerArgs{DSN: r.db.DSN, Samples: n, Interval: r.o.Interval, Sync: r.db.Sync})
		if out, perr := cmd.CombinedOutput(); perr != nil {
			err = fmt.Errorf("producer process: %w\n%s", perr, out)
		}
	} else {
		calls, err = EnqueueStamped(ctx, c, n, r.o.Interval, nil)
	}
	if err == nil {
		err = obs.wait(ctx, sampleTimeout)
	}
	elapsed := time.Since(start)
	stopWatch()
	if err = errors.Join(err, stopClient(ctx, c)); err != nil {
		return Result{}, err
	}
	startLat, visible := obs.samples()
	res := Result{Tasks: n, Workers: r.o.Workers, Seconds: elapsed.Seconds()}
	res.setPercentiles("enqueue to handler start", Summarize(startLat))
	v := Summarize(visible)
	res.VisibleP50Ms, res.VisibleP90Ms, res.VisibleP99Ms, res.VisibleMaxMs = msPtr(v.P50), msPtr(v.P90), msPtr(v.P99), msPtr(v.Max)
	if len(calls) > 0 {
		res.EnqueueP50Ms = msPtr(Summarize(calls).P50)
	}
	return res, nil
}

// observer records when stamped tasks start, and reads each started task
// back until it is seen completed.
type observer struct {
	st   store.Store
	want int
	// queue carries started tasks from handlers to the reading goroutine;
	// it holds every sample, so a handler never blocks on it.
	queue chan watched
	// all is closed once every sample was seen completed; failed carries a
	// read error.
	all    chan struct{}
	failed chan error

	mu      sync.Mutex
	start   []time.Duration
	visible []time.Duration
}

// watched is a started task awaiting its completion.
type watched struct {
	id string
	t0 int64
}

func newObserver(st store.Store, want int) *observer {
	return &observer{
		st: st, want: want,
		queue:  make(chan watched, want),
		all:    make(chan struct{}),
		failed: make(chan error, 1),
	}
}

// started records a task's handler start; called from handlers.
func (o *observer) started(id string, t0 int64, now time.Time) {
	o.mu.Lock()
	o.start = append(o.start, time.Duration(now.UnixNano()-t0))
	o.mu.Unlock()
	select {
	case o.queue <- watched{id: id, t0: t0}:
	default: // more tasks than samples: not one of ours to time
	}
}

// run polls started tasks with store.Get until want of them were seen
// completed, or ctx ends.
func (o *observer) run(ctx context.Context) {
	var pending []watched
	seen := 0
	for seen < o.want {
		if len(pending) == 0 {
			// Idle: wait for a start rather than spin.
			select {
			case w := <-o.queue:
				pending = append(pending, w)
			case <-ctx.Done():
				return
			}
		}
	drain:
		for {
			select {
			case w := <-o.queue:
				pending = append(pending, w)
			default:
				break drain
			}
		}
		kept, round := pending[:0], time.Now()
		for _, w := range pending {
			t, err := o.st.Get(ctx, w.id)
			if err != nil {
				if ctx.Err() == nil {
					o.failed <- fmt.Errorf("read back task %s: %w", w.id, err)
				}
				return
			}
			if t.State != store.StateCompleted {
				kept = append(kept, w)
				continue
			}
			o.mu.Lock()
			o.visible = append(o.visible, time.Duration(time.Now().UnixNano()-w.t0))
			o.mu.Unlock()
			seen++
		}
		pending = kept
		if seen == o.want {
			break
		}
		if len(pending) > 0 {
			select {
			case <-time.After(max(visiblePoll, visibleIdle*time.Since(round))):
			case <-ctx.Done():
				return
			}
		}
	}
	close(o.all)
}

// wait waits until every sample was seen completed, for at most timeout.
func (o *observer) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-o.all:
		return nil
	case err := <-o.failed:
		return err
	case <-t.C:
		return fmt.Errorf("only %d of %d samples completed within %s", o.visibleCount(), o.want, timeout)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// visibleCount is how many samples were seen completed so far.
func (o *observer) visibleCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.visible)
}

// samples returns copies of the start and visible latencies.
func (o *observer) samples() (start, visible []time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]time.Duration(nil), o.start...), append([]time.Duration(nil), o.visible...)
}
