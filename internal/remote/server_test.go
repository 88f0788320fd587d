package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/internal/remote"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// runRemote enqueues n tasks of kind "k" on a real server over a SQLite
// file, runs an engine on them through a Source with handler at the given
// concurrency until every task has left pending and running, and returns
// the store and how long the tasks took.
func runRemote(tb testing.TB, n, concurrency int, handler engine.Handler) (store.Store, time.Duration) {
	tb.Helper()
	_, st := testenv.SQLite(tb)
	srv, err := httpapi.New(httpapi.Config{Client: testenv.Client(tb, st), Logger: testenv.Logger()})
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	tb.Cleanup(hs.Close)
	ctx := context.Background()
	for done := 0; done < n; done += 1000 {
		batch := make([]store.NewTask, min(1000, n-done))
		for i := range batch {
			batch[i] = store.NewTask{Kind: "k", Args: []byte(fmt.Sprint(done + i)), MaxAttempts: 1}
		}
		if _, err := st.Enqueue(ctx, batch); err != nil {
			tb.Fatal(err)
		}
	}
	src := remote.New(remote.Config{Client: apiclient.New(hs.URL, "", hs.Client()), Wait: time.Second, Logger: testenv.Logger()})
	eng, err := engine.New(engine.Config{
		Source: src, Owner: "w", Queues: map[string]int{store.DefaultQueue: concurrency},
		Kinds: map[string]engine.Kind{"k": {Handler: handler}}, Logger: testenv.Logger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	if err := eng.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		if err := eng.Stop(ctx); err != nil {
			tb.Error(err)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		stats, err := st.Stats(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		if len(stats) == 1 && stats[0].Counts[store.StatePending]+stats[0].Counts[store.StateRunning] == 0 {
			return st, time.Since(start)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("tasks left after a minute: %+v", stats)
		}
		time.Sleep(time.Millisecond)
	}
}

// The engine's outcomes reach a real server in batches and are recorded
// as its handlers decided: completions with their results, failures with
// their errors.
func TestEngineOverServer(t *testing.T) {
	st, _ := runRemote(t, 300, 50, func(_ context.Context, x *engine.Execution) engine.Verdict {
		if strings.HasSuffix(string(x.Task.Args), "7") {
			return engine.Verdict{Action: engine.Fail, Err: errors.New("sevens fail")}
		}
		return engine.Verdict{Action: engine.Complete, Result: x.Task.Args}
	})
	tasks, err := st.List(context.Background(), store.ListParams{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		switch {
		case strings.HasSuffix(string(task.Args), "7"):
			if task.State != store.StateFailed || len(task.Errors) != 1 || task.Errors[0].Error != "sevens fail" {
				t.Fatalf("task %s = %s %+v, want failed", task.Args, task.State, task.Errors)
			}
		case task.State != store.StateCompleted || string(task.Result) != string(task.Args):
			t.Fatalf("task %s = %s with result %s, want completed with its args", task.Args, task.State, task.Result)
		}
	}
}

// BenchmarkEngineOverServer is `weft worker`'s path end to end on one
// machine: an engine with 100 slots runs no-op tasks claimed from a real
// server and reports them through it.
func BenchmarkEngineOverServer(b *testing.B) {
	_, took := runRemote(b, b.N, 100, func(context.Context, *engine.Execution) engine.Verdict {
		return engine.Verdict{Action: engine.Complete}
	})
	b.ReportMetric(float64(b.N)/took.Seconds(), "tasks/s")
}
