package weft_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
)

// GreetArgs are the arguments of the "example.greet" kind. They are stored
// as JSON, so their fields need to be exported.
type GreetArgs struct {
	Name string `json:"name"`
}

// Kind is stored with every task; it must stay stable across deploys.
func (GreetArgs) Kind() string { return "example.greet" }

// Example_worker registers a function as a worker, enqueues a task and
// waits for the worker to run it.
func Example_worker() {
	ctx := context.Background()
	// The examples keep their output clean; real applications should log.
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir, err := os.MkdirTemp("", "weft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"), &sqlite.Options{Logger: logger})
	if err != nil {
		panic(err)
	}
	// The store belongs to the caller; deferred so it closes after the
	// client has stopped.
	defer st.Close()

	// The channel only lets this example wait for its single task.
	greeted := make(chan string, 1)
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[GreetArgs]) error {
		greeted <- "hello, " + t.Args.Name
		return nil
	})

	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}

	if _, err := client.Enqueue(ctx, GreetArgs{Name: "Ada"}, nil); err != nil {
		panic(err)
	}

	select {
	case msg := <-greeted:
		fmt.Println(msg)
	case <-time.After(5 * time.Second):
		fmt.Println("timed out waiting for the worker")
	}

	// Stop waits for running tasks and records their outcomes; the timeout
	// bounds how long it lets them finish.
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		panic(err)
	}

	// Output:
	// hello, Ada
}

// ThumbnailArgs are the arguments of the "example.thumbnail" kind.
type ThumbnailArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

func (ThumbnailArgs) Kind() string { return "example.thumbnail" }

// ThumbnailResult is what a thumbnail task stores as its result.
type ThumbnailResult struct {
	Path  string `json:"path"`
	Width int    `json:"width"`
}

// ThumbnailWorker is a worker with its own state: a struct is the natural
// home for dependencies such as clients or configuration.
type ThumbnailWorker struct {
	OutDir string
}

func (w *ThumbnailWorker) Work(ctx context.Context, t *weft.Task[ThumbnailArgs]) error {
	// The result is stored with the task when the attempt completes, so
	// callers can read it back with Client.Get.
	return t.SetResult(ThumbnailResult{
		Path:  fmt.Sprintf("%s/%d/%s", w.OutDir, t.Args.Width, t.Args.Image),
		Width: t.Args.Width,
	})
}

// ExampleAddWorker registers a struct implementing weft.Worker and reads
// the result the worker set back from the completed task.
func ExampleAddWorker() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	workers := weft.NewWorkers()
	weft.AddWorker(workers, &ThumbnailWorker{OutDir: "thumbs"}, weft.WithTimeout(time.Minute))

	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}

	res, err := client.Enqueue(ctx, ThumbnailArgs{Image: "cat.png", Width: 128}, nil)
	if err != nil {
		panic(err)
	}
	task, err := waitForState(client, res.ID, weft.StateCompleted)
	if err != nil {
		panic(err)
	}

	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		panic(err)
	}

	fmt.Println(task.State)
	fmt.Println(string(task.Result))

	// Output:
	// completed
	// {"path":"thumbs/128/cat.png","width":128}
}

// waitForState polls until the task reaches state want. Applications
// rarely need this; the examples use it to print deterministic output.
func waitForState(client *weft.Client, id string, want weft.TaskState) (*weft.TaskRecord, error) {
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := client.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if task.State == want {
			return task, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("task is %s after 5s, want %s", task.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exampleStore opens an SQLite store in a new temporary directory, with
// logs silenced, as Example_worker does step by step; cleanup closes the
// store and removes the directory.
func exampleStore() (*sqlite.Store, *slog.Logger, func()) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := os.MkdirTemp("", "weft-example")
	if err != nil {
		panic(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "weft.db"), &sqlite.Options{Logger: logger})
	if err != nil {
		panic(err)
	}
	return st, logger, func() {
		st.Close()
		os.RemoveAll(dir)
	}
}
