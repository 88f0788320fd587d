package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/webhook"
)

// Example registers the "http" kind, enqueues a webhook and reads back the
// receiver's answer from the completed task.
func Example() {
	ctx := context.Background()
	// The example keeps its output clean; real applications should log.
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The receiver. A real one would remember the Weft-Task-Id header of
	// each delivery it handled, since a delivery can come twice.
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "got %s (%s)", body, r.Header.Get("Content-Type"))
	}))
	defer receiver.Close()

	dir, err := os.MkdirTemp("", "weft-webhook-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"), &sqlite.Options{Logger: logger})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	workers := weft.NewWorkers()
	// Production code taking URLs from users sets DenyPrivate: true; it is
	// off here only because the test receiver listens on loopback.
	webhook.Register(workers, webhook.Config{Timeout: 10 * time.Second, Logger: logger})

	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}

	res, err := client.Enqueue(ctx, webhook.Args{
		URL:     receiver.URL + "/orders",
		Headers: map[string]string{"Authorization": "Bearer example"},
		Body:    json.RawMessage(`{"order":42,"status":"paid"}`),
	}, nil)
	if err != nil {
		panic(err)
	}

	// Polling only lets the example print the outcome; applications
	// usually enqueue and move on.
	var task *weft.TaskRecord
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if task, err = client.Get(ctx, res.ID); err != nil {
			panic(err)
		}
		if task.State.Terminal() || time.Now().After(deadline) {
			break
		}
	}

	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		panic(err)
	}

	var out webhook.Result
	if err := json.Unmarshal(task.Result, &out); err != nil {
		panic(err)
	}
	fmt.Println(task.State)
	fmt.Println(out.Status, out.Body)

	// Output:
	// completed
	// 200 got {"order":42,"status":"paid"} (application/json)
}
