package postgres

import (
	"context"
	"testing"

	"github.com/weftworks/weft/internal/pgtest"
)

// A poll-only store (for transaction poolers) runs no listener: its done
// channel, which the listener closes as it exits, is closed at once.
func TestPollOnlyStartsNoListener(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	for _, pollOnly := range []bool{true, false} {
		st, err := Open(ctx, dsn, &Options{PollOnly: pollOnly})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-st.done:
			if !pollOnly {
				t.Error("a store that listens has no listener running")
			}
		default:
			if pollOnly {
				t.Error("a poll-only store runs a listener")
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
