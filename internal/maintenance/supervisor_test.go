package maintenance

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// recorder is a tick that records when it ran.
type recorder struct {
	mu    sync.Mutex
	times []time.Time
	block time.Duration // how long the first tick takes
	fail  error
}

func (r *recorder) tick(ctx context.Context) error {
	r.mu.Lock()
	first := len(r.times) == 0
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	if first && r.block > 0 {
		time.Sleep(r.block)
	}
	return r.fail
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

func (r *recorder) snapshot() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.times...)
}

// waitLimit bounds the waits for what must happen: generous, so that a
// loaded machine does not fail the tests. No test concludes from a pause
// that something did not happen.
const waitLimit = 30 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRegisteredBeforeStartReturns(t *testing.T) {
	log, _ := newLogger()
	r := &recorder{}
	s, err := Start(log, nil, Reconciler{Name: "a", Interval: time.Hour, Tick: r.tick}, Reconciler{Name: "b", Interval: time.Hour, Tick: r.tick})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Running(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("running right after Start = %v, want [a b]", got)
	}
	if n := s.Shutdown(time.Second); n != 0 {
		t.Fatalf("immediate shutdown left %d loops running", n)
	}
	if got := s.Running(); len(got) != 0 {
		t.Fatalf("after shutdown still running: %v", got)
	}
	if r.count() != 0 {
		t.Fatalf("a tick ran at start")
	}
}

func TestFirstTickOneIntervalAfterStart(t *testing.T) {
	log, _ := newLogger()
	r := &recorder{}
	const interval = 60 * time.Millisecond
	began := time.Now()
	s, _ := Start(log, nil, Reconciler{Name: "a", Interval: interval, Tick: r.tick})
	defer s.Shutdown(time.Second)
	waitFor(t, "the first tick", func() bool { return r.count() >= 1 })
	if d := r.snapshot()[0].Sub(began); d < interval {
		t.Fatalf("first tick %s after start, want at least %s", d, interval)
	}
}

func TestOverrunDelaysNeverBursts(t *testing.T) {
	log, _ := newLogger()
	const interval = 20 * time.Millisecond
	r := &recorder{block: 5 * interval}
	s, _ := Start(log, nil, Reconciler{Name: "slow", Interval: interval, Tick: r.tick})
	waitFor(t, "four ticks", func() bool { return r.count() >= 4 })
	s.Shutdown(time.Second)
	times := r.snapshot()
	// After the 100ms first tick, the next comes one interval after it
	// ended, not at once to make up for the missed ones.
	if gap := times[1].Sub(times[0]); gap < 5*interval+interval {
		t.Fatalf("tick after an overrun came %s after the slow tick began, want >= %s", gap, 6*interval)
	}
	for i := 2; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < interval {
			t.Fatalf("ticks %d and %d %s apart, less than the interval %s: a burst", i-1, i, gap, interval)
		}
	}
}

func TestZeroIntervalIsNotStarted(t *testing.T) {
	log, logs := newLogger()
	r := &recorder{}
	s, err := Start(log, nil, Reconciler{Name: "off", Interval: 0, Tick: r.tick}, Reconciler{Name: "on", Interval: time.Hour, Tick: r.tick})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(time.Second)
	if got := s.Running(); !reflect.DeepEqual(got, []string{"on"}) {
		t.Fatalf("running = %v, want [on]", got)
	}
	if !strings.Contains(logs.String(), "reconciler=off") {
		t.Fatalf("disabling was not logged: %s", logs)
	}
}

func TestFailedAndPanickingTicksAreLoggedAndTheLoopGoesOn(t *testing.T) {
	log, logs := newLogger()
	failing := &recorder{fail: errors.New("database is locked")}
	var panics atomic.Int32
	s, _ := Start(log, nil,
		Reconciler{Name: "failing", Interval: 5 * time.Millisecond, Tick: failing.tick},
		Reconciler{Name: "panicking", Interval: 5 * time.Millisecond, Tick: func(context.Context) error {
			panics.Add(1)
			panic("boom")
		}},
	)
	waitFor(t, "repeated ticks", func() bool { return failing.count() >= 3 && panics.Load() >= 3 })
	s.Shutdown(time.Second)
	out := logs.String()
	for _, want := range []string{"reconciler=failing", "database is locked", "reconciler=panicking", "boom"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestShutdownReportsLoopsThatOverstay(t *testing.T) {
	log, logs := newLogger()
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	s, _ := Start(log, nil,
		Reconciler{Name: "stubborn", Interval: time.Millisecond, Tick: func(context.Context) error {
			select {
			case started <- struct{}{}:
			default:
			}
			<-release // ignores its context
			return nil
		}},
		Reconciler{Name: "polite", Interval: time.Hour, Tick: func(context.Context) error { return nil }},
	)
	<-started
	// The stubborn loop outlasts any grace; the polite one stops at once,
	// which a loaded machine may take a while to get to.
	if n := s.Shutdown(2 * time.Second); n != 1 {
		t.Fatalf("Shutdown = %d, want 1 loop that did not stop", n)
	}
	if !strings.Contains(logs.String(), "stubborn") {
		t.Fatalf("the late loop was not named in the log:\n%s", logs)
	}
	if n := s.Shutdown(time.Second); n != 0 {
		t.Fatalf("second Shutdown = %d, want a no-op 0", n)
	}
}

func TestTickContextCancelledOnShutdown(t *testing.T) {
	log, _ := newLogger()
	started := make(chan struct{})
	s, _ := Start(log, nil, Reconciler{Name: "long", Interval: time.Millisecond, Tick: func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	<-started
	if n := s.Shutdown(time.Second); n != 0 {
		t.Fatalf("a tick watching its context did not stop: %d", n)
	}
}

// Close signals the loops and returns at once, without waiting for a tick
// under way; the loop stops once that tick returns.
func TestCloseSignalsLoops(t *testing.T) {
	log, _ := newLogger()
	ticking := make(chan struct{}, 1)
	release := make(chan struct{})
	var ticks atomic.Int32
	s, _ := Start(log, nil, Reconciler{Name: "a", Interval: 2 * time.Millisecond, Tick: func(context.Context) error {
		if ticks.Add(1) == 1 {
			ticking <- struct{}{}
			<-release // ignores its context
		}
		return nil
	}})
	select {
	case <-ticking:
	case <-time.After(waitLimit):
		t.Fatal("no tick")
	}
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		close(release)
		t.Fatal("Close waited for the tick under way")
	}
	if got := s.Running(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("running while the tick goes on = %v, want [a]", got)
	}
	close(release)
	waitFor(t, "the loop to stop after its tick", func() bool { return len(s.Running()) == 0 })
}

func TestStartRejectsBadReconcilers(t *testing.T) {
	tick := func(context.Context) error { return nil }
	for _, rs := range [][]Reconciler{
		{{Name: "", Interval: time.Second, Tick: tick}},
		{{Name: "a", Interval: time.Second, Tick: tick}, {Name: "a", Interval: time.Second, Tick: tick}},
		{{Name: "a", Interval: -time.Second, Tick: tick}},
		{{Name: "a", Interval: time.Second}},
	} {
		if _, err := Start(nil, nil, rs...); err == nil {
			t.Errorf("Start(%+v) accepted", rs)
		}
	}
}

func TestIntervalFromEnvironment(t *testing.T) {
	t.Setenv("WEFT_LEASE_RESCUE_INTERVAL", "250ms")
	if d, err := Interval("lease_rescue", time.Minute); err != nil || d != 250*time.Millisecond {
		t.Fatalf("Interval = %s, %v", d, err)
	}
	t.Setenv("WEFT_LEASE_RESCUE_INTERVAL", "0")
	if d, err := Interval("lease_rescue", time.Minute); err != nil || d != 0 {
		t.Fatalf("Interval 0 = %s, %v", d, err)
	}
	t.Setenv("WEFT_LEASE_RESCUE_INTERVAL", "soon")
	if _, err := Interval("lease_rescue", time.Minute); err == nil || !strings.Contains(err.Error(), "WEFT_LEASE_RESCUE_INTERVAL") {
		t.Fatalf("bad value: %v, want an error naming the variable", err)
	}
	if d, err := Interval("retention", 7*time.Second); err != nil || d != 7*time.Second {
		t.Fatalf("unset = %s, %v; want the default", d, err)
	}
}

func TestSingletonsRunOnlyOnTheLeader(t *testing.T) {
	log, _ := newLogger()
	var (
		leader   atomic.Bool
		resigned atomic.Int32
	)
	lead := &Leadership{
		Lead:   func(context.Context) (bool, error) { return leader.Load(), nil },
		Resign: func(context.Context) error { resigned.Add(1); return nil },
		Every:  2 * time.Millisecond,
	}
	single, everywhere := &recorder{}, &recorder{}
	s, err := Start(log, lead,
		Reconciler{Name: "single", Interval: 2 * time.Millisecond, Tick: single.tick, Singleton: true},
		Reconciler{Name: "everywhere", Interval: 2 * time.Millisecond, Tick: everywhere.tick},
	)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ticks on every node", func() bool { return everywhere.count() >= 5 })
	if single.count() != 0 || s.Leading() {
		t.Fatalf("a singleton ticked %d times on a node that does not lead", single.count())
	}
	leader.Store(true)
	waitFor(t, "leadership", s.Leading)
	waitFor(t, "singleton ticks", func() bool { return single.count() >= 3 })
	s.Shutdown(time.Second)
	if resigned.Load() != 1 {
		t.Fatalf("resigned %d times on shutdown, want once", resigned.Load())
	}
}

func TestLeadershipErrorMeansNotLeading(t *testing.T) {
	log, logs := newLogger()
	var fail atomic.Bool
	lead := &Leadership{
		Lead: func(context.Context) (bool, error) {
			if fail.Load() {
				return true, errors.New("database is locked")
			}
			return true, nil
		},
		Resign: func(context.Context) error { return nil },
		Every:  2 * time.Millisecond,
	}
	s, _ := Start(log, lead)
	defer s.Shutdown(time.Second)
	waitFor(t, "leadership", s.Leading)
	fail.Store(true)
	waitFor(t, "leadership to lapse", func() bool { return !s.Leading() })
	if !strings.Contains(logs.String(), "database is locked") {
		t.Fatalf("the failed renewal was not logged")
	}
}
