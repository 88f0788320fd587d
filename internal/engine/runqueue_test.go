package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// queueStore hands out tasks up to each claim's limit from a fixed supply,
// and records the claims, starts and outcomes the engine sends.
type queueStore struct {
	nopStore
	mu       sync.Mutex
	supply   int
	claimed  int
	limits   []int
	later    []bool
	starts   []store.Start
	outcomes []store.Outcome
	changed  chan struct{}
}

func newQueueStore(supply int) *queueStore {
	return &queueStore{supply: supply, changed: make(chan struct{}, 1)}
}

func (s *queueStore) Claim(_ context.Context, r store.ClaimRequest) ([]*store.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = append(s.limits, r.Queues[0].Limit)
	s.later = append(s.later, r.StartLater)
	var out []*store.Task
	for ; len(out) < r.Queues[0].Limit && s.claimed < s.supply; s.claimed++ {
		out = append(out, &store.Task{ID: fmt.Sprint("t", s.claimed), Kind: "k", Queue: "q", State: store.StateRunning, Attempt: 1, MaxAttempts: 3, LeaseEpoch: 1})
	}
	return out, nil
}

func (s *queueStore) Started(_ context.Context, starts []store.Start) error {
	s.mu.Lock()
	s.starts = append(s.starts, starts...)
	s.mu.Unlock()
	s.signal()
	return nil
}

func (s *queueStore) Finish(ctx context.Context, os []store.Outcome) ([]store.FinishResult, error) {
	s.mu.Lock()
	s.outcomes = append(s.outcomes, os...)
	s.mu.Unlock()
	s.signal()
	return nopStore{}.Finish(ctx, os)
}

func (s *queueStore) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds over the store's records, checking after
// each change.
func (s *queueStore) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("after 10s: %s", what)
		}
	}
}

// newQueueEngine starts an engine of concurrency slots over st whose run
// queue is already sized to target tasks, as after a measured burst.
func newQueueEngine(t *testing.T, st *queueStore, slots, target int, h Handler) *Engine {
	t.Helper()
	e, err := New(Config{
		Store: st, Owner: "n", Queues: map[string]int{"q": slots}, LeaseTTL: time.Hour, PollInterval: 20 * time.Millisecond,
		Kinds: map[string]Kind{"k": {Handler: h}},
	})
	if err != nil {
		t.Fatal(err)
	}
	q := e.qs["q"]
	q.rate, q.target, q.sampled = float64(target)/queueHorizon.Seconds(), target, time.Now().Add(time.Hour)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// Tasks claimed ahead wait in the run queue without looking started: the
// engine reports a start only when a handler begins, and a graceful stop
// hands the queued tasks back at once, their attempts refunded.
func TestQueuedTasksAreNotStarted(t *testing.T) {
	st := newQueueStore(10)
	release := make(chan struct{})
	began := make(chan string, 10)
	e := newQueueEngine(t, st, 1, 8, func(ctx context.Context, x *Execution) Verdict {
		began <- x.Task.ID
		select {
		case <-release:
		case <-ctx.Done():
		}
		return Verdict{Action: Complete}
	})
	first := <-began
	st.waitFor(t, "the first handler's start to be recorded", func() bool { return len(st.starts) == 1 })
	st.mu.Lock()
	claimed, starts, later := st.claimed, append([]store.Start(nil), st.starts...), st.later[0]
	st.mu.Unlock()
	if !later {
		t.Error("the engine claimed without StartLater")
	}
	if claimed < 2 {
		t.Fatalf("claimed %d tasks with one slot and a run queue of 8; want tasks claimed ahead", claimed)
	}
	if starts[0].TaskID != first {
		t.Fatalf("start recorded for %s, but the handler began %s", starts[0].TaskID, first)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(context.Background()) }()
	// The queued tasks go back while the running handler still holds on.
	st.waitFor(t, "the queued tasks to be released", func() bool { return len(st.outcomes) >= claimed-1 })
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.starts) != 1 {
		t.Errorf("%d starts recorded for one handler that ran", len(st.starts))
	}
	released := 0
	for _, o := range st.outcomes {
		switch {
		case o.TaskID == first && o.State == store.StateCompleted:
		case o.TaskID != first && o.State == store.StatePending && o.Refund && o.Event == store.EventReleased:
			released++
		default:
			t.Errorf("unexpected outcome %+v", o)
		}
	}
	if released != claimed-1 {
		t.Errorf("%d queued tasks released, want %d", released, claimed-1)
	}
}

// A handler that blocks does not hold up the tasks queued behind it: with
// more slots than are woken at once, every slot still gets a task.
func TestBlockingHandlersDoNotHoldQueuedTasks(t *testing.T) {
	const slots = 3 * wakeBurst
	st := newQueueStore(slots)
	release := make(chan struct{})
	var mu sync.Mutex
	running := 0
	all := make(chan struct{})
	e := newQueueEngine(t, st, slots, slots, func(ctx context.Context, x *Execution) Verdict {
		mu.Lock()
		running++
		if running == slots {
			close(all)
		}
		mu.Unlock()
		<-release
		return Verdict{Action: Complete}
	})
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		mu.Lock()
		n := running
		mu.Unlock()
		t.Fatalf("after 10s only %d of %d blocking handlers started", n, slots)
	}
	close(release)
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A worker that finishes takes the next queued task itself: draining a
// run queue of no-op tasks needs far fewer workers than slots.
func TestWorkersTakeQueuedTasksThemselves(t *testing.T) {
	const tasks, slots = 3000, 2000
	before := runtime.NumGoroutine()
	st := newQueueStore(tasks)
	e := newQueueEngine(t, st, slots, 1000, func(context.Context, *Execution) Verdict { return Verdict{Action: Complete} })
	st.waitFor(t, "every task to finish", func() bool { return len(st.outcomes) == tasks })
	// Workers live until Stop. Every claim may wake a burst, and tasks
	// that waited a millisecond for a worker wake more; a worker per task,
	// as before run queues, would be 2,000.
	workers := runtime.NumGoroutine() - before
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if workers > slots*3/4 {
		t.Errorf("%d goroutines ran %d no-op tasks on %d slots; want workers to take queued tasks themselves", workers, tasks, slots)
	}
	t.Logf("%d goroutines, %d claims", workers, len(st.limits))
}

// A start whose outcome is in the same batch travels with the outcome; the
// others are left to be recorded on their own.
func TestFoldStarts(t *testing.T) {
	at := time.Unix(100, 0)
	batch := []Finished{{Outcome: store.Outcome{TaskID: "a", Epoch: 1}}, {Outcome: store.Outcome{TaskID: "b", Epoch: 2}}}
	starts := []store.Start{{TaskID: "a", Epoch: 1, At: at}, {TaskID: "b", Epoch: 1, At: at}, {TaskID: "c", Epoch: 1, At: at}}
	rest := foldStarts(starts, batch)
	if !batch[0].Outcome.StartedAt.Equal(at) || !batch[1].Outcome.StartedAt.IsZero() {
		t.Fatalf("outcomes after folding: %+v", batch)
	}
	if len(rest) != 2 || rest[0].TaskID != "b" || rest[1].TaskID != "c" {
		t.Fatalf("starts left: %+v; want b (another epoch) and c (no outcome yet)", rest)
	}
}
