package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/weftest"
)

// The README's run command must keep working.
func TestQuickstartRuns(t *testing.T) {
	if err := run(filepath.Join(t.TempDir(), "quickstart.db"), 200); err != nil {
		t.Fatal(err)
	}
}

// newEnv is a throwaway Weft with the quickstart's worker.
func newEnv(t *testing.T) *weftest.Env {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, resize, weft.WithBackoff(resizeBackoff))
	return weftest.New(t, &weftest.Options{Workers: ws})
}

// The worker, one task at a time: a resize completes with its result; a
// tenth width fails once and completes on its retry, one backoff later.
func TestResize(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	res, err := env.Work(ctx, ResizeArgs{Image: "cat.png", Width: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Resized string `json:"resized"`
		Width   int    `json:"width"`
	}
	if err := res.DecodeResult(&out); err != nil || res.Outcome != weftest.Completed || out.Resized != "cat.png" || out.Width != 7 {
		t.Errorf("resize cat.png: %s %+v (%v)", res.Outcome, out, err)
	}

	res, err = env.Work(ctx, ResizeArgs{Image: "dog.png", Width: 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != weftest.Retried || !res.Task.RunAt.Equal(env.Now().Add(resizeBackoff(1))) {
		t.Fatalf("first attempt at a tenth width: %s, due %s", res.Outcome, res.Task.RunAt)
	}
	if err := env.Advance(ctx, resizeBackoff(1)); err != nil {
		t.Fatal(err)
	}
	if res, err = env.WorkTask(ctx, res.Task.ID); err != nil || res.Outcome != weftest.Completed || res.Task.Attempt != 2 {
		t.Errorf("the retry: %+v, %v", res, err)
	}
}

// The quickstart's batch: every task completes, the tenth widths on their
// second attempt.
func TestResizeBatch(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	batch := make([]weft.EnqueueParams, 25)
	for i := range batch {
		batch[i] = weft.EnqueueParams{Args: ResizeArgs{Image: fmt.Sprintf("img-%02d.png", i), Width: i + 1}}
	}
	if _, err := env.Client().EnqueueMany(ctx, batch); err != nil {
		t.Fatal(err)
	}
	weftest.RequireEnqueued(t, env, ResizeArgs{}, &weftest.Match{AnyArgs: true, Count: 25})
	first, err := env.Drain(ctx)
	if err != nil || len(first) != 25 {
		t.Fatalf("first drain: %d attempts, %v", len(first), err)
	}
	if err := env.Advance(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	retries, err := env.Drain(ctx)
	if err != nil || len(retries) != 2 {
		t.Fatalf("retries: %d attempts, %v", len(retries), err)
	}
	weftest.RequireEnqueued(t, env, ResizeArgs{Image: "img-09.png", Width: 10}, &weftest.Match{State: weft.StateCompleted, Count: 1})
	weftest.RequireEnqueued(t, env, ResizeArgs{}, &weftest.Match{AnyArgs: true, State: weft.StateCompleted, Count: 25})
}
