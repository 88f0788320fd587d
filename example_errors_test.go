package weft_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft"
)

// ChargeArgs are the arguments of the "example.charge" kind.
type ChargeArgs struct {
	Card string `json:"card"`
}

func (ChargeArgs) Kind() string { return "example.charge" }

// ExamplePermanent fails a task on its first attempt although more remain:
// retrying a declined card would only decline it again.
func ExamplePermanent() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[ChargeArgs]) error {
		return weft.Permanent(fmt.Errorf("card %s declined", t.Args.Card))
	})

	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}

	res, err := client.Enqueue(ctx, ChargeArgs{Card: "4000-0002"}, &weft.EnqueueOpts{MaxAttempts: 5})
	if err != nil {
		panic(err)
	}
	task, err := waitForState(client, res.ID, weft.StateFailed)
	if err != nil {
		panic(err)
	}

	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		panic(err)
	}

	fmt.Println(task.State, "after attempt", task.Attempt, "of", task.MaxAttempts)
	fmt.Println(task.Errors[0].Error)

	// Output:
	// failed after attempt 1 of 5
	// permanent: card 4000-0002 declined
}

// ReportArgs are the arguments of the "example.report" kind.
type ReportArgs struct {
	Month string `json:"month"`
}

func (ReportArgs) Kind() string { return "example.report" }

// ExampleSnooze puts a task back to sleep while its input is not ready yet.
// Snoozing does not count as a failed attempt, so a task can wait for as
// long as it needs without exhausting its retries.
func ExampleSnooze() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	// Stands in for "the month's data has arrived": false on the first run.
	var runs atomic.Int32
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[ReportArgs]) error {
		if runs.Add(1) == 1 {
			return weft.Snooze(10 * time.Millisecond)
		}
		return nil
	})

	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}

	res, err := client.Enqueue(ctx, ReportArgs{Month: "2024-05"}, nil)
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

	fmt.Println("runs:", runs.Load())
	fmt.Println("state:", task.State)
	fmt.Println("failed attempts:", len(task.Errors))

	// Output:
	// runs: 2
	// state: completed
	// failed attempts: 0
}

// ExampleClient_Cancel cancels a task before any worker picks it up.
// Cancelling a task that already finished is an error the caller can
// recognise and usually ignore.
func ExampleClient_Cancel() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	// Without workers nothing runs the task, so it stays pending until
	// cancelled.
	client, err := weft.NewClient(st, &weft.Config{Logger: logger})
	if err != nil {
		panic(err)
	}

	res, err := client.Enqueue(ctx, ReportArgs{Month: "2024-06"}, nil)
	if err != nil {
		panic(err)
	}

	task, err := client.Cancel(ctx, res.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("state:", task.State)

	_, err = client.Cancel(ctx, res.ID)
	fmt.Println("already finished:", errors.Is(err, weft.ErrAlreadyFinished))

	// Output:
	// state: cancelled
	// already finished: true
}
