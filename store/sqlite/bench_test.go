package sqlite_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

func benchTasks() int {
	if n, err := strconv.Atoi(os.Getenv("WEFT_BENCH_TASKS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkClaimFinish drives the store alone — claim 1,000, complete
// 1,000 — with no engine: the ceiling the engine's burn-down works under.
func BenchmarkClaimFinish(b *testing.B) {
	n := benchTasks()
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "raw.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		batch := make([]store.NewTask, 1000)
		for done := 0; done < n; done += len(batch) {
			for j := range batch {
				batch[j] = store.NewTask{Kind: "noop", Args: json.RawMessage(`{"n":1}`)}
			}
			if _, err := st.Enqueue(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		for done := 0; done < n; {
			claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "bench", LeaseTTL: time.Minute,
				Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: 1000}}})
			if err != nil {
				b.Fatal(err)
			}
			outcomes := make([]store.Outcome, len(claimed))
			for j, t := range claimed {
				outcomes[j] = store.Outcome{TaskID: t.ID, Epoch: t.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}
			}
			if _, err := st.Finish(ctx, outcomes); err != nil {
				b.Fatal(err)
			}
			done += len(claimed)
		}
		total += time.Since(start)
		st.Close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
}
