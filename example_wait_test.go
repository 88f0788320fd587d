package weft_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/sqlite"
)

// RefundRequest asks for a refund that a person must approve.
type RefundRequest struct {
	Order string `json:"order"`
}

func (RefundRequest) Kind() string { return "example.refund_request" }

// Example_approval pauses a task until a person approves it: the handler
// creates a waitpoint, hands its token out (here, on a channel; in life,
// in an email link), and waits — holding no worker slot — until the signal
// arrives; then it runs again and finds the decision.
func Example_approval() {
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

	links := make(chan string, 1)
	done := make(chan string, 1)
	workers := weft.NewWorkers()
	weft.AddWorkerFunc(workers, func(ctx context.Context, t *weft.Task[RefundRequest]) error {
		wp, err := t.Waitpoint(ctx, "manager", &weft.WaitpointOpts{Allow: []string{"approve", "deny"}})
		if err != nil {
			return err
		}
		if s, ok := wp.Signal("approve"); ok {
			note, _ := weft.SignalPayload[string](s)
			done <- fmt.Sprintf("order %s refunded (%s)", t.Args.Order, note)
			return nil
		}
		if _, ok := wp.Signal("deny"); ok {
			done <- "refund denied"
			return nil
		}
		links <- wp.Token // e.g. https://example.com/approve?token=...
		return weft.WaitAny(0, wp)
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: workers, Logger: logger})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer client.Stop(ctx)

	if _, err := client.Enqueue(ctx, RefundRequest{Order: "42"}, nil); err != nil {
		panic(err)
	}
	token := <-links
	// The manager clicks the link: the page signals with the token. A
	// second click (the same key) changes nothing. (Had the signal come
	// before the handler suspended, it would have been kept, and the wait
	// would have ended as soon as it began.)
	for range 2 {
		rec, err := client.Signal(ctx, token, weft.SignalParams{Name: "approve", Key: "click-1", Payload: "damaged in transit"})
		if err != nil {
			panic(err)
		}
		fmt.Println("repeat:", rec.Duplicate)
	}
	fmt.Println(<-done)
	// Output:
	// repeat: false
	// repeat: true
	// order 42 refunded (damaged in transit)
}
