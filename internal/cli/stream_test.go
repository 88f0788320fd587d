package cli

import (
	"context"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// `task --stream --database` follows a stream that another connection —
// another process, as far as the CLI's store can tell — writes and ends.
func TestStreamDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	ctx := context.Background()
	res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Claim(ctx, store.ClaimRequest{Owner: "w", Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: 1}}, LeaseTTL: time.Minute})
	if err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", c, err)
	}
	write := func(s string) {
		t.Helper()
		if _, err := st.AppendFrames(ctx, c[0].ID, c[0].LeaseEpoch, []store.NewFrame{{Kind: store.FrameText, Data: []byte(s)}}); err != nil {
			t.Fatal(err)
		}
	}
	write("first\n")
	done := make(chan result, 1)
	go func() { done <- runWeft(t, "task", res[0].ID, "--stream", "--database", path) }()
	write("second")
	if _, err := st.Finish(ctx, []store.Outcome{{TaskID: c[0].ID, Epoch: c[0].LeaseEpoch, State: store.StateCancelled, Event: store.EventCancelled}}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		failsWith(t, r, exitTaskCancelled, "was cancelled")
		if r.stdout != "first\nsecond\n" {
			t.Fatalf("stdout = %q, want both frames and a closing newline", r.stdout)
		}
	case <-time.After(time.Minute):
		t.Fatal("--stream did not end within a minute of the task's end")
	}
	failsWith(t, runWeft(t, "task", res[0].ID, "--stream", "--monitor", "--database", path), exitUsage, "--stream")
	failsWith(t, runWeft(t, "task", "01a2091c-0000-7000-8000-000000000001", "--stream", "--database", path), exitError, "not found")
}
