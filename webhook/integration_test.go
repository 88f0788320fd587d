package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/webhook"
)

// TestThroughClient runs the kind as applications do: registered on a
// client over a real SQLite file, with the engine deciding retries.
func TestThroughClient(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	type hit struct{ taskID, attempt string }
	var (
		mu   sync.Mutex
		hits []hit
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, hit{r.Header.Get("Weft-Task-Id"), r.Header.Get("Weft-Attempt")})
		n := len(hits)
		mu.Unlock()
		switch {
		case r.URL.Path == "/gone":
			http.Error(w, "unknown hook", http.StatusNotFound)
		case n == 1:
			// The first delivery is turned away for a second; the engine
			// must wait that long and try again.
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"received":true}`)
		}
	}))
	defer srv.Close()

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"), &sqlite.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	ws := weft.NewWorkers()
	webhook.Register(ws, webhook.Config{Logger: logger})
	client, err := weft.NewClient(st, &weft.Config{Workers: ws, Logger: logger, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := client.Stop(stopCtx); err != nil {
			t.Error(err)
		}
	}()

	enq, err := client.Enqueue(ctx, webhook.Args{URL: srv.URL + "/hook", Body: json.RawMessage(`{"order":42}`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	task := waitFinished(t, client, enq.ID)
	if task.State != weft.StateCompleted {
		t.Fatalf("state = %s, errors %+v; want completed", task.State, task.Errors)
	}
	if task.Attempt != 2 {
		t.Errorf("attempt = %d, want 2 (one 503, then success)", task.Attempt)
	}
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Error, "503") {
		t.Errorf("errors = %+v, want the 503 recorded", task.Errors)
	}
	var res webhook.Result
	if err := json.Unmarshal(task.Result, &res); err != nil {
		t.Fatalf("result %s: %v", task.Result, err)
	}
	if res.Status != 200 || res.Body != `{"received":true}` || res.Headers["content-type"] != "application/json" || res.Truncated {
		t.Errorf("result = %s", task.Result)
	}
	mu.Lock()
	want := []hit{{enq.ID, "1"}, {enq.ID, "2"}}
	if len(hits) != 2 || hits[0] != want[0] || hits[1] != want[1] {
		t.Errorf("deliveries = %+v, want %+v", hits, want)
	}
	mu.Unlock()

	enq, err = client.Enqueue(ctx, webhook.Args{URL: srv.URL + "/gone"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	task = waitFinished(t, client, enq.ID)
	if task.State != weft.StateFailed || task.Attempt != 1 {
		t.Fatalf("state = %s after %d attempts, want failed after 1", task.State, task.Attempt)
	}
	if len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Error, "404 Not Found: unknown hook") {
		t.Errorf("errors = %+v, want the 404 and its body", task.Errors)
	}
}

// waitFinished polls until the task reaches a terminal state.
func waitFinished(t *testing.T, client *weft.Client, id string) *weft.TaskRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		task, err := client.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State.Terminal() {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is still %s after 10s", id, task.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
