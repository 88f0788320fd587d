package remote

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// fakeServer answers claims with the tasks "a" and "b", and reports with
// what fail says for the task, counting the reports it accepted.
type fakeServer struct {
	mu       sync.Mutex
	fail     map[string]int // task id → status to answer its next report
	accepted map[string]int
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/claims" {
		var resp api.ClaimResponse
		for _, id := range []string{"a", "b"} {
			resp.Tasks = append(resp.Tasks, api.ClaimedTask{Task: api.Task{ID: id, Kind: "k", Queue: "q", Attempt: 1, MaxAttempts: 3}, LeaseToken: "tok-" + id})
		}
		_ = json.NewEncoder(w).Encode(resp)
		return
	}
	id := strings.Split(r.URL.Path, "/")[3]
	f.mu.Lock()
	defer f.mu.Unlock()
	if status := f.fail[id]; status != 0 {
		delete(f.fail, id)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(api.Error{Error: api.ErrorBody{Code: api.CodeForStatus(status), Message: "no"}})
		return
	}
	f.accepted[id]++
	_ = json.NewEncoder(w).Encode(api.Outcome{ID: id, State: "pending"})
}

func claimAB(t *testing.T, f *fakeServer) (*Source, []*store.Task) {
	t.Helper()
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	s := New(Config{Client: apiclient.New(hs.URL, "", nil), Logger: slog.New(slog.DiscardHandler)})
	tasks, err := s.Claim(context.Background(), store.ClaimRequest{Owner: "w", Queues: []store.QueueClaim{{Queue: "q", Limit: 2}}, LeaseTTL: time.Minute})
	if err != nil || len(tasks) != 2 {
		t.Fatalf("claim: %d tasks, %v", len(tasks), err)
	}
	return s, tasks
}

// A Finish that could report only some attempts fails, and the engine's
// next call with the same attempts reports only the others.
func TestFinishAgainReportsOnlyTheRest(t *testing.T) {
	f := &fakeServer{fail: map[string]int{"b": http.StatusServiceUnavailable}, accepted: map[string]int{}}
	s, tasks := claimAB(t, f)
	batch := make([]engine.Finished, len(tasks))
	for i, tk := range tasks {
		batch[i] = engine.Finished{Task: tk, Verdict: engine.Verdict{Action: engine.Retry, Err: errors.New("boom")}}
	}
	if _, err := s.Finish(context.Background(), batch); !errors.Is(err, apiclient.ErrUnavailable) {
		t.Fatalf("first Finish: %v, want the 503", err)
	}
	res, err := s.Finish(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.State != store.StatePending {
			t.Errorf("result %d = %+v, want recorded pending", i, r)
		}
	}
	if f.accepted["a"] != 1 || f.accepted["b"] != 1 {
		t.Errorf("reports accepted %v, want one each", f.accepted)
	}
	// Both are finished: a third report would be a second outcome.
	res, err = s.Finish(context.Background(), batch)
	if err != nil || !errors.Is(res[0].Err, store.ErrLeaseLost) {
		t.Errorf("a repeated report: %+v, %v; want refused as lease lost", res, err)
	}
}

// A verdict becomes the fail request with which the server decides the
// same outcome: a retry names a delay only when the handler chose one.
func TestFailRequest(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name string
		f    engine.Finished
		want api.FailRequest
	}{
		{"retry", engine.Finished{Verdict: engine.Verdict{Action: engine.Retry, Err: boom}}, api.FailRequest{}},
		{"retry in", engine.Finished{Verdict: engine.Verdict{Action: engine.Retry, Err: boom, Delay: time.Minute}}, api.FailRequest{RetryIn: "1m0s"}},
		{"snooze", engine.Finished{Verdict: engine.Verdict{Action: engine.Snooze, Err: boom, Delay: time.Hour}}, api.FailRequest{Snooze: "1h0m0s"}},
		{"permanent", engine.Finished{Verdict: engine.Verdict{Action: engine.Fail, Err: boom}}, api.FailRequest{Permanent: true}},
		{"cancel", engine.Finished{Verdict: engine.Verdict{Action: engine.Cancel, Err: boom}}, api.FailRequest{Cancel: true}},
		{"cancel requested", engine.Finished{Verdict: engine.Verdict{Action: engine.Retry, Err: boom}, Cause: engine.ErrCancelRequested}, api.FailRequest{Cancel: true}},
		{"shutdown", engine.Finished{Verdict: engine.Verdict{Action: engine.Retry, Err: boom}, Cause: engine.ErrShutdown}, api.FailRequest{Snooze: "0s"}},
		{"permanent at shutdown", engine.Finished{Verdict: engine.Verdict{Action: engine.Fail, Err: boom}, Cause: engine.ErrShutdown}, api.FailRequest{Permanent: true}},
		{"far future", engine.Finished{Verdict: engine.Verdict{Action: engine.Snooze, Err: boom, Delay: 1 << 62}}, api.FailRequest{Snooze: maxDelay.String()}},
	}
	for _, tc := range cases {
		got := failRequest("tok", &tc.f)
		tc.want.LeaseToken, tc.want.Error = "tok", "boom"
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	panicked := failRequest("tok", &engine.Finished{Verdict: engine.Verdict{Action: engine.Retry, Err: errors.New("panic: x"), Stack: "goroutine 7"}})
	if panicked.Error != "panic: x\n\ngoroutine 7" {
		t.Errorf("a panic's error = %q, want the stack after the message", panicked.Error)
	}
}
