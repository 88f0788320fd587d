package benchmark

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft"
)

// Flow scenarios:
//
//   - flow-submit: one flow of N no-op members (at most 10,000, the bound
//     of one request), members without dependencies but for a completion
//     member over all of them; the figure is members per second of the
//     EnqueueFlow call.
//   - flow-burndown: N tasks as N/100 flows of 1 → 98 → 1 (a root, 98
//     members depending on it, one fan-in depending on the 98), enqueued
//     first; then a client with W workers drains them, as burndown drains
//     N plain tasks. Compare the two rates: a flow's cost is the
//     resolution of its edges, in the transactions that finish its
//     members.
//   - flow-latency: Samples flows of two members, parent → child, one
//     every Interval, into a running client; percentiles of the time from
//     the parent's handler returning to the child's handler starting.

// The flow scenarios' names.
const (
	FlowSubmit   Scenario = "flow-submit"
	FlowBurndown Scenario = "flow-burndown"
	FlowLatency  Scenario = "flow-latency"
)

// flowWidth is the members of one flow-burndown flow.
const flowWidth = 100

// flowSubmit times one EnqueueFlow of up to 10,000 members.
func (r *runner) flowSubmit(ctx context.Context) (Result, error) {
	n := min(r.o.Tasks, 10_000)
	c, err := weft.NewClient(r.db.Store, &weft.Config{Logger: r.log})
	if err != nil {
		return Result{}, err
	}
	f := weft.NewFlow("submit")
	for i := range n - 1 {
		f.Add(fmt.Sprintf("m%d", i), noopArgs{N: i})
	}
	f.Add("done", noopArgs{}, weft.After("*"), weft.WithJoin(weft.AllDone))
	start := time.Now()
	if _, err := c.EnqueueFlow(ctx, f); err != nil {
		return Result{}, err
	}
	elapsed := time.Since(start)
	r.progress.report(n, n, "submit")
	return Result{Tasks: n, Seconds: elapsed.Seconds()}, nil
}

// fanFlow is one flow-burndown flow: a root, width-2 members after it, and
// a fan-in after them.
func fanFlow(width int) *weft.Flow {
	f := weft.NewFlow("fan").Add("root", noopArgs{})
	mids := make([]string, 0, width-2)
	for i := range width - 2 {
		key := fmt.Sprintf("m%d", i)
		mids = append(mids, key)
		f.Add(key, noopArgs{N: i}, weft.After("root"))
	}
	return f.Add("fanin", noopArgs{}, weft.After(mids...))
}

// flowBurndown enqueues N tasks as flows of flowWidth, then times a
// started client draining them.
func (r *runner) flowBurndown(ctx context.Context) (Result, error) {
	flows := max(r.o.Tasks/flowWidth, 1)
	n := flows * flowWidth
	var done atomic.Int64
	all := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[noopArgs]) error {
		if done.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	c, err := weft.NewClient(r.db.Store, r.config(ws, 0))
	if err != nil {
		return Result{}, err
	}
	for i := range flows {
		if _, err := c.EnqueueFlow(ctx, fanFlow(flowWidth)); err != nil {
			return Result{}, fmt.Errorf("enqueue flow %d: %w", i, err)
		}
		r.progress.report((i+1)*flowWidth, n, "insert")
	}
	elapsed, err := r.run(ctx, c, all, true, n, "drain", func() int { return int(done.Load()) })
	if err != nil {
		return Result{}, err
	}
	return Result{Tasks: n, Workers: r.o.Workers, Seconds: elapsed.Seconds()}, nil
}

// stepArgs are flow-latency's members: the parent records when its
// handler returned, the child how long after that it started.
type stepArgs struct {
	Child bool `json:"child"`
}

// Kind implements weft.TaskArgs.
func (stepArgs) Kind() string { return "bench.step" }

// flowLatency times parent-to-child handoffs in a running client.
func (r *runner) flowLatency(ctx context.Context) (Result, error) {
	n := r.o.Samples
	var (
		ended   sync.Map // flow id → time the parent's handler returned
		mu      sync.Mutex
		samples = make([]time.Duration, 0, n)
		all     = make(chan struct{})
	)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(_ context.Context, t *weft.Task[stepArgs]) error {
		if !t.Args.Child {
			ended.Store(t.FlowID, time.Now())
			return nil
		}
		v, ok := ended.Load(t.FlowID)
		if !ok {
			return weft.Permanent(fmt.Errorf("the child of flow %s started before its parent ended", t.FlowID))
		}
		d := time.Since(v.(time.Time))
		mu.Lock()
		samples = append(samples, d)
		if len(samples) == n {
			close(all)
		}
		mu.Unlock()
		return nil
	})
	c, err := weft.NewClient(r.db.Store, r.config(ws, 0))
	if err != nil {
		return Result{}, err
	}
	if err := c.Start(ctx); err != nil {
		return Result{}, err
	}
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	start := time.Now()
	for i := range n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return Result{}, errors.Join(context.Cause(ctx), stopClient(ctx, c))
		}
		f := weft.NewFlow("handoff").Add("parent", stepArgs{}).Add("child", stepArgs{Child: true}, weft.After("parent"))
		if _, err := c.EnqueueFlow(ctx, f); err != nil {
			return Result{}, errors.Join(fmt.Errorf("enqueue flow %d: %w", i, err), stopClient(ctx, c))
		}
		r.progress.report(i+1, n, "flows")
	}
	select {
	case <-all:
	case <-time.After(sampleTimeout):
		return Result{}, errors.Join(errors.New("not every child started"), stopClient(ctx, c))
	}
	elapsed := time.Since(start)
	if err := stopClient(ctx, c); err != nil {
		return Result{}, err
	}
	res := Result{Tasks: n, Workers: r.o.Workers, Seconds: elapsed.Seconds()}
	mu.Lock()
	res.setPercentiles("parent's handler returned to child's handler started", Summarize(samples))
	mu.Unlock()
	return res, nil
}
