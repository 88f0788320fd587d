package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// slowFinishStore has endless work and a Finish that blocks until
// released, like a database that has become slow to write. Its
// subscriptions are unbuffered: a wakeup sent to one is taken only by a
// dispatcher waiting between claims.
type slowFinishStore struct {
	nopStore
	release chan struct{}
	mu      sync.Mutex
	claimed int
	subs    []chan struct{}
}

func (s *slowFinishStore) Claim(_ context.Context, r store.ClaimRequest) ([]*store.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*store.Task
	for range r.Queues[0].Limit {
		s.claimed++
		out = append(out, &store.Task{ID: fmt.Sprint("t", s.claimed), Kind: "k", Queue: "q", State: store.StateRunning, Attempt: 1, MaxAttempts: 3, LeaseEpoch: 1})
	}
	return out, nil
}

func (s *slowFinishStore) Finish(ctx context.Context, os []store.Outcome) ([]store.FinishResult, error) {
	<-s.release
	return nopStore{}.Finish(ctx, os)
}

func (s *slowFinishStore) Subscribe() (<-chan struct{}, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.subs = append(s.subs, ch)
	return ch, func() {}
}

func (s *slowFinishStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claimed
}

// waitLimit bounds waits for what must happen: generous, for a loaded
// machine.
const waitLimit = 30 * time.Second

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", waitLimit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// While outcomes cannot be written, the engine stops claiming once the
// unwritten ones outnumber its slots: a crash then re-runs at most twice
// its concurrency, not everything it finished meanwhile.
func TestBacklogHoldsClaims(t *testing.T) {
	st := &slowFinishStore{release: make(chan struct{})}
	e, err := New(Config{
		Store: st, Owner: "n", Queues: map[string]int{"q": 4}, LeaseTTL: time.Hour, PollInterval: time.Hour,
		Kinds: map[string]Kind{"k": {Handler: func(context.Context, *Execution) Verdict { return Verdict{Action: Complete} }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		select {
		case <-st.release:
		default:
			close(st.release)
		}
	}()
	waitUntil(t, "the unwritten outcomes never filled the slots", func() bool { return e.done.backlog.Load() >= int64(e.slots) })
	// The dispatcher subscribed first, in Start. A wakeup it takes makes it
	// claim again for every queue; it takes the next only once that claim
	// is over. So after two, every claim it had a reason to make since the
	// backlog filled up is done.
	wake := func() {
		t.Helper()
		st.mu.Lock()
		ch := st.subs[0]
		st.mu.Unlock()
		select {
		case ch <- struct{}{}:
		case <-time.After(waitLimit):
			t.Fatal("the dispatcher took no wakeup")
		}
	}
	wake()
	claimed := st.count()
	wake()
	if again := st.count(); again != claimed {
		t.Fatalf("claimed %d more tasks while no outcome could be written and the backlog filled the slots", again-claimed)
	}
	// 4 outcomes may wait in the first blocked batch, 4 more in the
	// backlog, and 4 handlers may run: nothing beyond.
	if claimed > 12 {
		t.Fatalf("claimed %d tasks while no outcome could be written; want at most 12 with 4 slots", claimed)
	}
	close(st.release)
	waitUntil(t, "claiming did not resume once outcomes were written", func() bool { return st.count() > claimed })
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
