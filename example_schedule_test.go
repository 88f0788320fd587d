package weft_test

import (
	"context"
	"fmt"
	"time"

	"github.com/weftworks/weft"
)

// DigestArgs are the arguments of the "example.digest" kind.
type DigestArgs struct {
	List string `json:"list"`
}

// Kind is stored with every task.
func (DigestArgs) Kind() string { return "example.digest" }

// ExampleClient_Schedule runs a task every second. Schedules live in the
// database: every started client sees them, and only the elected
// maintenance leader enqueues, once per slot.
func ExampleClient_Schedule() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	sent := make(chan string, 10)
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[DigestArgs]) error {
		sent <- t.Args.List
		return nil
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger, CronInterval: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = client.Stop(stopCtx)
	}()

	// Cron expressions ("0 8 * * 1-5"), descriptors ("@daily") and
	// "@every <duration>" are accepted.
	if err := client.Schedule(ctx, "digest", "@every 1s", DigestArgs{List: "weekly"}, nil); err != nil {
		panic(err)
	}
	select {
	case list := <-sent:
		fmt.Println("sent the", list, "digest")
	case <-time.After(5 * time.Second):
		fmt.Println("timed out")
	}

	if err := client.PauseSchedule(ctx, "digest"); err != nil {
		panic(err)
	}
	schedules, err := client.Schedules(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(schedules[0].Name, schedules[0].Spec, "paused:", schedules[0].Paused)
	// Output:
	// sent the weekly digest
	// digest @every 1s paused: true
}
