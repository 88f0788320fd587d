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

// WelcomeEmailArgs are the arguments of the "example.welcome_email" kind.
type WelcomeEmailArgs struct {
	To string `json:"to"`
}

func (WelcomeEmailArgs) Kind() string { return "example.welcome_email" }

// ExampleClient_Enqueue enqueues a delayed, prioritised task on a named
// queue, then enqueues it again with the same unique key: the second call
// writes nothing and returns the first task's id.
func ExampleClient_Enqueue() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	// A client without workers only enqueues and reads; it needs no Start.
	client, err := weft.NewClient(st, &weft.Config{Logger: logger})
	if err != nil {
		panic(err)
	}

	opts := &weft.EnqueueOpts{
		Queue:    "email",
		Priority: 10,
		Delay:    time.Hour,
		// The key makes retrying the enqueue safe, for example after a
		// request handler timed out without knowing whether it committed.
		UniqueKey: "welcome:ada@example.com",
	}
	first, err := client.Enqueue(ctx, WelcomeEmailArgs{To: "ada@example.com"}, opts)
	if err != nil {
		panic(err)
	}
	second, err := client.Enqueue(ctx, WelcomeEmailArgs{To: "ada@example.com"}, opts)
	if err != nil {
		panic(err)
	}
	fmt.Println("first duplicate:", first.Duplicate)
	fmt.Println("second duplicate:", second.Duplicate)
	fmt.Println("same task:", first.ID == second.ID)

	task, err := client.Get(ctx, first.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("queue:", task.Queue, "priority:", task.Priority, "state:", task.State)
	fmt.Println("runs later:", task.RunAt.After(time.Now()))

	// Output:
	// first duplicate: false
	// second duplicate: true
	// same task: true
	// queue: email priority: 10 state: pending
	// runs later: true
}

// ExampleClient_EnqueueMany shows that a batch is atomic: one invalid task
// rejects the whole batch, and the error names the task and field at fault.
func ExampleClient_EnqueueMany() {
	ctx := context.Background()
	// exampleStore does what Example_worker shows step by step.
	st, logger, cleanup := exampleStore()
	defer cleanup()

	client, err := weft.NewClient(st, &weft.Config{Logger: logger})
	if err != nil {
		panic(err)
	}

	batch := []weft.EnqueueParams{
		{Args: WelcomeEmailArgs{To: "ada@example.com"}},
		{Args: WelcomeEmailArgs{To: "grace@example.com"}, Opts: &weft.EnqueueOpts{Delay: -time.Minute}},
		{Args: WelcomeEmailArgs{To: "edsger@example.com"}},
	}
	_, err = client.EnqueueMany(ctx, batch)
	var verr *weft.ValidationError
	if errors.As(err, &verr) {
		fmt.Println("invalid task:", verr.Index, "field:", verr.Field)
	}
	fmt.Println("is ErrInvalid:", errors.Is(err, weft.ErrInvalid))

	tasks, err := client.List(ctx, weft.ListParams{})
	if err != nil {
		panic(err)
	}
	fmt.Println("tasks after the rejected batch:", len(tasks))

	// With the bad delay fixed, every task of the batch is written in one
	// transaction.
	batch[1].Opts = &weft.EnqueueOpts{Delay: time.Minute}
	results, err := client.EnqueueMany(ctx, batch)
	if err != nil {
		panic(err)
	}
	fmt.Println("enqueued:", len(results))

	// Output:
	// invalid task: 1 field: delay
	// is ErrInvalid: true
	// tasks after the rejected batch: 0
	// enqueued: 3
}

// SignupArgs are the arguments of the "example.signup" kind.
type SignupArgs struct {
	UserID int64 `json:"user_id"`
}

func (SignupArgs) Kind() string { return "example.signup" }

// ExampleEnqueueTx enqueues a task in the same transaction as the
// application's own write, so the task exists if and only if that write
// commits.
func ExampleEnqueueTx() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir, err := os.MkdirTemp("", "weft-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.db")

	st, err := sqlite.Open(ctx, path, &sqlite.Options{Logger: logger})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	client, err := weft.NewClient(st, &weft.Config{Logger: logger})
	if err != nil {
		panic(err)
	}

	// OpenSQL gives the application a pool on the same file with the
	// settings Weft relies on, so both can write to it safely.
	db, err := sqlite.OpenSQL(path, &sqlite.Options{Logger: logger})
	if err != nil {
		panic(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL)"); err != nil {
		panic(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	// Rolled back unless committed below.
	defer tx.Rollback()

	row, err := tx.ExecContext(ctx, "INSERT INTO users (email) VALUES (?)", "ada@example.com")
	if err != nil {
		panic(err)
	}
	userID, err := row.LastInsertId()
	if err != nil {
		panic(err)
	}
	res, err := weft.EnqueueTx(ctx, client, tx, SignupArgs{UserID: userID}, nil)
	if err != nil {
		panic(err)
	}

	// Until the commit, the task is invisible to the client and its
	// workers.
	_, err = client.Get(ctx, res.ID)
	fmt.Println("before commit, not found:", errors.Is(err, weft.ErrNotFound))

	if err := tx.Commit(); err != nil {
		panic(err)
	}

	task, err := client.Get(ctx, res.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("after commit:", task.Kind, task.State)

	// Output:
	// before commit, not found: true
	// after commit: example.signup pending
}
