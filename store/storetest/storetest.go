// Package storetest is the conformance suite every Weft storage backend
// passes in full. A backend's tests call Run with a Harness that opens
// stores on fresh databases, and call ChildMain from TestMain so the suite
// can start real worker processes on the same database.
package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Harness is how the suite reaches a backend.
type Harness struct {
	// NewDatabase creates an empty database for one test and returns the
	// string that Open takes (a file path, a URL). It is removed when the
	// test ends.
	NewDatabase func(t *testing.T) string
	// Open opens a store on a database. The suite closes it.
	Open func(ctx context.Context, db string) (store.Store, error)
	// EnqueueInOwnTx enqueues tasks inside a transaction the backend does
	// not own — as an application would with its own connection — and
	// commits it when commit is true, rolls it back otherwise.
	EnqueueInOwnTx func(t *testing.T, s store.Store, db string, tasks []store.NewTask, commit bool) ([]store.EnqueueResult, error)
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, tc := range append(storeCases, startCases...) {
		t.Run("store/"+tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, h))
		})
	}
	for _, tc := range engineCases {
		t.Run("engine/"+tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, h))
		})
	}
	for _, tc := range processCases {
		t.Run("process/"+tc.name, func(t *testing.T) {
			tc.fn(t, newEnv(t, h))
		})
	}
}

type testCase struct {
	name string
	fn   func(t *testing.T, e *env)
}

// env is one test's database and the store opened on it.
type env struct {
	h   Harness
	db  string
	st  store.Store
	ctx context.Context
}

func newEnv(t *testing.T, h Harness) *env {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	e := &env{h: h, db: h.NewDatabase(t), ctx: ctx}
	e.st = e.open(t)
	return e
}

// open opens another store on the test's database.
func (e *env) open(t *testing.T) store.Store {
	t.Helper()
	st, err := e.h.Open(e.ctx, e.db)
	if err != nil {
		t.Fatalf("open store on %s: %v", e.db, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func (e *env) enqueue(t *testing.T, tasks ...store.NewTask) []store.EnqueueResult {
	t.Helper()
	res, err := e.st.Enqueue(e.ctx, tasks)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return res
}

func (e *env) get(t *testing.T, id string) *store.Task {
	t.Helper()
	task, err := e.st.Get(e.ctx, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return task
}

func (e *env) events(t *testing.T, id string) []store.Event {
	t.Helper()
	evs, err := e.st.Events(e.ctx, id, 0, 0)
	if err != nil {
		t.Fatalf("events of %s: %v", id, err)
	}
	return evs
}

func eventTypes(evs []store.Event) []store.EventType {
	out := make([]store.EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func (e *env) claim(t *testing.T, owner string, ttl time.Duration, queues ...store.QueueClaim) []*store.Task {
	t.Helper()
	tasks, err := e.st.Claim(e.ctx, store.ClaimRequest{Owner: owner, Queues: queues, LeaseTTL: ttl})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return tasks
}

func task(kind string) store.NewTask {
	return store.NewTask{Kind: kind, Args: json.RawMessage(`{"n":1}`)}
}

func q(name string, limit int) store.QueueClaim { return store.QueueClaim{Queue: name, Limit: limit} }

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
