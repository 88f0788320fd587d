package weftest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/weftest"
)

// EmailArgs are the arguments of the "email" kind.
type EmailArgs struct {
	To string `json:"to"`
}

func (EmailArgs) Kind() string { return "email" }

// signUp is the code under test: it welcomes a new user an hour after
// they sign up.
func signUp(ctx context.Context, c *weft.Client, email string) error {
	_, err := c.Enqueue(ctx, EmailArgs{To: email}, &weft.EnqueueOpts{Queue: "mail", Delay: time.Hour, UniqueKey: "welcome:" + email})
	return err
}

// Check what code enqueued. In a test, weftest.RequireEnqueued(t, env,
// args, match) does the same and fails the test with the message below.
func ExampleEnv_Enqueued() {
	ctx := context.Background()
	env, err := weftest.Open(ctx, &weftest.Options{Start: time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()

	if err := signUp(ctx, env.Client(), "ada@example.com"); err != nil {
		log.Fatal(err)
	}
	tasks, err := env.Enqueued(ctx, EmailArgs{To: "ada@example.com"}, &weftest.Match{
		Queue: "mail", RunAt: env.Now().Add(time.Hour), Count: 1,
	})
	fmt.Println(len(tasks), err)

	// A mismatch lists what was enqueued.
	_, err = env.Enqueued(ctx, EmailArgs{To: "bob@example.com"}, nil)
	fmt.Println(err)
	// Output:
	// 1 <nil>
	// weftest: enqueued tasks do not match: want a task of kind email with args {"to":"bob@example.com"}, found 0
	// enqueued (1):
	//   email queue=mail state=pending priority=0 max_attempts=25 run_at=2025-01-01T10:00:00Z args={"to":"ada@example.com"} unique_key="welcome:ada@example.com"
}
