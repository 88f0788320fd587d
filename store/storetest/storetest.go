// Package storetest is the conformance suite every Weft storage backend
// passes in full. A backend's tests call Run with a Harness that opens
// stores on fresh databases, and call ChildMain from TestMain so the suite
// can start real worker processes on the same database.
//
// The cases are grouped by the role of the contract they hold the backend
// to (store.Enqueuer, Runner, Reader, Operator, Coordinator, Scheduler,
// Flows, Streams), one file per role, followed by engine cases that run a
// real weft.Client on the backend and multi-process cases. Every case runs on every backend: the
// harness has no optional parts, and no case skips.
package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Harness is how the suite reaches a backend. Every field is required.
type Harness struct {
	// NewDatabase creates an empty database for one test and returns the
	// string that Open takes (a file path, a URL). It is removed when the
	// test ends.
	NewDatabase func(t *testing.T) string
	// Open opens a store on a database whose clock is now (the backend's
	// Options.Now). The suite closes it. ChildMain's worker processes call
	// it with time.Now.
	Open func(ctx context.Context, db string, now func() time.Time) (store.Store, error)
	// EnqueueInOwnTx enqueues tasks through s.TxEnqueuer() inside a
	// transaction the backend does not own — as an application would with
	// its own connection — and commits it when commit is true, rolls it back
	// otherwise.
	EnqueueInOwnTx func(t *testing.T, s store.Store, db string, tasks []store.NewTask, commit bool) ([]store.EnqueueResult, error)
}

// groups are the suite's cases, by role. Process cases run one at a time,
// before the others (which run in parallel), so that their worker processes
// have the database's machine to themselves as far as this suite goes.
var groups = []struct {
	role     string
	cases    []testCase
	parallel bool
}{
	{"enqueue", enqueueCases, true},
	{"run", runCases, true},
	{"read", readCases, true},
	{"list", listCases, true},
	{"operator", operatorCases, true},
	{"bulk", bulkCases, true},
	{"coordinator", coordinatorCases, true},
	{"workers", workerCases, true},
	{"schedule", scheduleCases, true},
	{"flow", flowCases, true},
	{"wait", waitCases, true},
	{"limit", limitCases, true},
	{"stream", streamCases, true},
	{"rollup", rollupCases, true},
	{"engine", engineCases, true},
	{"process", processCases, false},
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.NewDatabase == nil || h.Open == nil || h.EnqueueInOwnTx == nil {
		t.Fatal("storetest: the harness needs NewDatabase, Open and EnqueueInOwnTx: every case runs on every backend")
	}
	for _, g := range groups {
		for _, tc := range g.cases {
			t.Run(g.role+"/"+tc.name, func(t *testing.T) {
				if g.parallel {
					t.Parallel()
				}
				tc.fn(t, newEnv(t, h))
			})
		}
	}
}

type testCase struct {
	name string
	fn   func(t *testing.T, e *env)
}

// env is one test's database, its clock, and the store opened on it.
type env struct {
	h     Harness
	db    string
	clock *Clock
	st    store.Store
	ctx   context.Context
}

// caseTimeout bounds one case. It is generous: the suite must hold on a
// loaded two-core machine, where a commit can wait seconds for its fsync.
const caseTimeout = 8 * time.Minute

func newEnv(t *testing.T, h Harness) *env {
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	t.Cleanup(cancel)
	e := &env{h: h, db: h.NewDatabase(t), clock: &Clock{}, ctx: ctx}
	e.st = e.open(t)
	return e
}

// open opens another store on the test's database, on the test's clock.
func (e *env) open(t *testing.T) store.Store {
	t.Helper()
	st, err := e.h.Open(e.ctx, e.db, e.clock.Now)
	if err != nil {
		t.Fatalf("open store on %s: %v", e.db, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// now is the stores' time.
func (e *env) now() time.Time { return e.clock.Now() }

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

// rescue runs one Rescue and fails the test on an error.
func (e *env) rescue(t *testing.T, p store.RescueParams) int {
	t.Helper()
	n, err := e.st.Rescue(e.ctx, p)
	if err != nil {
		t.Fatalf("rescue: %v", err)
	}
	return n
}

func finish(t *testing.T, e *env, outcomes ...store.Outcome) {
	t.Helper()
	res, err := e.st.Finish(e.ctx, outcomes)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("finish outcome %d (%s): %v", i, outcomes[i].TaskID, r.Err)
		}
	}
}

func task(kind string) store.NewTask {
	return store.NewTask{Kind: kind, Args: json.RawMessage(`{"n":1}`)}
}

func q(name string, limit int) store.QueueClaim { return store.QueueClaim{Queue: name, Limit: limit} }

func assertJSON(t *testing.T, what string, got, want json.RawMessage) {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: stored value %q is not JSON: %v", what, got, err)
	}
	_ = json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

// countsOf reads the statistics of every queue through st, by queue name.
func countsOf(t *testing.T, e *env, st store.Store) map[string]store.QueueStats {
	t.Helper()
	stats, err := st.Stats(e.ctx)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	out := make(map[string]store.QueueStats, len(stats))
	for _, qs := range stats {
		out[qs.Queue] = qs
	}
	return out
}

// assertCounts checks one queue's counts as Stats reports them.
func assertCounts(t *testing.T, e *env, queue string, want map[store.State]int64) {
	t.Helper()
	if got := countsOf(t, e, e.st)[queue].Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("queue %s: counts %v, want %v", queue, got, want)
	}
}

// drain empties ch of the signals earlier commits left, waiting until it
// has been quiet for a moment. It asserts nothing: a late stale signal
// can only make a later expectWake pass early, never fail.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond):
			return
		}
	}
}

// wakeWithin bounds how long a wakeup may take to arrive. It proves the
// path exists — without it nothing would arrive at all — and is generous
// so that a loaded machine does not fail it; wakeup latency is measured in
// the benchmarks.
const wakeWithin = 30 * time.Second

// expectWake asserts that ch receives a wakeup.
func expectWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeWithin):
		t.Fatalf("no wakeup within %s after %s", wakeWithin, what)
	}
}

// eventually polls cond until it holds, or fails the test once within has
// passed. Deadlines are generous: they only bound how long a broken
// backend takes to fail.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
