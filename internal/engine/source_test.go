package engine

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// pollSource is a Source that is not a Notifier, like the HTTP API's: its
// Claim waits, as a long poll does, until a task is handed to it or its
// context ends.
type pollSource struct {
	tasks    chan *store.Task
	mu       sync.Mutex
	finished []Finished
}

func (s *pollSource) Claim(ctx context.Context, _ store.ClaimRequest) ([]*store.Task, error) {
	select {
	case t := <-s.tasks:
		return []*store.Task{t}, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (s *pollSource) ExtendLeases(context.Context, string, time.Duration) ([]store.Lease, error) {
	return nil, nil
}

func (s *pollSource) Progress(context.Context, string, int64, json.RawMessage) error { return nil }

func (s *pollSource) Finish(_ context.Context, fs []Finished) ([]store.FinishResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = append(s.finished, fs...)
	return make([]store.FinishResult, len(fs)), nil
}

// Without wakeups, the engine claims again as soon as a claim returns, a
// stop cuts short the claim waiting for work, and the source gets each
// attempt's verdict and cause along with the engine's decision.
func TestSourceWithoutNotifier(t *testing.T) {
	src := &pollSource{tasks: make(chan *store.Task)}
	e, err := New(Config{
		Source: src, Owner: "n", Queues: map[string]int{"q": 2}, LeaseTTL: time.Hour, PollInterval: time.Hour,
		Kinds: map[string]Kind{"k": {Handler: func(context.Context, *Execution) Verdict {
			return Verdict{Action: Retry, Err: errors.New("boom")}
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case src.tasks <- &store.Task{ID: string(rune('a' + i)), Kind: "k", Queue: "q", Attempt: 1, MaxAttempts: 3, LeaseEpoch: 1}:
		case <-time.After(5 * time.Second):
			t.Fatalf("the engine did not claim again after task %d", i)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited for a claim that was waiting for work")
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.finished) != 3 {
		t.Fatalf("finished %d attempts, want 3", len(src.finished))
	}
	for _, f := range src.finished {
		if f.Task == nil || f.Outcome.TaskID != f.Task.ID || f.Verdict.Action != Retry || f.Verdict.Err == nil || f.Cause != nil ||
			f.Outcome.Event != store.EventRetryScheduled {
			t.Errorf("finished = %+v, want the retry's verdict with its decision", f)
		}
	}
}
