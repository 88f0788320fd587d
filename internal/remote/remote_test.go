package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/store"
)

// fakeServer answers claims with n tasks, t0, t1, ..., and reports of
// them, batched or (when noBatch, as a server that predates the batch
// route) one by one, counting the outcomes it accepted.
type fakeServer struct {
	n       int
	noBatch bool

	mu sync.Mutex
	// fail holds the status to answer the next request that reports a
	// task, whole; refuse holds the error code to answer for a task
	// within a batch.
	fail     map[string]int
	refuse   map[string]string
	accepted map[string]int
	batches  []int // the sizes of the batch reports received
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answerErr := func(status int, code string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(api.Error{Error: api.ErrorBody{Code: code, Message: "no"}})
	}
	switch {
	case r.URL.Path == "/v1/claims":
		var resp api.ClaimResponse
		for i := range f.n {
			id := fmt.Sprint("t", i)
			resp.Tasks = append(resp.Tasks, api.ClaimedTask{Task: api.Task{ID: id, Kind: "k", Queue: "q", Attempt: 1, MaxAttempts: 3}, LeaseToken: "tok-" + id})
		}
		_ = json.NewEncoder(w).Encode(resp)
	case r.URL.Path == "/v1/outcomes" && f.noBatch:
		answerErr(http.StatusNotFound, api.CodeNotFound)
	case r.URL.Path == "/v1/outcomes":
		var req api.OutcomesRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			answerErr(http.StatusBadRequest, api.CodeBadRequest)
			return
		}
		f.batches = append(f.batches, len(req.Outcomes))
		for _, o := range req.Outcomes {
			if status := f.fail[o.ID]; status != 0 {
				delete(f.fail, o.ID)
				answerErr(status, api.CodeForStatus(status))
				return
			}
		}
		var resp api.OutcomesResponse
		for _, o := range req.Outcomes {
			res := api.OutcomeResult{ID: o.ID, State: "completed"}
			switch {
			case f.refuse[o.ID] != "":
				res = api.OutcomeResult{ID: o.ID, Error: &api.ErrorBody{Code: f.refuse[o.ID], Message: "no"}}
			case o.LeaseToken != "tok-"+o.ID:
				res = api.OutcomeResult{ID: o.ID, Error: &api.ErrorBody{Code: api.CodeBadRequest, Message: "wrong token"}}
			case o.Error != nil:
				res.State = "pending"
				f.accepted[o.ID]++
			default:
				f.accepted[o.ID]++
			}
			resp.Outcomes = append(resp.Outcomes, res)
		}
		_ = json.NewEncoder(w).Encode(resp)
	default:
		id := strings.Split(r.URL.Path, "/")[3]
		if status := f.fail[id]; status != 0 {
			delete(f.fail, id)
			answerErr(status, api.CodeForStatus(status))
			return
		}
		f.accepted[id]++
		_ = json.NewEncoder(w).Encode(api.Outcome{ID: id, State: "pending"})
	}
}

// claimAll claims the fake server's tasks.
func claimAll(t *testing.T, f *fakeServer) (*Source, []*store.Task) {
	t.Helper()
	if f.accepted == nil {
		f.accepted = map[string]int{}
	}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	s := New(Config{Client: apiclient.New(hs.URL, "", nil), Logger: slog.New(slog.DiscardHandler)})
	tasks, err := s.Claim(context.Background(), store.ClaimRequest{Owner: "w", Queues: []store.QueueClaim{{Queue: "q", Limit: f.n}}, LeaseTTL: time.Minute})
	if err != nil || len(tasks) != f.n {
		t.Fatalf("claim: %d tasks, %v", len(tasks), err)
	}
	return s, tasks
}

// failed is the engine's batch of the tasks, each failed.
func failed(tasks []*store.Task) []engine.Finished {
	batch := make([]engine.Finished, len(tasks))
	for i, tk := range tasks {
		batch[i] = engine.Finished{Task: tk, Verdict: engine.Verdict{Action: engine.Retry, Err: errors.New("boom")}}
	}
	return batch
}

// Finish reports the attempts in batch requests of at most
// api.MaxOutcomes. When one request fails, Finish fails, and the engine's
// next call with the same attempts reports only those not yet reported.
func TestFinishAgainReportsOnlyTheRest(t *testing.T) {
	last := fmt.Sprint("t", api.MaxOutcomes)
	f := &fakeServer{n: api.MaxOutcomes + 1, fail: map[string]int{last: http.StatusServiceUnavailable}}
	s, tasks := claimAll(t, f)
	batch := failed(tasks)
	if _, err := s.Finish(context.Background(), batch); !errors.Is(err, apiclient.ErrUnavailable) {
		t.Fatalf("first Finish: %v, want the 503", err)
	}
	res, err := s.Finish(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.State != store.StatePending {
			t.Fatalf("result %d = %+v, want recorded pending", i, r)
		}
	}
	if !slices.Equal(f.batches, []int{api.MaxOutcomes, 1, 1}) {
		t.Errorf("batch sizes %v, want %d, then the failed 1 and its repetition", f.batches, api.MaxOutcomes)
	}
	for _, tk := range tasks {
		if f.accepted[tk.ID] != 1 {
			t.Fatalf("%s reported %d times, want once", tk.ID, f.accepted[tk.ID])
		}
	}
	// All are finished: a third report would be a second outcome.
	res, err = s.Finish(context.Background(), batch)
	if err != nil || !errors.Is(res[0].Err, store.ErrLeaseLost) || len(f.batches) != 3 {
		t.Errorf("a repeated report: %v, %d requests; want refused as lease lost without a request", err, len(f.batches))
	}
}

// The server's refusal of one outcome is that outcome's result; a lost
// lease and a task that no longer exists read as store.ErrLeaseLost.
func TestFinishRefusals(t *testing.T) {
	f := &fakeServer{n: 4, refuse: map[string]string{"t0": api.CodeLeaseLost, "t1": api.CodeNotFound, "t2": api.CodeInvalid}}
	s, tasks := claimAll(t, f)
	batch := failed(tasks)
	batch[3].Verdict = engine.Verdict{Action: engine.Complete, Result: json.RawMessage(`{"ok":true}`)}
	res, err := s.Finish(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, store.ErrLeaseLost) || !errors.Is(res[1].Err, store.ErrLeaseLost) {
		t.Errorf("lost lease and missing task: %v, %v; want store.ErrLeaseLost", res[0].Err, res[1].Err)
	}
	if !errors.Is(res[2].Err, apiclient.ErrInvalid) || errors.Is(res[2].Err, store.ErrLeaseLost) {
		t.Errorf("an invalid outcome: %v", res[2].Err)
	}
	if res[3].Err != nil || res[3].State != store.StateCompleted || len(f.batches) != 1 {
		t.Errorf("the completion: %+v after %d requests", res[3], len(f.batches))
	}

	// A request refused whole refuses each of its outcomes, as a single
	// report of each would be.
	f = &fakeServer{n: 2, fail: map[string]int{"t0": http.StatusRequestEntityTooLarge}}
	s, tasks = claimAll(t, f)
	res, err = s.Finish(context.Background(), failed(tasks))
	if err != nil || len(res) != 2 || res[0].Err == nil || res[1].Err == nil {
		t.Errorf("a refused request: %+v, %v; want each outcome refused", res, err)
	}
}

// A server without the batch route gets one complete or fail per attempt,
// from the first 404 on.
func TestFinishOneByOneToAnOlderServer(t *testing.T) {
	f := &fakeServer{n: 2, noBatch: true, fail: map[string]int{"t1": http.StatusServiceUnavailable}}
	s, tasks := claimAll(t, f)
	batch := failed(tasks)
	if _, err := s.Finish(context.Background(), batch); !errors.Is(err, apiclient.ErrUnavailable) {
		t.Fatalf("first Finish: %v, want the 503", err)
	}
	res, err := s.Finish(context.Background(), batch)
	if err != nil || res[0].State != store.StatePending || res[1].State != store.StatePending {
		t.Fatalf("second Finish: %+v, %v", res, err)
	}
	if f.accepted["t0"] != 1 || f.accepted["t1"] != 1 || !s.oneByOne.Load() {
		t.Errorf("reports accepted %v, want one each, one by one", f.accepted)
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
		{"rate limited", engine.Finished{Verdict: engine.Verdict{Action: engine.Snooze, Err: boom, Delay: 30 * time.Second, RateLimited: true}}, api.FailRequest{Snooze: "30s", RateLimited: true}},
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
