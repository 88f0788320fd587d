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
// released, like a database that has become slow to write.
type slowFinishStore struct {
	nopStore
	release chan struct{}
	mu      sync.Mutex
	claimed int
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

// While outcomes cannot be written, the engine stops claiming once the
// unwritten ones outnumber its slots: a crash then re-runs at most twice
// its concurrency, not everything it finished meanwhile.
func TestBacklogHoldsClaims(t *testing.T) {
	st := &slowFinishStore{release: make(chan struct{})}
	e, err := New(Config{
		Store: st, Owner: "n", Queues: map[string]int{"q": 4}, LeaseTTL: time.Hour, PollInterval: 5 * time.Millisecond,
		Kinds: map[string]Kind{"k": {Handler: func(context.Context, *Execution) Verdict { return Verdict{Action: Complete} }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	st.mu.Lock()
	claimed := st.claimed
	st.mu.Unlock()
	// 4 outcomes may wait in the first blocked batch, 4 more in the
	// backlog, and 4 handlers may run: nothing beyond.
	if claimed > 12 {
		t.Fatalf("claimed %d tasks while no outcome could be written; want at most 12 with 4 slots", claimed)
	}
	close(st.release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		st.mu.Lock()
		more := st.claimed > claimed
		st.mu.Unlock()
		if more {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("claiming did not resume once outcomes were written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
