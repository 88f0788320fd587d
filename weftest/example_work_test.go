package weftest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/weftest"
)

// ResizeArgs are the arguments of the "resize" kind.
type ResizeArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

func (ResizeArgs) Kind() string { return "resize" }

// errBusy is a transient failure: the task is retried.
var errBusy = errors.New("image server busy")

// resize is the worker under test.
func resize(_ context.Context, t *weft.Task[ResizeArgs]) error {
	switch {
	case t.Args.Width <= 0:
		return weft.Permanent(fmt.Errorf("width %d is not positive", t.Args.Width))
	case t.Args.Image == "busy.png" && t.Attempt == 1:
		return errBusy
	}
	return t.SetResult(map[string]any{"resized": t.Args.Image, "width": t.Args.Width})
}

// Run a worker's handler on one task at a time and look at each outcome:
// what the task recorded, and when it runs again.
func ExampleEnv_Work() {
	ctx := context.Background()
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, resize, weft.WithBackoff(func(int) time.Duration { return time.Minute }))
	env, err := weftest.Open(ctx, &weftest.Options{Workers: ws, Start: time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()

	res, err := env.Work(ctx, ResizeArgs{Image: "cat.png", Width: 640}, nil)
	if err != nil {
		log.Fatal(err)
	}
	var out map[string]any
	if err := res.DecodeResult(&out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome, out)

	res, err = env.Work(ctx, ResizeArgs{Image: "cat.png"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome, res.Err)

	// A transient failure is retried after the kind's backoff; the clock
	// moves only when told.
	res, err = env.Work(ctx, ResizeArgs{Image: "busy.png", Width: 320}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome, errors.Is(res.Err, errBusy), "next attempt at", res.Task.RunAt.Format(time.Kitchen))
	if err := env.Advance(ctx, time.Minute); err != nil {
		log.Fatal(err)
	}
	res, err = env.WorkTask(ctx, res.Task.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome, "on attempt", res.Task.Attempt)
	// Output:
	// completed map[resized:cat.png width:640]
	// failed permanent: width 0 is not positive
	// retried true next attempt at 9:01AM
	// completed on attempt 2
}
