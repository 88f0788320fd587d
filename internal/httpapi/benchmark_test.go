package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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
// 8 workers claim up to 10 tasks per request and complete each one.
func BenchmarkRemoteWorkers(b *testing.B) {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var resp struct {
					Tasks []struct {
						ID         string `json:"id"`
						LeaseToken string `json:"lease_token"`
					} `json:"tasks"`
				}
				a.must(b, 200, "POST", "/v1/claims", map[string]any{"worker_id": fmt.Sprint("w", w), "max": 10}, &resp)
				if len(resp.Tasks) == 0 {
					return
				}
				for _, t := range resp.Tasks {
					a.must(b, 200, "POST", "/v1/tasks/"+t.ID+"/complete", map[string]any{"lease_token": t.LeaseToken}, nil)
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}
