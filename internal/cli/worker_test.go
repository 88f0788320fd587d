package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/store"
)

// The args of the test kinds; each type names one kind.
type (
	okArgs struct {
		N int `json:"n"`
	}
	permArgs    struct{}
	cancelArgs  struct{}
	snoozeArgs  struct{}
	laterArgs   struct{}
	panicArgs   struct{}
	slowArgs    struct{}
	blockArgs   struct{}
	finishArgs  struct{}
	knownArgs   struct{}
	unknownArgs struct{}
)

func (okArgs) Kind() string      { return "ok" }
func (permArgs) Kind() string    { return "perm" }
func (cancelArgs) Kind() string  { return "cancel" }
func (snoozeArgs) Kind() string  { return "snooze" }
func (laterArgs) Kind() string   { return "later" }
func (panicArgs) Kind() string   { return "oops" }
func (slowArgs) Kind() string    { return "slow" }
func (blockArgs) Kind() string   { return "block" }
func (finishArgs) Kind() string  { return "finish" }
func (knownArgs) Kind() string   { return "known" }
func (unknownArgs) Kind() string { return "unknown" }

// kindsOf returns the kinds register adds, as `weft worker` gets its
// built-in ones: through weft's own registry.
func kindsOf(register func(ws *weft.Workers)) map[string]engine.Kind {
	ws := weft.NewWorkers()
	register(ws)
	return ws.EngineKinds()
}

// blockUntilStopped is a worker that says it started, then waits for its
// context to end and fails with the cause.
func blockUntilStopped[T weft.TaskArgs](started chan<- string) func(context.Context, *weft.Task[T]) error {
	return func(ctx context.Context, t *weft.Task[T]) error {
		started <- t.ID
		<-ctx.Done()
		return context.Cause(ctx)
	}
}

// startWorker runs a remote worker against s until the returned stop is
// called; stop returns runWorker's error.
func startWorker(t *testing.T, s *testServer, o workerOptions) (stop func() error) {
	t.Helper()
	if o.ID == "" {
		o.ID = "test-worker"
	}
	if o.Queues == nil {
		o.Queues = []string{"default"}
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 3 * time.Second
	}
	if o.Wait == 0 {
		o.Wait = 200 * time.Millisecond
	}
	if o.Grace == 0 {
		o.Grace = 5 * time.Second
	}
	o.Log = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runWorker(ctx, apiclient.New(s.url, "", nil), o) }()
	var stopped bool
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the worker did not stop")
			}
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls task id until cond holds.
func waitFor(t *testing.T, st store.Store, id string, what string, cond func(*store.Task) bool) *store.Task {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		tk, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(tk) {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never became %s: state %s, attempt %d, errors %+v", id, what, tk.State, tk.Attempt, tk.Errors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inState(s store.State) func(*store.Task) bool {
	return func(t *store.Task) bool { return t.State == s }
}

func TestWorkerOutcomes(t *testing.T) {
	s := newTestServer(t, "")
	kinds := kindsOf(func(ws *weft.Workers) {
		weft.AddWorkerFunc(ws, func(_ context.Context, t *weft.Task[okArgs]) error {
			return t.SetResult(map[string]any{"echo": t.Args})
		})
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[permArgs]) error {
			return weft.Permanent(errors.New("bad input"))
		})
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[cancelArgs]) error {
			return weft.Cancel(errors.New("not wanted"))
		})
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[snoozeArgs]) error { return weft.Snooze(time.Hour) })
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[laterArgs]) error {
			return weft.RetryAfter(errors.New("busy"), 2*time.Hour)
		})
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[panicArgs]) error { panic("kaboom") })
	})
	ids := enqueueStore(t, s.st,
		store.NewTask{Kind: "ok", Args: json.RawMessage(`{"n":1}`)},
		store.NewTask{Kind: "perm"}, store.NewTask{Kind: "cancel"}, store.NewTask{Kind: "snooze"},
		store.NewTask{Kind: "later"}, store.NewTask{Kind: "oops"},
		store.NewTask{Kind: "other"}) // no worker: left alone
	start := time.Now()
	stop := startWorker(t, s, workerOptions{Kinds: kinds})

	tk := waitFor(t, s.st, ids[0], "completed", inState(store.StateCompleted))
	if string(tk.Result) != `{"echo":{"n":1}}` || tk.LeaseOwner != "test-worker" {
		t.Errorf("ok: result %s owner %s", tk.Result, tk.LeaseOwner)
	}
	tk = waitFor(t, s.st, ids[1], "failed", inState(store.StateFailed))
	if len(tk.Errors) != 1 || !strings.Contains(tk.Errors[0].Error, "bad input") || tk.MaxAttempts-tk.Attempt == 0 {
		t.Errorf("perm: %+v", tk)
	}
	waitFor(t, s.st, ids[2], "cancelled", inState(store.StateCancelled))
	tk = waitFor(t, s.st, ids[3], "snoozed", func(t *store.Task) bool {
		return t.State == store.StatePending && t.RunAt.After(start.Add(50*time.Minute))
	})
	if tk.Attempt != 0 || len(tk.Errors) != 0 {
		t.Errorf("snooze spent the attempt: attempt %d errors %d", tk.Attempt, len(tk.Errors))
	}
	tk = waitFor(t, s.st, ids[4], "retried in 2h", func(t *store.Task) bool {
		return t.State == store.StatePending && t.RunAt.After(start.Add(110*time.Minute))
	})
	if tk.Attempt != 1 || len(tk.Errors) != 1 {
		t.Errorf("retry-after: attempt %d errors %d", tk.Attempt, len(tk.Errors))
	}
	// A panic is a failed attempt, retried, with the stack where the
	// handler panicked.
	tk = waitFor(t, s.st, ids[5], "retried after a panic", func(t *store.Task) bool { return len(t.Errors) == 1 })
	if e := tk.Errors[0].Error; !strings.Contains(e, "panic: kaboom") || !strings.Contains(e, "TestWorkerOutcomes") {
		t.Errorf("panic error = %q, want the panic and its stack", e)
	}
	if err := stop(); err != nil {
		t.Fatalf("runWorker: %v", err)
	}
	if tk, _ := s.st.Get(context.Background(), ids[6]); tk.State != store.StatePending || tk.Attempt != 0 {
		t.Errorf("a kind without worker was claimed: %+v", tk)
	}
}

func TestWorkerHeartbeatAndCancel(t *testing.T) {
	s := newTestServer(t, "")
	started := make(chan string, 2)
	kinds := kindsOf(func(ws *weft.Workers) {
		// Outlives its 1s lease: only heartbeats keep it.
		weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[slowArgs]) error {
			select {
			case <-time.After(2500 * time.Millisecond):
				return t.SetResult("done")
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
		weft.AddWorkerFunc(ws, blockUntilStopped[blockArgs](started))
	})
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "slow"}, store.NewTask{Kind: "block"})
	stop := startWorker(t, s, workerOptions{Kinds: kinds, LeaseTTL: time.Second})
	// Rescue as the maintenance leader would, to prove the lease held.
	rescuing, stopRescue := context.WithCancel(context.Background())
	defer stopRescue()
	go func() {
		for rescuing.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			_, _ = s.st.Rescue(context.Background(), store.RescueParams{})
		}
	}()

	<-started
	if _, err := s.st.Cancel(context.Background(), ids[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s.st, ids[1], "cancelled", inState(store.StateCancelled))
	tk := waitFor(t, s.st, ids[0], "completed", inState(store.StateCompleted))
	if tk.Attempt != 1 {
		t.Errorf("slow task took %d attempts: its lease was not kept", tk.Attempt)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerGracefulStop(t *testing.T) {
	s := newTestServer(t, "")
	started := make(chan string, 2)
	kinds := kindsOf(func(ws *weft.Workers) {
		weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[finishArgs]) error {
			started <- t.ID
			time.Sleep(300 * time.Millisecond) // ignores the stop: the grace period covers it
			return nil
		})
		weft.AddWorkerFunc(ws, blockUntilStopped[blockArgs](started))
	})
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "finish"}, store.NewTask{Kind: "block"})
	stop := startWorker(t, s, workerOptions{Kinds: kinds, Grace: time.Second})
	<-started
	<-started
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if tk, _ := s.st.Get(context.Background(), ids[0]); tk.State != store.StateCompleted {
		t.Errorf("the task that finished within the grace period is %s", tk.State)
	}
	tk, _ := s.st.Get(context.Background(), ids[1])
	if tk.State != store.StatePending || tk.Attempt != 0 || len(tk.Errors) != 0 || tk.RunAt.After(time.Now().Add(time.Second)) {
		t.Errorf("the task cut off by the grace period: state %s attempt %d errors %d run_at %s; want pending again, attempt refunded",
			tk.State, tk.Attempt, len(tk.Errors), tk.RunAt)
	}
}

// An attempt is bounded by the task's timeout or, when it has none, by the
// timeout of the kind as the server registered it.
func TestWorkerAttemptTimeout(t *testing.T) {
	s := newTestServerWith(t, httpapi.Config{Kinds: map[string]engine.Kind{"block": {Timeout: 200 * time.Millisecond}}})
	started := make(chan string, 2)
	kinds := kindsOf(func(ws *weft.Workers) { weft.AddWorkerFunc(ws, blockUntilStopped[blockArgs](started)) })
	ids := enqueueStore(t, s.st,
		store.NewTask{Kind: "block", MaxAttempts: 1, AttemptTimeout: 300 * time.Millisecond},
		store.NewTask{Kind: "block", MaxAttempts: 1})
	stop := startWorker(t, s, workerOptions{Kinds: kinds})
	for i, want := range []string{"attempt timed out after 300ms", "attempt timed out after 200ms"} {
		tk := waitFor(t, s.st, ids[i], "failed", inState(store.StateFailed))
		if len(tk.Errors) != 1 || !strings.Contains(tk.Errors[0].Error, want) {
			t.Errorf("task %d: errors %+v, want %q", i, tk.Errors, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A remote failure is retried by the backoff of the kind as the server
// registered it, and by the default backoff when the server does not know
// the kind, whatever the worker registered.
func TestWorkerRetryPolicy(t *testing.T) {
	const serverDelay = 42 * time.Minute
	s := newTestServerWith(t, httpapi.Config{Kinds: map[string]engine.Kind{
		"known": {Backoff: func(int) time.Duration { return serverDelay }},
	}})
	fail := func(context.Context, *weft.Task[knownArgs]) error { return errors.New("boom") }
	kinds := kindsOf(func(ws *weft.Workers) {
		workerDelay := weft.WithBackoff(func(int) time.Duration { return 7 * time.Hour })
		weft.AddWorkerFunc(ws, fail, workerDelay)
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[unknownArgs]) error { return errors.New("boom") }, workerDelay)
	})
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "known"}, store.NewTask{Kind: "unknown"})
	stop := startWorker(t, s, workerOptions{Kinds: kinds})
	retried := func(t *store.Task) bool { return t.State == store.StatePending && len(t.Errors) > 0 }

	tk := waitFor(t, s.st, ids[0], "retried", retried)
	if d := tk.RunAt.Sub(tk.Errors[0].At); d < serverDelay-time.Second || d > serverDelay+time.Second {
		t.Errorf("known kind: runs again %s after its failure, want the server's %s", d, serverDelay)
	}
	tk = waitFor(t, s.st, ids[1], "retried", retried)
	last := tk.Errors[len(tk.Errors)-1]
	if d, limit := tk.RunAt.Sub(last.At), time.Duration(1<<(last.Attempt-1))*time.Second; d <= 0 || d > limit {
		t.Errorf("unknown kind: runs again %s after attempt %d failed, want the default backoff (at most %s)", d, last.Attempt, limit)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerRefusedByServer(t *testing.T) {
	s := newTestServer(t, "s3cret")
	o := workerOptions{ID: "w", Queues: []string{"default"}, Concurrency: 1, LeaseTTL: time.Second, Wait: time.Second,
		Kinds: map[string]engine.Kind{"x": {}}, Log: slog.New(slog.DiscardHandler)}
	err := runWorker(context.Background(), apiclient.New(s.url, "", nil), o)
	if !errors.Is(err, apiclient.ErrUnauthorized) {
		t.Fatalf("err = %v, want unauthorized", err)
	}
}

func TestWorkerHTTPKind(t *testing.T) {
	s := newTestServer(t, "")
	headers := make(chan http.Header, 10)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gone" {
			http.Error(w, "no such hook", http.StatusNotFound)
			return
		}
		headers <- r.Header.Clone()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer target.Close()
	args := func(path string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"url": target.URL + path, "body": map[string]any{"event": "paid"}})
		return b
	}
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "http", Args: args("/hook")}, store.NewTask{Kind: "http", Args: args("/gone")},
		store.NewTask{Kind: "http", Args: json.RawMessage(`{"url": 7}`)})
	stop := startWorker(t, s, workerOptions{Kinds: builtinKinds(builtinConfig{Log: slog.New(slog.DiscardHandler)})})
	done := waitFor(t, s.st, ids[0], "completed", inState(store.StateCompleted))
	if !strings.Contains(string(done.Result), `"status":202`) {
		t.Errorf("webhook result = %s, want the response's status", done.Result)
	}
	tk := waitFor(t, s.st, ids[1], "failed", inState(store.StateFailed))
	if len(tk.Errors) != 1 || !strings.Contains(tk.Errors[0].Error, "404") {
		t.Errorf("404 hook: errors %+v", tk.Errors)
	}
	tk = waitFor(t, s.st, ids[2], "failed", inState(store.StateFailed))
	if len(tk.Errors) != 1 || !strings.Contains(tk.Errors[0].Error, "decode args") {
		t.Errorf("args that do not decode: errors %+v, want a permanent failure", tk.Errors)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := <-headers
	if got.Get("Weft-Task-Id") != ids[0] || got.Get("Weft-Attempt") != "1" {
		t.Errorf("webhook headers = %v", got)
	}
}

func TestWorkerFlags(t *testing.T) {
	failsWith(t, runWeft(t, "worker", "--concurrency", "0", "--server", closedServer(t)), exitUsage, "--concurrency")
	failsWith(t, runWeft(t, "worker", "--lease-ttl", "10ms", "--server", closedServer(t)), exitUsage, "--lease-ttl")
	// A worker talks to a server: it has no --database.
	failsWith(t, runWeft(t, "worker", "--database", "x.db"), exitUsage, "unknown flag: --database")
	failsWith(t, runWeft(t, "worker", "--queue", "no spaces", "--server", closedServer(t)), exitUsage, "--queue")
	// Against a server that is down, the worker keeps trying until stopped.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	r := cli{t: t}.run(ctx, "worker", "--server", closedServer(t))
	if r.code != 0 || !strings.Contains(r.stderr, "claim failed; retrying") || !strings.Contains(r.stderr, "worker stopped") {
		t.Errorf("worker against a server that is down:\n%s", r)
	}
}
