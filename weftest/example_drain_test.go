package weftest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/weftest"
)

// OrderArgs are the arguments of the "order" kind, whose worker sends a
// confirmation email.
type OrderArgs struct {
	ID int `json:"id"`
}

func (OrderArgs) Kind() string { return "order" }

// Run everything that is ready, including the tasks handlers enqueue on
// the way; delayed tasks wait for the clock.
func ExampleEnv_Drain() {
	ctx := context.Background()
	var env *weftest.Env
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[OrderArgs]) error {
		_, err := env.Client().Enqueue(ctx, EmailArgs{To: fmt.Sprintf("order-%d@example.com", t.Args.ID)}, &weft.EnqueueOpts{Queue: "mail"})
		return err
	})
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[EmailArgs]) error { return nil })
	env, err := weftest.Open(ctx, &weftest.Options{Workers: ws})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()

	c := env.Client()
	if _, err := c.Enqueue(ctx, OrderArgs{ID: 1}, nil); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Enqueue(ctx, OrderArgs{ID: 2}, &weft.EnqueueOpts{Delay: 24 * time.Hour}); err != nil {
		log.Fatal(err)
	}
	show := func() {
		results, err := env.Drain(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range results {
			fmt.Println(r.Task.Kind, string(r.Task.Args), r.Outcome)
		}
	}
	show()
	fmt.Println("a day later:")
	if err := env.Advance(ctx, 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	show()
	// Output:
	// order {"id":1} completed
	// email {"to":"order-1@example.com"} completed
	// a day later:
	// order {"id":2} completed
	// email {"to":"order-2@example.com"} completed
}

// ReportArgs are the arguments of the "report" kind.
type ReportArgs struct{}

func (ReportArgs) Kind() string { return "report" }

// Advancing the clock enqueues the slots of schedules it passes, each at
// its own time, as a server running all along would.
func ExampleEnv_Advance() {
	ctx := context.Background()
	env, err := weftest.Open(ctx, &weftest.Options{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()

	if err := env.Client().Schedule(ctx, "nightly-report", "0 3 * * *", ReportArgs{}, nil); err != nil {
		log.Fatal(err)
	}
	if err := env.Advance(ctx, 72*time.Hour); err != nil {
		log.Fatal(err)
	}
	reports, err := env.Enqueued(ctx, ReportArgs{}, &weftest.Match{Count: 3})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range reports {
		fmt.Println(r.Kind, r.RunAt.Format(time.DateTime), r.UniqueKey)
	}
	// Output:
	// report 2025-01-01 03:00:00 cron:nightly-report:1735700400
	// report 2025-01-02 03:00:00 cron:nightly-report:1735786800
	// report 2025-01-03 03:00:00 cron:nightly-report:1735873200
}
