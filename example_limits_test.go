package weft_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft"
)

// ExportArgs are the arguments of the "example.export" kind: one
// customer's data export.
type ExportArgs struct {
	Customer string `json:"customer"`
}

func (ExportArgs) Kind() string { return "example.export" }

// waitFor polls until cond holds or five seconds pass: the examples wait
// for workers on other goroutines.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// ExampleClient_SetLimit defines a limit of one running export per
// customer, registers the export kind so that its tasks draw on it under
// their customer, and shows the second export of a customer set aside
// while the first runs, saying why, while another customer's export runs.
func ExampleClient_SetLimit() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	release := make(chan struct{})
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[ExportArgs]) error {
		<-release // the exports run until the example lets them finish
		return nil
	}, weft.WithLimitKeys(func(a ExportArgs) map[string]string {
		// Every export draws on per-customer under its customer.
		return map[string]string{"per-customer": a.Customer}
	}))
	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if _, err := client.SetLimit(ctx, weft.Limit{Name: "per-customer", Concurrency: 1}); err != nil {
		panic(err)
	}

	var ids []string
	for _, customer := range []string{"acme", "acme", "globex"} {
		res, err := client.Enqueue(ctx, ExportArgs{Customer: customer}, nil)
		if err != nil {
			panic(err)
		}
		ids = append(ids, res.ID)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)

	waitFor(func() bool {
		info, err := client.Limit(ctx, "per-customer")
		return err == nil && info.InUse == 2 && info.Waiting == 1
	})
	for i, id := range ids {
		t, err := client.Get(ctx, id)
		if err != nil {
			panic(err)
		}
		fmt.Printf("export %d for %s: %s", i+1, t.LimitKeys["per-customer"], t.State)
		if t.Blocked != nil {
			fmt.Printf(", blocked by %s %s (key %s)", t.Blocked.Reason, t.Blocked.Limit, t.Blocked.Key)
		}
		fmt.Println()
	}
	close(release)
	fmt.Println("all done:", waitFor(func() bool {
		t, err := client.Get(ctx, ids[1])
		return err == nil && t.State == weft.StateCompleted
	}))

	// Output:
	// export 1 for acme: running
	// export 2 for acme: pending, blocked by limit per-customer (key acme)
	// export 3 for globex: running
	// all done: true
}

// CallArgs are the arguments of the "example.call" kind: one call to an
// upstream API that limits its callers' rate.
type CallArgs struct {
	Prompt string `json:"prompt"`
}

func (CallArgs) Kind() string { return "example.call" }

// errTooManyRequests stands for an upstream's HTTP 429.
var errTooManyRequests = errors.New("429 Too Many Requests")

// ExampleRateLimited shows a handler that meets an upstream's own rate
// limit: it returns RateLimited with the upstream's Retry-After, the task
// goes back to pending without spending its attempt, and the key of its
// rate limit is held back for every task until then.
func ExampleRateLimited() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[CallArgs]) error {
		if err := callUpstream(t.Args.Prompt); errors.Is(err, errTooManyRequests) {
			return weft.RateLimited(time.Minute) // the upstream's Retry-After
		} else if err != nil {
			return err
		}
		return nil
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	// 500 calls a minute, bursts of 50: what the upstream allows.
	if _, err := client.SetLimit(ctx, weft.Limit{Name: "upstream", Rate: 500, Period: time.Minute, Burst: 50}); err != nil {
		panic(err)
	}
	res, err := client.Enqueue(ctx, CallArgs{Prompt: "hello"}, &weft.EnqueueOpts{Limits: map[string]string{"upstream": "default"}})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)

	var task *weft.TaskRecord
	waitFor(func() bool {
		task, err = client.Get(ctx, res.ID)
		return err == nil && task.State == weft.StatePending && task.RunAt.After(time.Now())
	})
	fmt.Println("state:", task.State, "attempt:", task.Attempt)
	keys, _, err := client.LimitKeys(ctx, "upstream", "", 10)
	if err != nil {
		panic(err)
	}
	fmt.Println("key:", keys[0].Key, "held back:", keys[0].NextAllowedAt.After(time.Now().Add(50*time.Second)))

	// Output:
	// state: pending attempt: 0
	// key: default held back: true
}

// callUpstream stands for a call to a rate-limited API, which refuses
// this one.
func callUpstream(string) error { return errTooManyRequests }

// TrainArgs are the arguments of the "example.train" kind, which needs a
// GPU.
type TrainArgs struct {
	Model string `json:"model"`
}

func (TrainArgs) Kind() string { return "example.train" }

// ExampleConfig_labels routes a task to workers by label: it requires a
// GPU and 64 GB of memory, and only a client whose labels satisfy both
// claims it.
func ExampleConfig_labels() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	trained := make(chan string, 1)
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[TrainArgs]) error {
		trained <- t.Args.Model
		return nil
	})
	client, err := weft.NewClient(st, &weft.Config{
		Workers: workers, Logger: logger,
		Labels: map[string]string{"gpu": "true", "mem": "128"},
	})
	if err != nil {
		panic(err)
	}
	_, err = client.Enqueue(ctx, TrainArgs{Model: "small"}, &weft.EnqueueOpts{
		Requires: map[string]string{"gpu": "true", "mem": ">=64"},
	})
	if err != nil {
		panic(err)
	}
	// A malformed requirement is refused at enqueue, naming the field.
	_, err = client.Enqueue(ctx, TrainArgs{Model: "big"}, &weft.EnqueueOpts{Requires: map[string]string{"mem": ">=lots"}})
	var ve *weft.ValidationError
	if errors.As(err, &ve) {
		fmt.Println("refused:", ve.Field)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)
	select {
	case model := <-trained:
		fmt.Println("trained:", model)
	case <-time.After(5 * time.Second):
		fmt.Println("timed out")
	}

	// Output:
	// refused: requires
	// trained: small
}
