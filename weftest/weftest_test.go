package weftest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/weftest"
)

type okArgs struct {
	N int `json:"n"`
}

func (okArgs) Kind() string { return "ok" }

type flakyArgs struct{}

func (flakyArgs) Kind() string { return "flaky" }

type snoozeArgs struct{}

func (snoozeArgs) Kind() string { return "snooze" }

type permArgs struct{}

func (permArgs) Kind() string { return "perm" }

type cancelArgs struct{}

func (cancelArgs) Kind() string { return "cancel" }

type panicArgs struct{}

func (panicArgs) Kind() string { return "panic" }

type slowArgs struct{}

func (slowArgs) Kind() string { return "slow" }

type chainArgs struct {
	Next string `json:"next"`
}

func (chainArgs) Kind() string { return "chain" }

type unknownArgs struct{}

func (unknownArgs) Kind() string { return "unknown" }

var errBadInput = errors.New("bad input")

// workers registers one handler per outcome; chain enqueues its next
// step through env's client.
func workers(env **weftest.Env) *weft.Workers {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[okArgs]) error {
		if err := t.Progress(ctx, map[string]int{"half": t.Args.N / 2}); err != nil {
			return err
		}
		return t.SetResult(map[string]int{"double": 2 * t.Args.N})
	})
	weft.AddWorkerFunc(ws, func(_ context.Context, t *weft.Task[flakyArgs]) error {
		if t.Attempt == 1 {
			return errors.New("transient")
		}
		return nil
	}, weft.WithBackoff(func(int) time.Duration { return time.Minute }))
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[snoozeArgs]) error { return weft.Snooze(5 * time.Minute) })
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[permArgs]) error {
		return weft.Permanent(fmt.Errorf("refused: %w", errBadInput))
	})
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[cancelArgs]) error { return weft.Cancel(errors.New("not needed")) })
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[panicArgs]) error { panic("kaboom") })
	weft.AddWorkerFunc(ws, func(ctx context.Context, _ *weft.Task[slowArgs]) error {
		<-ctx.Done()
		return ctx.Err()
	}, weft.WithTimeout(10*time.Millisecond))
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[chainArgs]) error {
		if t.Args.Next == "" {
			return nil
		}
		_, err := (*env).Client().Enqueue(ctx, chainArgs{}, &weft.EnqueueOpts{Queue: t.Args.Next})
		return err
	})
	return ws
}

// backends runs f on an Env of each backend.
func backends(t *testing.T, f func(t *testing.T, open func(*weftest.Options) *weftest.Env)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, func(o *weftest.Options) *weftest.Env { return weftest.New(t, o) })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.ServerURL(t)
		f(t, func(o *weftest.Options) *weftest.Env { return weftest.NewPostgres(t, url, o) })
	})
}

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestWorkOutcomes(t *testing.T) {
	backends(t, func(t *testing.T, open func(*weftest.Options) *weftest.Env) {
		var env *weftest.Env
		env = open(&weftest.Options{Workers: workers(&env), Start: start})
		ctx := context.Background()
		work := func(args weft.TaskArgs, opts *weft.EnqueueOpts, want weftest.Outcome) *weftest.Result {
			t.Helper()
			r, err := env.Work(ctx, args, opts)
			if err != nil {
				t.Fatalf("Work(%T): %v", args, err)
			}
			if r.Outcome != want || string(r.Task.State) == "" {
				t.Fatalf("Work(%T) = %s (task %+v, err %v), want %s", args, r.Outcome, r.Task, r.Err, want)
			}
			return r
		}

		r := work(okArgs{N: 21}, nil, weftest.Completed)
		var out map[string]int
		if err := r.DecodeResult(&out); err != nil || out["double"] != 42 || r.Err != nil || r.Task.Attempt != 1 {
			t.Errorf("ok: result %v (%v), task %+v, err %v", out, err, r.Task, r.Err)
		}
		evs, err := env.Client().Events(ctx, r.Task.ID, 0, 10)
		if err != nil || len(evs) != 4 || evs[2].Type != "progress" || string(evs[2].Data) != `{"half": 10}` && string(evs[2].Data) != `{"half":10}` {
			t.Errorf("ok: events %+v, %v", evs, err)
		}

		// A retry is due one backoff after the clock; it runs once the
		// clock gets there.
		r = work(flakyArgs{}, nil, weftest.Retried)
		if !r.Task.RunAt.Equal(start.Add(time.Minute)) || r.Err == nil || r.Err.Error() != "transient" || len(r.Task.Errors) != 1 {
			t.Errorf("flaky: task %+v, err %v", r.Task, r.Err)
		}
		if _, err := env.WorkTask(ctx, r.Task.ID); !errors.Is(err, weftest.ErrNotRunnable) || !strings.Contains(err.Error(), "Advance") {
			t.Errorf("flaky before its retry is due: %v", err)
		}
		if err := env.Advance(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		if r, err = env.WorkTask(ctx, r.Task.ID); err != nil || r.Outcome != weftest.Completed || r.Task.Attempt != 2 {
			t.Errorf("flaky after a minute: %+v, %v", r, err)
		}

		now := env.Now()
		r = work(snoozeArgs{}, nil, weftest.Snoozed)
		if !r.Task.RunAt.Equal(now.Add(5*time.Minute)) || r.Task.Attempt != 0 {
			t.Errorf("snooze: task %+v", r.Task)
		}
		r = work(permArgs{}, nil, weftest.Failed)
		if !errors.Is(r.Err, errBadInput) || r.Task.State != weft.StateFailed {
			t.Errorf("perm: err %v, task %+v", r.Err, r.Task)
		}
		work(cancelArgs{}, nil, weftest.Cancelled)
		r = work(panicArgs{}, nil, weftest.Retried)
		if !strings.Contains(r.Err.Error(), "kaboom") || !strings.Contains(r.Task.Errors[0].Stack, "goroutine") {
			t.Errorf("panic: err %v, errors %+v", r.Err, r.Task.Errors)
		}
		r = work(panicArgs{}, &weft.EnqueueOpts{MaxAttempts: 1}, weftest.Failed)
		if r.Task.Attempt != 1 {
			t.Errorf("panic on the last attempt: task %+v", r.Task)
		}
		r = work(slowArgs{}, nil, weftest.Retried)
		if !errors.Is(r.Err, weft.ErrAttemptTimeout) {
			t.Errorf("slow: err %v", r.Err)
		}
	})
}

func TestWorkTaskNotRunnable(t *testing.T) {
	var env *weftest.Env
	env = weftest.New(t, &weftest.Options{Workers: workers(&env), Start: start})
	ctx := context.Background()
	enqueue := func(args weft.TaskArgs, opts *weft.EnqueueOpts) string {
		t.Helper()
		res, err := env.Client().Enqueue(ctx, args, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	low := enqueue(okArgs{N: 1}, nil)
	high := enqueue(okArgs{N: 2}, &weft.EnqueueOpts{Priority: 5})
	unknown := enqueue(unknownArgs{}, nil)
	paused := enqueue(okArgs{N: 3}, &weft.EnqueueOpts{Queue: "held"})
	if err := env.Client().PauseQueue(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, want string
	}{
		{low, "comes after task " + high},
		{unknown, "has no worker"},
		{paused, "paused queue"},
	} {
		if _, err := env.WorkTask(ctx, c.id); !errors.Is(err, weftest.ErrNotRunnable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("WorkTask(%s) = %v, want ErrNotRunnable saying %q", c.id, err, c.want)
		}
	}
	// In claim order: the higher priority first; the unknown kind is left.
	for _, want := range []string{high, low} {
		r, err := env.WorkNext(ctx, "default")
		if err != nil || r.Task.ID != want {
			t.Fatalf("WorkNext = %+v, %v; want task %s", r, err, want)
		}
	}
	if _, err := env.WorkNext(ctx, "default"); !errors.Is(err, weftest.ErrNoTask) {
		t.Errorf("WorkNext on what is left: %v", err)
	}
	if _, err := env.WorkTask(ctx, high); !errors.Is(err, weftest.ErrNotRunnable) || !strings.Contains(err.Error(), "is completed") {
		t.Errorf("WorkTask of a completed task: %v", err)
	}
	if _, err := env.WorkTask(ctx, "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"); !errors.Is(err, weft.ErrNotFound) {
		t.Errorf("WorkTask of no task: %v", err)
	}
	if err := env.AdvanceTo(ctx, start.Add(-time.Second)); !errors.Is(err, weftest.ErrClockBackwards) {
		t.Errorf("AdvanceTo the past: %v", err)
	}
}

func TestDrain(t *testing.T) {
	backends(t, func(t *testing.T, open func(*weftest.Options) *weftest.Env) {
		var env *weftest.Env
		env = open(&weftest.Options{Workers: workers(&env), Start: start})
		ctx := context.Background()
		c := env.Client()
		if _, err := c.Enqueue(ctx, chainArgs{Next: "second"}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Enqueue(ctx, okArgs{N: 1}, &weft.EnqueueOpts{Delay: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Enqueue(ctx, flakyArgs{}, nil); err != nil {
			t.Fatal(err)
		}
		rs, err := env.Drain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// chain and flaky in the default queue, then the step chain
		// enqueued into queue second; flaky's retry and the delayed task
		// are not due.
		if got := outcomes(rs); got != "chain:completed flaky:retried chain:completed" {
			t.Errorf("first drain ran %s", got)
		}
		weftest.RequireEnqueued(t, env, chainArgs{}, &weftest.Match{Queue: "second", State: weft.StateCompleted, Count: 1})
		if err := env.Advance(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		if rs, err = env.Drain(ctx, "default"); err != nil || outcomes(rs) != "flaky:completed ok:completed" {
			t.Errorf("drain an hour later ran %s (%v)", outcomes(rs), err)
		}
		if rs, err = env.Drain(ctx); err != nil || len(rs) != 0 {
			t.Errorf("drain with nothing ready ran %s (%v)", outcomes(rs), err)
		}
	})
}

func outcomes(rs []*weftest.Result) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.Task.Kind+":"+string(r.Outcome))
	}
	return strings.Join(parts, " ")
}

func TestDrainLimit(t *testing.T) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[snoozeArgs]) error { return weft.Snooze(0) })
	env := weftest.New(t, &weftest.Options{Workers: ws, DrainLimit: 20})
	if _, err := env.Client().Enqueue(context.Background(), snoozeArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	rs, err := env.Drain(context.Background())
	if !errors.Is(err, weftest.ErrDrainLimit) || len(rs) != 20 {
		t.Errorf("endless snoozes: %d attempts, %v", len(rs), err)
	}
}

type reportArgs struct {
	Day string `json:"day"`
}

func (reportArgs) Kind() string { return "report" }

func TestEnqueuedAndSchedules(t *testing.T) {
	backends(t, func(t *testing.T, open func(*weftest.Options) *weftest.Env) {
		env := open(&weftest.Options{Start: start})
		ctx := context.Background()
		c := env.Client()
		_, err := c.Enqueue(ctx, okArgs{N: 7}, &weft.EnqueueOpts{Queue: "mail", Delay: 90 * time.Second, UniqueKey: "seven", Metadata: map[string]any{"by": "test", "n": 7}})
		if err != nil {
			t.Fatal(err)
		}
		got := weftest.RequireEnqueued(t, env, okArgs{N: 7}, &weftest.Match{
			Queue: "mail", RunAt: start.Add(90 * time.Second), UniqueKey: "seven", Metadata: map[string]any{"n": 7}, State: weft.StatePending, Count: 1,
		})
		if len(got) != 1 || got[0].Queue != "mail" {
			t.Errorf("RequireEnqueued returned %+v", got)
		}
		weftest.RequireNotEnqueued(t, env, okArgs{N: 8}, nil)
		weftest.RequireNotEnqueued(t, env, okArgs{N: 7}, &weftest.Match{Queue: "default"})

		_, err = env.Enqueued(ctx, okArgs{N: 8}, &weftest.Match{Queue: "mail"})
		want := `weftest: enqueued tasks do not match: want a task of kind ok with args {"n":8}, queue mail, found 0
enqueued (1):
  ok queue=mail state=pending priority=0 max_attempts=25 run_at=2025-01-01T00:01:30Z args={"n":7} unique_key="seven" metadata={"by":"test","n":7}`
		if !errors.Is(err, weftest.ErrMismatch) || err.Error() != want {
			t.Errorf("mismatch:\n%v\nwant:\n%s", err, want)
		}
		if _, err := env.Enqueued(ctx, okArgs{}, &weftest.Match{AnyArgs: true, Count: 2}); !errors.Is(err, weftest.ErrMismatch) || !strings.Contains(err.Error(), "want exactly 2 tasks of kind ok, found 1") {
			t.Errorf("count mismatch: %v", err)
		}

		// A nightly schedule: two days pass, two slots are enqueued, each
		// at its own time; an hourly one paused meanwhile enqueues none.
		if err := c.Schedule(ctx, "nightly", "0 3 * * *", reportArgs{Day: "any"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Schedule(ctx, "hourly", "@every 1h", okArgs{}, &weft.ScheduleOpts{Paused: true}); err != nil {
			t.Fatal(err)
		}
		if err := env.Advance(ctx, 48*time.Hour); err != nil {
			t.Fatal(err)
		}
		if !env.Now().Equal(start.Add(48 * time.Hour)) {
			t.Errorf("clock = %s", env.Now())
		}
		reports := weftest.RequireEnqueued(t, env, reportArgs{Day: "any"}, &weftest.Match{Count: 2})
		for i, r := range reports {
			if slot := start.Add(time.Duration(i)*24*time.Hour + 3*time.Hour); !r.RunAt.Equal(slot) {
				t.Errorf("report %d due %s, want %s", i, r.RunAt, slot)
			}
		}
		weftest.RequireEnqueued(t, env, okArgs{}, &weftest.Match{AnyArgs: true, Count: 1})
	})
}
