package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// leaseStore hands out one task, then answers renewals as told: the lease
// is held while held is true. It records what the engine tries to finish.
type leaseStore struct {
	nopStore
	mu       sync.Mutex
	handed   bool
	held     bool
	cancel   bool
	finished []store.Outcome
}

func (s *leaseStore) Claim(context.Context, store.ClaimRequest) ([]*store.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handed {
		return nil, nil
	}
	s.handed = true
	return []*store.Task{{ID: "t1", Kind: "k", Queue: "q", State: store.StateRunning, Attempt: 1, MaxAttempts: 3, LeaseEpoch: 7}}, nil
}

func (s *leaseStore) ExtendLeases(context.Context, string, time.Duration) ([]store.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		return nil, nil
	}
	return []store.Lease{{TaskID: "t1", Epoch: 7, CancelRequested: s.cancel}}, nil
}

func (s *leaseStore) Finish(ctx context.Context, os []store.Outcome) ([]store.FinishResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = append(s.finished, os...)
	return nopStore{}.Finish(ctx, os)
}

func runLeaseCase(t *testing.T, st *leaseStore) (finished []store.Outcome, cause error) {
	t.Helper()
	causes := make(chan error, 1)
	e, err := New(Config{
		Store: st, Owner: "n", Queues: map[string]int{"q": 1}, LeaseTTL: 30 * time.Millisecond, PollInterval: time.Hour,
		Kinds: map[string]Kind{"k": {Handler: func(ctx context.Context, x *Execution) Verdict {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return Verdict{Action: Retry, Err: ctx.Err()}
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case cause = <-causes:
	case <-time.After(waitLimit):
		t.Fatal("the handler's context was not cancelled")
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.finished, cause
}

// A renewal that no longer reports the task means another owner has it: the
// handler is cancelled with ErrLeaseLost and its outcome is not written.
func TestLeaseLostCancelsHandler(t *testing.T) {
	finished, cause := runLeaseCase(t, &leaseStore{held: false})
	if !errors.Is(cause, store.ErrLeaseLost) {
		t.Fatalf("cause = %v, want ErrLeaseLost", cause)
	}
	if len(finished) != 0 {
		t.Fatalf("a lost attempt's outcome was written: %+v", finished)
	}
}

// A renewal that reports a cancel request cancels the handler, and the
// attempt is recorded cancelled.
func TestRenewalDeliversCancel(t *testing.T) {
	finished, cause := runLeaseCase(t, &leaseStore{held: true, cancel: true})
	if !errors.Is(cause, ErrCancelRequested) {
		t.Fatalf("cause = %v, want ErrCancelRequested", cause)
	}
	if len(finished) != 1 || finished[0].State != store.StateCancelled || finished[0].Epoch != 7 {
		t.Fatalf("finished = %+v, want one cancelled outcome under epoch 7", finished)
	}
}
