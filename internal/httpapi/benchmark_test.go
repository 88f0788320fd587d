package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// BenchmarkEnqueueHTTP is one task per POST /v1/tasks from 16 concurrent
// clients over real HTTP into a SQLite file (synchronous=FULL).
func BenchmarkEnqueueHTTP(b *testing.B) {
	a := newTestAPI(b, Config{})
	body := []byte(`{"kind": "bench", "args": {"n": 1}}`)
	const clients = 16
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := (b.N + clients - 1) / clients
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				resp, err := a.srv.Client().Post(a.srv.URL+"/v1/tasks", "application/json", bytes.NewReader(body))
				if err != nil || resp.StatusCode != http.StatusCreated {
					b.Errorf("enqueue: %v %v", err, resp)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*clients)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkEnqueueBatchHTTP is batches of 1,000 tasks per request.
func BenchmarkEnqueueBatchHTTP(b *testing.B) {
	a := newTestAPI(b, Config{})
	var sb strings.Builder
	sb.WriteString(`{"tasks": [`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"kind": "bench", "args": {"n": %d}}`, i)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		resp, err := a.srv.Client().Post(a.srv.URL+"/v1/tasks", "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusCreated {
			b.Fatalf("enqueue: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	b.ReportMetric(float64(b.N*1000)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkRemoteWorkers drains tasks through the remote-worker protocol:
// 8 workers claim up to 10 tasks per request and complete each one with a
// request of its own.
func BenchmarkRemoteWorkers(b *testing.B) {
	benchRemoteWorkers(b, 10, func(a *testAPI, claimed []claimedToken) {
		for _, t := range claimed {
			a.must(b, 200, "POST", "/v1/tasks/"+t.ID+"/complete", map[string]any{"lease_token": t.LeaseToken}, nil)
		}
	})
}

// BenchmarkRemoteWorkersBatch is BenchmarkRemoteWorkers with claims of up
// to 100 tasks, all completed with one POST /v1/outcomes.
func BenchmarkRemoteWorkersBatch(b *testing.B) {
	benchRemoteWorkers(b, 100, func(a *testAPI, claimed []claimedToken) {
		in := make([]api.OutcomeInput, len(claimed))
		for i, t := range claimed {
			in[i] = api.OutcomeInput{ID: t.ID, LeaseToken: t.LeaseToken}
		}
		var resp api.OutcomesResponse
		a.must(b, 200, "POST", "/v1/outcomes", api.OutcomesRequest{Outcomes: in}, &resp)
		for _, o := range resp.Outcomes {
			if o.State != "completed" {
				b.Errorf("outcome %+v (error %+v), want completed", o, o.Error)
			}
		}
	})
}

// claimedToken is what the benchmarks read of a claimed task.
type claimedToken struct {
	ID         string `json:"id"`
	LeaseToken string `json:"lease_token"`
}

// benchRemoteWorkers enqueues b.N tasks, then drains them with 8 workers
// that claim up to max tasks per request and report them with finish.
func benchRemoteWorkers(b *testing.B, max int, finish func(*testAPI, []claimedToken)) {
	a := newTestAPI(b, Config{})
	for done := 0; done < b.N; done += 1000 {
		n := min(1000, b.N-done)
		var sb strings.Builder
		sb.WriteString(`{"tasks": [`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`{"kind": "bench"}`)
		}
		sb.WriteString(`]}`)
		a.must(b, 201, "POST", "/v1/tasks", sb.String(), nil)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for {
				var resp struct {
					Tasks []claimedToken `json:"tasks"`
				}
				a.must(b, 200, "POST", "/v1/claims", map[string]any{"worker_id": fmt.Sprint("w", w), "max": max}, &resp)
				if len(resp.Tasks) == 0 {
					return
				}
				finish(a, resp.Tasks)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}
