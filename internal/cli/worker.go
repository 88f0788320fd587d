package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
)

// runner runs one claimed task of a kind and returns its result. Its error
// decides the outcome as a worker's does in process: nil completes,
// *weft.PermanentError fails now, *weft.CancelError cancels,
// *weft.SnoozeError runs it again later without spending the attempt,
// *weft.RetryError retries after its delay, anything else retries with
// backoff.
type runner func(ctx context.Context, t api.ClaimedTask) (result json.RawMessage, err error)

// Causes a running task's context is cancelled with.
var (
	errShutdown        = errors.New("worker shutting down: the grace period ended")
	errLeaseLost       = errors.New("lease lost: the task was rescued or claimed again")
	errCancelRequested = errors.New("cancellation requested")
	errAttemptTimeout  = errors.New("attempt timed out")
)

// workerOptions configures a remote worker.
type workerOptions struct {
	ID          string
	Queues      []string
	Concurrency int
	LeaseTTL    time.Duration
	// Wait is how long one claim long-polls.
	Wait time.Duration
	// Grace is how long running tasks may finish after a stop.
	Grace   time.Duration
	Runners map[string]runner
	Log     *slog.Logger
}

func newWorkerCmd(g *globals) *cobra.Command {
	var (
		o           workerOptions
		denyPrivate bool
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the built-in task kinds against a server, as a remote worker",
		Long: `Claim tasks of the built-in kinds from the server at --server and run them here,
keeping their leases alive while they run and reporting each outcome.

Built-in kinds: http (one HTTP request per task, retried until the receiver
accepts it; see the webhook package). Tasks of other kinds are left for other
workers.

Ctrl-C or SIGTERM stops claiming and lets running tasks finish for up to
--grace; tasks still running then are handed back to the server to run again
without spending an attempt. A second Ctrl-C exits at once (the server then
rescues the tasks when their leases expire).`,
		Example: `  weft worker
  weft worker --queue default --queue webhooks --concurrency 50
  weft worker --server https://weft.internal:7070 --token "$TOKEN" --deny-private`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Concurrency < 1 || o.Concurrency > 100 {
				return usagef("--concurrency: %d is out of range (1 to 100)", o.Concurrency)
			}
			if o.LeaseTTL < time.Second || o.LeaseTTL > time.Hour {
				return usagef("--lease-ttl: %s is out of range (1s to 1h)", o.LeaseTTL)
			}
			if o.Grace < 0 {
				return usagef("--grace: %s is negative", o.Grace)
			}
			if g.databaseFlag {
				return usagef("worker talks to a server: use --server (not --database)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if o.ID == "" {
				host, _ := os.Hostname()
				if host == "" {
					host = "worker"
				}
				o.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
			}
			o.Wait = 30 * time.Second
			o.Log = g.logger(g.stderr)
			o.Runners = builtinRunners(builtinConfig{DenyPrivate: denyPrivate, Log: o.Log})
			return runWorker(cmd.Context(), c, o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Queues, "queue", []string{"default"}, "queue to work (repeatable, or comma-separated)")
	f.IntVar(&o.Concurrency, "concurrency", 10, "tasks run at once")
	f.DurationVar(&o.Grace, "grace", 30*time.Second, "how long running tasks may finish after Ctrl-C or SIGTERM")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", 30*time.Second, "lease duration, renewed every third of it while a task runs")
	f.StringVar(&o.ID, "worker-id", "", "name of this worker in leases (default host-pid)")
	f.BoolVar(&denyPrivate, "deny-private", false, "http kind: refuse private, loopback and link-local addresses (set when URLs come from users)")
	return cmd
}

// runWorker claims and runs tasks until ctx is done, then stops
// gracefully. It returns nil after a graceful stop, and an error only when
// the server refuses the worker outright (bad token, bad request).
func runWorker(ctx context.Context, c *apiclient.Client, o workerOptions) error {
	kinds := make([]string, 0, len(o.Runners))
	for k := range o.Runners {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	log := o.Log.With("worker", o.ID)
	log.Info("worker started", "server", c.BaseURL(), "queues", o.Queues, "kinds", kinds, "concurrency", o.Concurrency)

	// Tasks run under a context of their own: a stop must let them go on
	// for the grace period, and only then cancel them.
	runCtx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abort(nil)
	var (
		wg      sync.WaitGroup
		done    = make(chan struct{}, o.Concurrency) // one send per finished task
		running int
		fails   int
		fatal   error
	)
loop:
	for ctx.Err() == nil {
		// Collect finished tasks, then wait for a free slot.
		for drained := false; !drained; {
			select {
			case <-done:
				running--
			default:
				drained = true
			}
		}
		if running == o.Concurrency {
			select {
			case <-done:
				running--
			case <-ctx.Done():
				break loop
			}
		}
		// A claim aborted by a stop may lose tasks the server had just
		// leased; they run again once their lease expires.
		resp, err := c.Claim(ctx, api.ClaimRequest{
			WorkerID: o.ID, Queues: o.Queues, Kinds: kinds, Max: o.Concurrency - running,
			Wait: o.Wait.String(), LeaseTTL: o.LeaseTTL.String(),
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ae *apiclient.Error
			if errors.As(err, &ae) && ae.Status < 500 && ae.Status != 408 && ae.Status != 429 {
				fatal = fmt.Errorf("claim: %w", err)
				break
			}
			fails++
			delay := min(time.Duration(1<<min(fails-1, 5))*time.Second, 30*time.Second)
			log.Warn("claim failed; retrying", "err", err, "in", delay)
			_ = sleep(ctx, delay)
			continue
		}
		fails = 0
		for _, t := range resp.Tasks {
			running++
			wg.Add(1)
			go func() {
				defer wg.Done()
				runTask(runCtx, c, o, log, t)
				done <- struct{}{}
			}()
		}
	}

	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	default:
		log.Info("stopping: waiting for running tasks", "grace", o.Grace)
		t := time.NewTimer(o.Grace)
		select {
		case <-finished:
		case <-t.C:
			log.Warn("grace period over: handing running tasks back to the server")
			abort(errShutdown)
			<-finished
		}
		t.Stop()
	}
	log.Info("worker stopped")
	return fatal
}

// runTask runs one claimed task: heartbeats while it runs, then reports
// its outcome.
func runTask(runCtx context.Context, c *apiclient.Client, o workerOptions, log *slog.Logger, t api.ClaimedTask) {
	log = log.With("task", t.ID, "kind", t.Kind, "attempt", t.Attempt)
	ctx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)
	if d, err := time.ParseDuration(t.Timeout); err == nil && d > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, d, errAttemptTimeout)
		defer stop()
	}

	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		heartbeat(runCtx, c, o.LeaseTTL, log, t, hbStop, cancel)
	}()

	result, err := runSafely(ctx, o.Runners[t.Kind], t)
	close(hbStop)
	<-hbDone

	cause := context.Cause(ctx)
	if errors.Is(cause, errLeaseLost) {
		log.Warn("lease lost while running; the outcome is not reported", "err", err)
		return
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(runCtx), 30*time.Second)
	defer rcancel()
	var (
		out    api.Outcome
		repErr error
	)
	if err == nil {
		out, repErr = c.Complete(rctx, t.ID, api.CompleteRequest{LeaseToken: t.LeaseToken, Result: result})
	} else {
		req := failRequest(t.LeaseToken, err)
		if errors.Is(cause, errShutdown) {
			// Handed back, not failed: it runs again without spending
			// the attempt.
			req = api.FailRequest{LeaseToken: t.LeaseToken, Error: errShutdown.Error() + ": " + err.Error(), Snooze: "0s"}
		} else if errors.Is(cause, errAttemptTimeout) && ctx.Err() != nil {
			req.Error = fmt.Sprintf("%s after %s: %s", errAttemptTimeout, t.Timeout, err)
		}
		out, repErr = c.Fail(rctx, t.ID, req)
	}
	switch {
	case errors.Is(repErr, apiclient.ErrLeaseLost):
		log.Warn("lease lost before the outcome was recorded", "err", repErr)
	case repErr != nil:
		log.Error("could not report the outcome; the task runs again once its lease expires", "err", repErr)
	case err != nil:
		log.Info("task attempt failed", "state", out.State, "err", err)
	default:
		log.Info("task completed")
	}
}

// heartbeat extends the lease every third of its duration until stop is
// closed, cancelling the task when the lease is lost or cancellation was
// requested.
func heartbeat(ctx context.Context, c *apiclient.Client, ttl time.Duration, log *slog.Logger, t api.ClaimedTask, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hctx, hcancel := context.WithTimeout(ctx, ttl/3)
		resp, err := c.Heartbeat(hctx, t.ID, api.HeartbeatRequest{LeaseToken: t.LeaseToken, LeaseTTL: ttl.String()})
		hcancel()
		switch {
		case errors.Is(err, apiclient.ErrLeaseLost):
			cancel(errLeaseLost)
			return
		case err != nil:
			// The lease may still hold; the next beat tries again.
			log.Warn("heartbeat failed", "err", err)
		case resp.CancelRequested:
			cancel(errCancelRequested)
		}
	}
}

// runSafely runs r, turning a panic into an error so one bad task does
// not take the worker down, and a missing runner into a permanent failure.
func runSafely(ctx context.Context, r runner, t api.ClaimedTask) (result json.RawMessage, err error) {
	if r == nil {
		return nil, weft.Permanent(fmt.Errorf("this worker has no runner for kind %q", t.Kind))
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, truncate(string(debug.Stack()), 4000))
		}
	}()
	return r(ctx, t)
}

// failRequest maps a runner's error to the fail request that records the
// same outcome an in-process worker's error would.
func failRequest(token string, err error) api.FailRequest {
	req := api.FailRequest{LeaseToken: token, Error: err.Error()}
	var (
		perm   *weft.PermanentError
		cancel *weft.CancelError
		snooze *weft.SnoozeError
		retry  *weft.RetryError
	)
	switch {
	case errors.As(err, &snooze):
		req.Snooze = snooze.Delay.String()
	case errors.As(err, &perm):
		req.Permanent = true
	case errors.As(err, &cancel):
		req.Cancel = true
	case errors.As(err, &retry):
		if retry.Delay > 0 {
			req.RetryIn = retry.Delay.String()
		}
	}
	if req.Error == "" {
		req.Error = "failed without a message"
	}
	return req
}
