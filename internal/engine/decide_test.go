package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// nopStore is a store.Runner with no work, for tests of decisions and of
// the engine's own bookkeeping; tests embed it and override what they
// exercise.
type nopStore struct{}

func (nopStore) Claim(context.Context, store.ClaimRequest) ([]*store.Task, error) { return nil, nil }

func (nopStore) Finish(_ context.Context, os []store.Outcome) ([]store.FinishResult, error) {
	res := make([]store.FinishResult, len(os))
	for i, o := range os {
		res[i].State = o.State
	}
	return res, nil
}

func (nopStore) Started(context.Context, []store.Start) error { return nil }

func (nopStore) ExtendLeases(context.Context, string, time.Duration) ([]store.Lease, error) {
	return nil, nil
}

func (nopStore) ExtendLease(context.Context, string, int64, time.Duration) (bool, error) {
	return false, nil
}

func (nopStore) Progress(context.Context, string, int64, json.RawMessage) error { return nil }

func (nopStore) CancelRequests(context.Context, string) ([]string, error) { return nil, nil }

func (nopStore) NextRunAt(context.Context, []string, []string) (time.Time, bool, error) {
	return time.Time{}, false, nil
}

func (nopStore) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

const fixedDelay = 7 * time.Second

func newTestEngine(t *testing.T, kinds map[string]Kind) *Engine {
	t.Helper()
	e, err := New(Config{
		Store:  nopStore{},
		Owner:  "t",
		Queues: map[string]int{"q": 1},
		Kinds:  kinds,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestDecide(t *testing.T) {
	noop := func(context.Context, *Execution) Verdict { return Verdict{} }
	var backoffAttempts []int
	e := newTestEngine(t, map[string]Kind{
		"fixed": {Handler: noop, Backoff: func(attempt int) time.Duration {
			backoffAttempts = append(backoffAttempts, attempt)
			return fixedDelay
		}},
		"default": {Handler: noop},
	})

	boom := errors.New("boom")
	result := json.RawMessage(`{"ok":true}`)

	type want struct {
		ok     bool
		state  store.State
		event  store.EventType
		result string
		refund bool
		// runAt: when set, RunAt must be in [now+lo, now+hi] (hi exclusive
		// for the default backoff's jitter, checked loosely); otherwise zero.
		runAt  bool
		lo, hi time.Duration
		// errMsg: when non-empty, Outcome.Error must carry it; otherwise nil.
		errMsg string
		stack  string
		data   map[string]any // expected EventData, "run_at" checked against RunAt
	}
	cases := []struct {
		name    string
		kind    string
		attempt int
		max     int
		v       Verdict
		cause   error
		want    want
	}{
		{
			name:  "lease lost",
			v:     Verdict{Action: Retry, Err: boom},
			cause: store.ErrLeaseLost,
			want:  want{ok: false},
		},
		{
			name:  "lease lost beats complete",
			v:     Verdict{Action: Complete, Result: result},
			cause: fmt.Errorf("renewal: %w", store.ErrLeaseLost),
			want:  want{ok: false},
		},
		{
			name: "complete",
			v:    Verdict{Action: Complete, Result: result},
			want: want{ok: true, state: store.StateCompleted, event: store.EventCompleted, result: `{"ok":true}`},
		},
		{
			name:  "complete despite shutdown",
			v:     Verdict{Action: Complete, Result: result},
			cause: ErrShutdown,
			want:  want{ok: true, state: store.StateCompleted, event: store.EventCompleted, result: `{"ok":true}`},
		},
		{
			name:  "complete despite cancel request",
			v:     Verdict{Action: Complete, Result: result},
			cause: ErrCancelRequested,
			want:  want{ok: true, state: store.StateCompleted, event: store.EventCompleted, result: `{"ok":true}`},
		},
		{
			name:  "shutdown releases",
			v:     Verdict{Action: Retry, Err: context.Canceled},
			cause: ErrShutdown,
			want: want{ok: true, state: store.StatePending, event: store.EventReleased, refund: true,
				runAt: true, data: map[string]any{"reason": "shutdown"}},
		},
		{
			name:  "an explicit fail verdict is honoured over shutdown",
			v:     Verdict{Action: Fail, Err: boom},
			cause: ErrShutdown,
			want: want{ok: true, state: store.StateFailed, event: store.EventFailed,
				errMsg: "boom", data: map[string]any{"error": "boom"}},
		},
		{
			name:  "cancel requested",
			v:     Verdict{Action: Retry, Err: context.Canceled},
			cause: ErrCancelRequested,
			want: want{ok: true, state: store.StateCancelled, event: store.EventCancelled,
				errMsg: "context canceled", data: map[string]any{"error": "context canceled"}},
		},
		{
			name: "cancel verdict",
			v:    Verdict{Action: Cancel, Err: boom},
			want: want{ok: true, state: store.StateCancelled, event: store.EventCancelled,
				errMsg: "boom", data: map[string]any{"error": "boom"}},
		},
		{
			name: "fail verdict",
			v:    Verdict{Action: Fail, Err: boom, Stack: "stack!"},
			want: want{ok: true, state: store.StateFailed, event: store.EventFailed,
				errMsg: "boom", stack: "stack!", data: map[string]any{"error": "boom"}},
		},
		{
			name:    "fail verdict with attempts left",
			attempt: 1, max: 10,
			v: Verdict{Action: Fail, Err: boom},
			want: want{ok: true, state: store.StateFailed, event: store.EventFailed,
				errMsg: "boom", data: map[string]any{"error": "boom"}},
		},
		{
			name: "snooze",
			v:    Verdict{Action: Snooze, Err: boom, Delay: 90 * time.Second},
			want: want{ok: true, state: store.StatePending, event: store.EventSnoozed, refund: true,
				runAt: true, lo: 90 * time.Second, hi: 90 * time.Second, data: map[string]any{}},
		},
		{
			name:    "snooze at last attempt",
			attempt: 3, max: 3,
			v: Verdict{Action: Snooze, Err: boom, Delay: time.Minute},
			want: want{ok: true, state: store.StatePending, event: store.EventSnoozed, refund: true,
				runAt: true, lo: time.Minute, hi: time.Minute, data: map[string]any{}},
		},
		{
			name:    "retry uses kind backoff",
			kind:    "fixed",
			attempt: 2, max: 5,
			v: Verdict{Action: Retry, Err: boom, Stack: "trace"},
			want: want{ok: true, state: store.StatePending, event: store.EventRetryScheduled,
				runAt: true, lo: fixedDelay, hi: fixedDelay,
				errMsg: "boom", stack: "trace", data: map[string]any{"error": "boom"}},
		},
		{
			name:    "retry delay overrides backoff",
			kind:    "fixed",
			attempt: 1, max: 5,
			v: Verdict{Action: Retry, Err: boom, Delay: 3 * time.Second},
			want: want{ok: true, state: store.StatePending, event: store.EventRetryScheduled,
				runAt: true, lo: 3 * time.Second, hi: 3 * time.Second,
				errMsg: "boom", data: map[string]any{"error": "boom"}},
		},
		{
			name:    "retry falls back to default backoff",
			kind:    "default",
			attempt: 3, max: 5,
			v: Verdict{Action: Retry, Err: boom},
			want: want{ok: true, state: store.StatePending, event: store.EventRetryScheduled,
				runAt: true, lo: 2 * time.Second, hi: 4 * time.Second,
				errMsg: "boom", data: map[string]any{"error": "boom"}},
		},
		{
			name:    "retry with attempts exhausted",
			kind:    "fixed",
			attempt: 5, max: 5,
			v: Verdict{Action: Retry, Err: boom, Stack: "trace"},
			want: want{ok: true, state: store.StateFailed, event: store.EventFailed,
				errMsg: "boom", stack: "trace",
				data: map[string]any{"error": "boom", "reason": "attempts_exhausted"}},
		},
		{
			name:    "attempt timeout cause does not override retry",
			kind:    "fixed",
			attempt: 1, max: 2,
			v:     Verdict{Action: Retry, Err: boom},
			cause: ErrAttemptTimeout,
			want: want{ok: true, state: store.StatePending, event: store.EventRetryScheduled,
				runAt: true, lo: fixedDelay, hi: fixedDelay,
				errMsg: "boom", data: map[string]any{"error": "boom"}},
		},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kind := c.kind
			if kind == "" {
				kind = "fixed"
			}
			attempt, maxAttempts := c.attempt, c.max
			if maxAttempts == 0 {
				attempt, maxAttempts = 1, 3
			}
			task := &store.Task{ID: "task-1", Kind: kind, Queue: "q", Attempt: attempt, MaxAttempts: maxAttempts, LeaseEpoch: 42}
			backoffAttempts = nil

			before := time.Now()
			o, ok := e.decide(task, c.v, c.cause)
			after := time.Now()

			w := c.want
			if ok != w.ok {
				t.Fatalf("ok = %v, want %v (outcome %+v)", ok, w.ok, o)
			}
			if !ok {
				return
			}
			if o.TaskID != "task-1" || o.Epoch != 42 {
				t.Errorf("TaskID, Epoch = %q, %d; want %q, 42", o.TaskID, o.Epoch, "task-1")
			}
			if o.State != w.state {
				t.Errorf("State = %q, want %q", o.State, w.state)
			}
			if o.Event != w.event {
				t.Errorf("Event = %q, want %q", o.Event, w.event)
			}
			if string(o.Result) != w.result {
				t.Errorf("Result = %s, want %s", o.Result, w.result)
			}
			if o.Refund != w.refund {
				t.Errorf("Refund = %v, want %v", o.Refund, w.refund)
			}

			if !w.runAt {
				if !o.RunAt.IsZero() {
					t.Errorf("RunAt = %v, want zero", o.RunAt)
				}
			} else if o.RunAt.Before(before.Add(w.lo).Truncate(time.Microsecond)) || o.RunAt.After(after.Add(w.hi)) {
				// Decide keeps microseconds, as the stores do.
				t.Errorf("RunAt = now%+v, want within [now+%v, now+%v]", o.RunAt.Sub(before), w.lo, w.hi)
			}

			if w.errMsg == "" {
				if o.Error != nil {
					t.Errorf("Error = %+v, want nil", o.Error)
				}
			} else {
				switch {
				case o.Error == nil:
					t.Errorf("Error = nil, want %q", w.errMsg)
				default:
					if o.Error.Error != w.errMsg {
						t.Errorf("Error.Error = %q, want %q", o.Error.Error, w.errMsg)
					}
					if o.Error.Attempt != attempt {
						t.Errorf("Error.Attempt = %d, want %d", o.Error.Attempt, attempt)
					}
					if o.Error.Stack != w.stack {
						t.Errorf("Error.Stack = %q, want %q", o.Error.Stack, w.stack)
					}
					if o.Error.At.Location() != time.UTC || o.Error.At.Before(before.Truncate(0)) || o.Error.At.After(after) {
						t.Errorf("Error.At = %v, want a UTC time within the call", o.Error.At)
					}
				}
			}

			if w.event == store.EventRetryScheduled && c.v.Delay <= 0 && kind == "fixed" {
				if len(backoffAttempts) != 1 || backoffAttempts[0] != attempt {
					t.Errorf("kind backoff called with %v, want [%d]", backoffAttempts, attempt)
				}
			} else if len(backoffAttempts) != 0 {
				t.Errorf("kind backoff called with %v, want no call", backoffAttempts)
			}

			checkEventData(t, o, w.data)
		})
	}
}

// checkEventData compares o.EventData with want. A "run_at" key is expected
// exactly when the outcome is a snooze or a scheduled retry, and must equal
// o.RunAt.
func checkEventData(t *testing.T, o store.Outcome, want map[string]any) {
	t.Helper()
	if want == nil {
		if o.EventData != nil {
			t.Errorf("EventData = %s, want none", o.EventData)
		}
		return
	}
	var got map[string]any
	if err := json.Unmarshal(o.EventData, &got); err != nil {
		t.Fatalf("EventData %s: %v", o.EventData, err)
	}
	if o.Event == store.EventSnoozed || o.Event == store.EventRetryScheduled {
		s, _ := got["run_at"].(string)
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !at.Equal(o.RunAt) {
			t.Errorf("EventData run_at = %v, want %v", got["run_at"], o.RunAt.UTC())
		}
		delete(got, "run_at")
	}
	if len(got) != len(want) {
		t.Errorf("EventData = %s, want keys %v (plus run_at where scheduled)", o.EventData, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("EventData[%q] = %v, want %v", k, got[k], v)
		}
	}
}

func TestInvoke(t *testing.T) {
	e := newTestEngine(t, map[string]Kind{
		"panics": {Handler: func(context.Context, *Execution) Verdict {
			panic("kaboom-42")
		}},
		"panics-error": {Handler: func(context.Context, *Execution) Verdict {
			panic(errors.New("wrapped-failure"))
		}},
		"silent-retry": {Handler: func(context.Context, *Execution) Verdict {
			return Verdict{Action: Retry}
		}},
		"silent-fail": {Handler: func(context.Context, *Execution) Verdict {
			return Verdict{Action: Fail}
		}},
		"silent-snooze": {Handler: func(context.Context, *Execution) Verdict {
			return Verdict{Action: Snooze, Delay: time.Second}
		}},
		"completes": {Handler: func(_ context.Context, x *Execution) Verdict {
			return Verdict{Action: Complete, Result: json.RawMessage(`"` + x.Task.ID + `"`)}
		}},
		"times-out": {Timeout: time.Millisecond, Handler: func(ctx context.Context, _ *Execution) Verdict {
			<-ctx.Done()
			return Verdict{Action: Retry, Err: ctx.Err()}
		}},
	})
	run := func(kind string) Verdict {
		return invoke(context.Background(), e.cfg.Kinds, e.src, &store.Task{ID: "id-" + kind, Kind: kind, Queue: "q", Attempt: 1, MaxAttempts: 3})
	}

	t.Run("panic", func(t *testing.T) {
		v := run("panics")
		if v.Action != Retry {
			t.Errorf("Action = %v, want Retry", v.Action)
		}
		if v.Err == nil || !strings.Contains(v.Err.Error(), "kaboom-42") {
			t.Errorf("Err = %v, want it to mention the panic value", v.Err)
		}
		if !strings.Contains(v.Stack, "goroutine") {
			t.Errorf("Stack = %q, want a goroutine stack", v.Stack)
		}
		if !strings.Contains(v.Stack, "TestInvoke") {
			t.Errorf("Stack does not show the panicking handler:\n%s", v.Stack)
		}
		// The recovered outcome is a scheduled retry with the stack kept.
		o, ok := e.decide(&store.Task{ID: "x", Kind: "panics", Attempt: 1, MaxAttempts: 3}, v, nil)
		if !ok || o.State != store.StatePending || o.Error == nil || o.Error.Stack != v.Stack {
			t.Errorf("decide(panic verdict) = %+v, %v; want pending with the stack recorded", o, ok)
		}
	})

	t.Run("panic with error value", func(t *testing.T) {
		v := run("panics-error")
		if v.Action != Retry || v.Err == nil || !strings.Contains(v.Err.Error(), "wrapped-failure") {
			t.Errorf("verdict = %+v, want Retry mentioning the panic value", v)
		}
	})

	for _, c := range []struct {
		kind   string
		action Action
	}{
		{"silent-retry", Retry},
		{"silent-fail", Fail},
		{"silent-snooze", Snooze},
	} {
		t.Run(c.kind, func(t *testing.T) {
			v := run(c.kind)
			if v.Action != c.action {
				t.Errorf("Action = %v, want %v", v.Action, c.action)
			}
			if v.Err == nil {
				t.Error("Err = nil for a non-Complete verdict, want an error")
			}
		})
	}

	t.Run("complete keeps nil error", func(t *testing.T) {
		v := run("completes")
		if v.Action != Complete || v.Err != nil || string(v.Result) != `"id-completes"` {
			t.Errorf("verdict = %+v, want Complete with the task's result and no error", v)
		}
	})

	t.Run("timeout is named in a retry error", func(t *testing.T) {
		v := run("times-out")
		if v.Action != Retry || !errors.Is(v.Err, ErrAttemptTimeout) || !errors.Is(v.Err, context.DeadlineExceeded) {
			t.Errorf("verdict = %+v, want Retry wrapping ErrAttemptTimeout and the handler's error", v)
		}
	})

	t.Run("unknown kind fails", func(t *testing.T) {
		v := run("nobody-handles-this")
		if v.Action != Fail || v.Err == nil || !strings.Contains(v.Err.Error(), "nobody-handles-this") {
			t.Errorf("verdict = %+v, want Fail naming the kind", v)
		}
	})
}
