package weft_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
)

// PayArgs takes an order's payment.
type PayArgs struct {
	Order  string `json:"order"`
	Amount int    `json:"amount"`
}

func (PayArgs) Kind() string { return "example.pay" }

// ShipArgs ships a paid order.
type ShipArgs struct {
	Order string `json:"order"`
}

func (ShipArgs) Kind() string { return "example.ship" }

// RefundArgs gives an order's money back.
type RefundArgs struct {
	Order string `json:"order"`
}

func (RefundArgs) Kind() string { return "example.refund" }

// Example_flow runs an order as a flow: the payment, then shipping once it
// succeeded, or a refund — compensation — once it failed. The payment
// fails here, so shipping is skipped and the refund runs, reading why the
// payment failed from its parent.
func Example_flow() {
	ctx := context.Background()
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
	defer st.Close()

	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[PayArgs]) error {
		return weft.Permanent(errors.New("card declined"))
	})
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[ShipArgs]) error {
		return nil
	})
	refunded := make(chan string, 1)
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[RefundArgs]) error {
		parents, err := t.Parents(ctx)
		if err != nil {
			return err
		}
		charge := parents["charge"]
		refunded <- fmt.Sprintf("refund %s: charge %s (%s)", t.Args.Order, charge.State, charge.Errors[0].Error)
		return nil
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)

	order := weft.NewFlow("order 42").
		Add("charge", PayArgs{Order: "42", Amount: 1999}).
		Add("ship", ShipArgs{Order: "42"}, weft.After("charge")).
		Add("refund", RefundArgs{Order: "42"}, weft.After("charge"), weft.WithJoin(weft.NoneSucceeded))
	res, err := client.EnqueueFlow(ctx, order)
	if err != nil {
		panic(err)
	}
	fmt.Println(<-refunded)

	// The refund absorbed the failure, so the flow succeeded.
	for {
		f, err := client.Flow(ctx, res.ID)
		if err != nil {
			panic(err)
		}
		if f.State != weft.FlowRunning {
			fmt.Printf("flow %s: %d completed, %d failed, %d skipped\n", f.State, f.Counts.Completed, f.Counts.Failed, f.Counts.Skipped)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Output:
	// refund 42: charge failed (permanent: card declined)
	// flow succeeded: 1 completed, 1 failed, 1 skipped
}
