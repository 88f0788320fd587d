// Command quickstart enqueues a batch of tasks into an embedded SQLite
// database and works them with a typed Go worker, printing progress.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
)

// ResizeArgs are the arguments of the "resize" kind.
type ResizeArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

// Kind names the task kind.
func (ResizeArgs) Kind() string { return "resize" }

// resize is the worker of the "resize" kind. Every tenth image fails its
// first attempt, to show a retry; main_test.go tests it with weftest.
func resize(_ context.Context, t *weft.Task[ResizeArgs]) error {
	if t.Attempt == 1 && t.Args.Width%10 == 0 {
		return errors.New("transient: image server busy")
	}
	return t.SetResult(map[string]any{"resized": t.Args.Image, "width": t.Args.Width})
}

// resizeBackoff retries a failed resize soon, so that the demo ends fast.
func resizeBackoff(int) time.Duration { return 100 * time.Millisecond }

func main() {
	dbPath := flag.String("db", filepath.Join(os.TempDir(), "weft-quickstart.db"), "SQLite database file")
	n := flag.Int("tasks", 1000, "how many tasks to enqueue")
	flag.Parse()
	if err := run(*dbPath, *n); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(dbPath string, n int) error {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := sqlite.Open(ctx, dbPath, &sqlite.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()

	var done atomic.Int64
	finished := make(chan struct{})
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[ResizeArgs]) error {
		if err := resize(ctx, t); err != nil {
			return err
		}
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	}, weft.WithBackoff(resizeBackoff))

	client, err := weft.NewClient(st, &weft.Config{
		Queues:  map[string]weft.QueueConfig{"default": {MaxWorkers: 50}},
		Workers: workers,
		Logger:  logger,
	})
	if err != nil {
		return err
	}

	batch := make([]weft.EnqueueParams, n)
	for i := range batch {
		batch[i] = weft.EnqueueParams{Args: ResizeArgs{Image: fmt.Sprintf("img-%04d.png", i), Width: i + 1}}
	}
	start := time.Now()
	if _, err := client.EnqueueMany(ctx, batch); err != nil {
		return err
	}
	fmt.Printf("enqueued %d tasks into %s in %s\n", n, dbPath, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := client.Start(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-finished:
			waiting = false
		case <-tick.C:
		case <-time.After(time.Minute):
			return errors.New("timed out waiting for tasks")
		}
		fmt.Printf("\rcompleted %d/%d", done.Load(), n)
	}
	elapsed := time.Since(start)
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		return err
	}
	fmt.Printf("\ncompleted %d tasks in %s (%.0f tasks/s), with retries for every tenth\n",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return nil
}
