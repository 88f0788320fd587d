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
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

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
	runners := map[string]runner{
		"ok": func(_ context.Context, t api.ClaimedTask) (json.RawMessage, error) {
			return json.RawMessage(`{"echo":` + string(t.Args) + `}`), nil
		},
		"perm": func(context.Context, api.ClaimedTask) (json.RawMessage, error) {
			return nil, weft.Permanent(errors.New("bad input"))
		},
		"cancel": func(context.Context, api.ClaimedTask) (json.RawMessage, error) {
			return nil, weft.Cancel(errors.New("not wanted"))
		},
		"snooze": func(context.Context, api.ClaimedTask) (json.RawMessage, error) { return nil, weft.Snooze(time.Hour) },
		"later": func(context.Context, api.ClaimedTask) (json.RawMessage, error) {
			return nil, weft.RetryAfter(errors.New("busy"), 2*time.Hour)
		},
		"oops": func(context.Context, api.ClaimedTask) (json.RawMessage, error) { panic("kaboom") },
	}
	ids := enqueueStore(t, s.st,
		store.NewTask{Kind: "ok", Args: json.RawMessage(`{"n":1}`)},
		store.NewTask{Kind: "perm"}, store.NewTask{Kind: "cancel"}, store.NewTask{Kind: "snooze"},
		store.NewTask{Kind: "later"}, store.NewTask{Kind: "oops"},
		store.NewTask{Kind: "other"}) // no runner: left alone
	start := time.Now()
	stop := startWorker(t, s, workerOptions{Runners: runners})

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
	tk = waitFor(t, s.st, ids[5], "retried after a panic", func(t *store.Task) bool { return len(t.Errors) == 1 })
	if !strings.Contains(tk.Errors[0].Error, "panic: kaboom") {
		t.Errorf("panic error = %q", tk.Errors[0].Error)
	}
	if err := stop(); err != nil {
		t.Fatalf("runWorker: %v", err)
	}
	if tk, _ := s.st.Get(context.Background(), ids[6]); tk.State != store.StatePending || tk.Attempt != 0 {
		t.Errorf("a kind without runner was claimed: %+v", tk)
	}
}

func TestWorkerHeartbeatAndCancel(t *testing.T) {
	s := newTestServer(t, "")
	started := make(chan string, 2)
	runners := map[string]runner{
		// Outlives its 1s lease: only heartbeats keep it.
		"slow": func(ctx context.Context, _ api.ClaimedTask) (json.RawMessage, error) {
			select {
			case <-time.After(2500 * time.Millisecond):
				return json.RawMessage(`"done"`), nil
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		},
		"block": func(ctx context.Context, t api.ClaimedTask) (json.RawMessage, error) {
			started <- t.ID
			<-ctx.Done()
			return nil, context.Cause(ctx)
		},
	}
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "slow"}, store.NewTask{Kind: "block"})
	stop := startWorker(t, s, workerOptions{Runners: runners, LeaseTTL: time.Second})
	// Rescue as the maintenance leader would, to prove the lease held.
	go func() {
		for i := 0; i < 30; i++ {
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
	runners := map[string]runner{
		"finish": func(ctx context.Context, t api.ClaimedTask) (json.RawMessage, error) {
			started <- t.ID
			time.Sleep(300 * time.Millisecond) // ignores the stop: the grace period covers it
			return nil, nil
		},
		"block": func(ctx context.Context, t api.ClaimedTask) (json.RawMessage, error) {
			started <- t.ID
			<-ctx.Done()
			return nil, context.Cause(ctx)
		},
	}
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "finish"}, store.NewTask{Kind: "block"})
	stop := startWorker(t, s, workerOptions{Runners: runners, Grace: time.Second})
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

func TestWorkerRefusedByServer(t *testing.T) {
	s := newTestServer(t, "s3cret")
	o := workerOptions{ID: "w", Queues: []string{"default"}, Concurrency: 1, LeaseTTL: time.Second, Wait: time.Second,
		Runners: map[string]runner{"x": nil}, Log: slog.New(slog.DiscardHandler)}
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
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "http", Args: args("/hook")}, store.NewTask{Kind: "http", Args: args("/gone")})
	stop := startWorker(t, s, workerOptions{Runners: builtinRunners(builtinConfig{Log: slog.New(slog.DiscardHandler)})})
	done := waitFor(t, s.st, ids[0], "completed", inState(store.StateCompleted))
	if !strings.Contains(string(done.Result), `"status":202`) {
		t.Errorf("webhook result = %s, want the response's status", done.Result)
	}
	tk := waitFor(t, s.st, ids[1], "failed", inState(store.StateFailed))
	if len(tk.Errors) != 1 || !strings.Contains(tk.Errors[0].Error, "404") {
		t.Errorf("404 hook: errors %+v", tk.Errors)
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
	failsWith(t, runWeft(t, "worker", "--database", "x.db"), exitUsage, "use --server")
	// Against a server that is down, the worker keeps trying until stopped.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	r := cli{t: t}.run(ctx, "worker", "--server", closedServer(t))
	if r.code != 0 || !strings.Contains(r.stderr, "claim failed; retrying") || !strings.Contains(r.stderr, "worker stopped") {
		t.Errorf("worker against a server that is down:\n%s", r)
	}
}
