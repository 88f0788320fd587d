package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// The fuzz targets hold every JSON decoder of the API to two promises: bad
// input never yields a 500 (or a panic), and a refused request writes
// nothing. `go test` runs their seed corpus; `go test -fuzz FuzzX` explores.

// serve sends one request straight to the handler.
func serve(a *testAPI, method, target string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.api.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails on a 500 and on an error body that is not the API's
// error shape.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, input []byte) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("input %q: status %d: %s", input, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("input %q: error body %q is not an API error", input, rec.Body)
		}
	}
}

// snapshot is what a request could have written: the exact per-queue
// counts (every enqueue, claim and outcome moves them) and, for the tasks
// named, the whole row and the number of events and of output frames
// (heartbeats, progress and frames change only those). It stays cheap as the fuzzer's database grows.
func snapshot(t *testing.T, st store.Store, ids ...string) string {
	t.Helper()
	ctx := context.Background()
	stats, err := st.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// How long a queue's oldest ready task has waited changes with the
	// clock alone (a retried task comes due): it is not a write.
	for i := range stats {
		stats[i].OldestReadyAt = time.Time{}
	}
	var b strings.Builder
	enc, _ := json.Marshal(stats)
	b.Write(enc)
	for _, id := range ids {
		task, err := st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := st.Events(ctx, id, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		frames, _, err := st.Frames(ctx, id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := json.Marshal(struct {
			T         *store.Task
			N, Frames int
		}{task, len(evs), len(frames)})
		b.Write(enc)
	}
	return b.String()
}

var enqueueSeeds = []string{
	`{"kind": "email", "args": {"to": "a@example.com"}}`,
	`{"kind": "a", "queue": "q", "priority": -5, "delay": "1m30s", "max_attempts": 3, "timeout": "1s", "unique_key": "k", "metadata": {"x": 1}}`,
	`{"kind": "a", "run_at": "2030-01-02T03:04:05Z"}`,
	`{"tasks": [{"kind": "a"}, {"kind": "b", "args": [1, 2, 3]}]}`,
	`{"tasks": [{"kind": "a"}, {"kind": ""}]}`,
	`{"tasks": {}}`,
	`{"tasks": [null]}`,
	`{"kind": "a", "args": ` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	`{"kind": "a", "args": "\u0000"}`,
	`{"kind": "a'); DELETE FROM weft_tasks; --"}`,
	`{"kind": "a", "queue": "../../etc/passwd"}`,
	`{"kind": "a", "priority": 1e400}`,
	`{"kind": "a", "max_attempts": 99999999999999999999}`,
	`{"kind": "a", "delay": "9999999999h"}`,
	`{"kind": "a", "run_at": "0000-01-01T00:00:00Z"}`,
	`{"kind": "a"}{"kind": "b"}`,
	`{"kind": "a", "kind": "b"}`,
	"\xff\xfe",
	`null`, `[]`, `""`, `{`, ``,
}

func FuzzEnqueue(f *testing.F) {
	for _, s := range enqueueSeeds {
		f.Add([]byte(s))
	}
	a := newTestAPI(f, Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		before := snapshot(t, a.st)
		rec := serve(a, "POST", "/v1/tasks", body)
		checkAnswer(t, rec, body)
		if rec.Code >= 400 && snapshot(t, a.st) != before {
			t.Fatalf("input %q was refused (%d) but wrote", body, rec.Code)
		}
	})
}

func FuzzClaim(f *testing.F) {
	for _, s := range []string{
		`{"worker_id": "w"}`,
		`{"worker_id": "w", "queues": ["default", "b"], "kinds": ["k"], "max": 5, "wait": "0s", "lease_ttl": "10s"}`,
		`{"worker_id": "", "max": -1}`,
		`{"worker_id": "w", "queues": [1]}`,
		`{"worker_id": "w", "wait": "1h"}`,
		`{"worker_id": "\u0000\u202e"}`,
		`{"worker_id": "w", "extra": true}`,
		`[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	a := newTestAPI(f, Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		// A task that a valid claim may take; waits are cut short so the
		// fuzzer is not held by long polls.
		serve(a, "POST", "/v1/tasks", []byte(`{"kind": "k"}`))
		var req api.ClaimRequest
		if json.Unmarshal(body, &req) == nil && req.Wait != "" {
			return
		}
		before := snapshot(t, a.st)
		rec := serve(a, "POST", "/v1/claims", body)
		checkAnswer(t, rec, body)
		if rec.Code >= 400 && snapshot(t, a.st) != before {
			t.Fatalf("claim %q was refused (%d) but wrote", body, rec.Code)
		}
	})
}

// FuzzWorkerWrites drives heartbeat, progress, complete, fail and stream
// with arbitrary bodies, where the string TOKEN stands for a valid lease
// token.
func FuzzWorkerWrites(f *testing.F) {
	for _, s := range []struct {
		op   uint8
		body string
	}{
		{0, `{"lease_token": "TOKEN", "lease_ttl": "1m"}`},
		{0, `{"lease_token": "TOKEN", "lease_ttl": "1ns"}`},
		{1, `{"lease_token": "TOKEN", "progress": {"pct": 5}}`},
		{1, `{"lease_token": "TOKEN", "progress": "` + strings.Repeat("x", 1<<20) + `"}`},
		{2, `{"lease_token": "TOKEN", "result": [1]}`},
		{2, `{"lease_token": "bm9wZToxMjM", "result": 1}`},
		{3, `{"lease_token": "TOKEN", "error": "boom", "retry_in": "5s"}`},
		{3, `{"lease_token": "TOKEN", "error": "boom", "snooze": "5s", "permanent": true}`},
		{3, `{"lease_token": "TOKEN", "error": ""}`},
		{3, `{"lease_token": 7}`},
		{2, `{"lease_token": "TOKEN"} x`},
		{4, `{"lease_token": "TOKEN", "frames": [{"kind": "text", "data": "hi"}, {"kind": "json", "data": {"a": 1}}]}`},
		{4, `{"lease_token": "TOKEN", "frames": [{"seq": 1, "kind": "text", "data": "hi"}, {"seq": 3, "kind": "text", "data": "x"}]}`},
		{4, `{"lease_token": "TOKEN", "frames": [{"kind": "text", "data": "ok"}, {"kind": "text", "data": 5}]}`},
		{4, `{"lease_token": "TOKEN", "frames": [{"kind": "json", "data": "` + strings.Repeat("y", 1<<20) + `"}]}`},
		{4, `{"lease_token": "TOKEN", "frames": [{"kind": "text", "data": "\ud800"}]}`},
	} {
		f.Add(s.op, []byte(s.body))
	}
	a := newTestAPI(f, Config{})
	ops := []string{"heartbeat", "progress", "complete", "fail", "stream"}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		c := enqueueAndClaim(t, a)
		body = bytes.ReplaceAll(body, []byte("TOKEN"), []byte(c.LeaseToken))
		before := snapshot(t, a.st, c.ID)
		rec := serve(a, "POST", "/v1/tasks/"+c.ID+"/"+ops[int(op)%len(ops)], body)
		checkAnswer(t, rec, body)
		if rec.Code >= 400 && snapshot(t, a.st, c.ID) != before {
			t.Fatalf("%s %q was refused (%d) but wrote", ops[int(op)%len(ops)], body, rec.Code)
		}
		// Leave nothing running for the next iteration's claim.
		serve(a, "POST", "/v1/tasks/"+c.ID+"/complete", []byte(`{"lease_token": "`+c.LeaseToken+`"}`))
	})
}

// enqueueAndClaim enqueues a task and claims it as a remote worker would.
func enqueueAndClaim(t *testing.T, a *testAPI) api.ClaimedTask {
	t.Helper()
	serve(a, "POST", "/v1/tasks", []byte(`{"kind": "k", "max_attempts": 100}`))
	rec := serve(a, "POST", "/v1/claims", []byte(`{"worker_id": "fuzz"}`))
	var claimed api.ClaimResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &claimed); err != nil || len(claimed.Tasks) != 1 {
		t.Fatalf("setup claim: %d %s", rec.Code, rec.Body)
	}
	return claimed.Tasks[0]
}

// FuzzOutcomes drives batch reports with arbitrary bodies, where ID and
// TOKEN stand for a claimed task's id and lease token. Besides the general
// promises, a report whose every entry was refused writes nothing either.
func FuzzOutcomes(f *testing.F) {
	for _, s := range []string{
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "result": {"n": 1}}]}`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "error": "boom", "retry_in": "5s"}]}`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "error": "boom", "snooze": "1s", "cancel": true}, {"id": "ID", "lease_token": "TOKEN"}]}`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "error": "boom"}, {"id": "ID", "lease_token": "TOKEN"}]}`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "result": 1, "error": ""}]}`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "permanent": true}]}`,
		`{"outcomes": [null, 7, "x", [], {}, {"id": 7}, {"id": "ID", "lease_token": "bm9wZToxMjM"}]}`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN", "result": "` + strings.Repeat("x", 1<<20) + `"}]}`,
		`{"outcomes": []}`, `{"outcomes": null}`, `{"outcomes": {}}`, `{}`, `[]`,
		`{"outcomes": [{"id": "ID", "lease_token": "TOKEN"}]} x`,
	} {
		f.Add([]byte(s))
	}
	a := newTestAPI(f, Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		c := enqueueAndClaim(t, a)
		body = bytes.ReplaceAll(body, []byte("TOKEN"), []byte(c.LeaseToken))
		body = bytes.ReplaceAll(body, []byte("ID"), []byte(c.ID))
		before := snapshot(t, a.st, c.ID)
		rec := serve(a, "POST", "/v1/outcomes", body)
		checkAnswer(t, rec, body)
		refused := rec.Code >= 400
		if rec.Code == http.StatusOK {
			var resp api.OutcomesResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Outcomes) == 0 {
				t.Fatalf("input %q: answer %s", body, rec.Body)
			}
			refused = true
			for _, o := range resp.Outcomes {
				if (o.Error == nil) == (o.State == "") || o.Error != nil && (o.Error.Code == "" || o.Error.Message == "" || o.Error.Field == "") {
					t.Fatalf("input %q: result %+v (error %+v) is neither a state nor an error", body, o, o.Error)
				}
				refused = refused && o.Error != nil
			}
		}
		if refused && snapshot(t, a.st, c.ID) != before {
			t.Fatalf("report %q was refused (%d %s) but wrote", body, rec.Code, rec.Body)
		}
		// Leave nothing running for the next iteration's claim.
		serve(a, "POST", "/v1/tasks/"+c.ID+"/complete", []byte(`{"lease_token": "`+c.LeaseToken+`"}`))
	})
}

// FuzzQuery covers the query-string decoders: listing, events, output
// streams and results.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"queue=a&kind=b&state=pending,failed&limit=10&cursor=x",
		"state=%00", "limit=1e9", "limit=-1", "cursor=" + strings.Repeat("z", 100), "after=5&follow=false",
		"after=abc", "follow=1", "queue=%27%3B--", "a=b", "%zz",
	} {
		f.Add(s)
	}
	a := newTestAPI(f, Config{})
	var e api.Enqueued
	rec := serve(a, "POST", "/v1/tasks", []byte(`{"kind": "k"}`))
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string) {
		if strings.Contains(query, "follow") || strings.Contains(query, "wait") {
			// A followed stream of a pending task never ends on its
			// own, and a wait for its result lasts as long as it asks.
			return
		}
		for _, path := range []string{"/v1/tasks", "/v1/tasks/" + e.ID + "/events", "/v1/tasks/" + e.ID + "/stream", "/v1/tasks/" + e.ID + "/result"} {
			req, err := http.NewRequest("GET", path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.RawQuery = query
			rec := httptest.NewRecorder()
			a.api.ServeHTTP(rec, req)
			checkAnswer(t, rec, []byte(query))
		}
	})
}
