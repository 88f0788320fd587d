package benchmark

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft"
)

// Output stream scenarios:
//
//   - stream-append: W tasks (at most N) each write N/W text frames of 100
//     bytes, one Task.StreamText call — one durable write — each, all at
//     once; the figure is frames per second, from the client's Start until
//     the last handler returned.
//   - stream-lag: one task writes Samples frames, one every Interval,
//     while a reader follows its stream with Client.FollowStream in the
//     same process; percentiles of the time from a frame's StreamText call
//     returning (its commit acknowledged) to the follower receiving it. A
//     follower woken by the commit may receive the frame before the
//     writer's call has returned: such a frame counts as 0.

// The stream scenarios' names.
const (
	StreamAppend Scenario = "stream-append"
	StreamLag    Scenario = "stream-lag"
)

// frameText is every stream-append frame: 100 bytes, about a log line.
var frameText = strings.Repeat("x", 99) + "\n"

// streamArgs are a stream scenario's task: it writes Frames frames, one
// every Every when it is positive.
type streamArgs struct {
	Frames int           `json:"frames"`
	Every  time.Duration `json:"every,omitempty"`
}

// Kind implements weft.TaskArgs.
func (streamArgs) Kind() string { return "bench.stream" }

// streamAppend times W tasks writing N frames in all.
func (r *runner) streamAppend(ctx context.Context) (Result, error) {
	writers := min(r.o.Workers, r.o.Tasks)
	per := max(r.o.Tasks/writers, 1)
	n := writers * per
	var written atomic.Int64
	var left sync.WaitGroup
	left.Add(writers)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[streamArgs]) error {
		defer left.Done()
		for range t.Args.Frames {
			if err := t.StreamText(ctx, frameText); err != nil {
				return weft.Permanent(err)
			}
			written.Add(1)
		}
		return nil
	})
	c, err := weft.NewClient(r.db.Store, r.config(ws, 0))
	if err != nil {
		return Result{}, err
	}
	params := make([]weft.EnqueueParams, writers)
	for i := range params {
		params[i] = weft.EnqueueParams{Args: streamArgs{Frames: per}}
	}
	for i := 0; i < writers; i += BatchSize {
		if _, err := c.EnqueueMany(ctx, params[i:min(i+BatchSize, writers)]); err != nil {
			return Result{}, fmt.Errorf("enqueue: %w", err)
		}
	}
	all := make(chan struct{})
	go func() {
		left.Wait()
		close(all)
	}()
	elapsed, err := r.run(ctx, c, all, false, n, "frames", func() int { return int(written.Load()) })
	if err != nil {
		return Result{}, err
	}
	if got := written.Load(); got != int64(n) {
		return Result{}, fmt.Errorf("%d of %d frames written", got, n)
	}
	return Result{Tasks: n, Workers: writers, Seconds: elapsed.Seconds()}, nil
}

// streamLag times frames from their writer to a follower.
func (r *runner) streamLag(ctx context.Context) (Result, error) {
	n := r.o.Samples
	acked := make([]time.Time, n+1) // by Seq: when the writer's call returned
	var mu sync.Mutex
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[streamArgs]) error {
		tick := time.NewTicker(t.Args.Every)
		defer tick.Stop()
		for i := range t.Args.Frames {
			if err := t.StreamText(ctx, frameText); err != nil {
				return weft.Permanent(err)
			}
			mu.Lock()
			acked[i+1] = time.Now()
			mu.Unlock()
			select {
			case <-tick.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	c, err := weft.NewClient(r.db.Store, r.config(ws, 0))
	if err != nil {
		return Result{}, err
	}
	res, err := c.Enqueue(ctx, streamArgs{Frames: n, Every: r.o.Interval}, nil)
	if err != nil {
		return Result{}, err
	}
	received := make([]time.Time, n+1)
	followed := make(chan error, 1)
	fctx, cancel := context.WithTimeout(ctx, time.Duration(n)*r.o.Interval+sampleTimeout)
	defer cancel()
	go func() {
		_, err := c.FollowStream(fctx, res.ID, 0, func(f weft.Frame) error {
			if f.Seq < 1 || f.Seq > int64(n) {
				return fmt.Errorf("frame %d of a stream of %d", f.Seq, n)
			}
			received[f.Seq] = time.Now()
			r.progress.report(int(f.Seq), n, "frames")
			return nil
		})
		followed <- err
	}()
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		return Result{}, err
	}
	err = <-followed
	elapsed := time.Since(start)
	if serr := stopClient(ctx, c); err != nil || serr != nil {
		return Result{}, errors.Join(err, serr)
	}
	samples := make([]time.Duration, 0, n)
	mu.Lock()
	for seq := 1; seq <= n; seq++ {
		samples = append(samples, max(received[seq].Sub(acked[seq]), 0))
	}
	mu.Unlock()
	out := Result{Tasks: n, Workers: 1, Seconds: elapsed.Seconds()}
	out.setPercentiles("a frame's write acknowledged to its follower receiving it", Summarize(samples))
	return out, nil
}
