package httpapi

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// claimOne claims at most max tasks of queue for worker with labels, at
// once.
func (a *testAPI) claimOne(t *testing.T, worker string, max int, labels map[string]string) []api.ClaimedTask {
	t.Helper()
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", map[string]any{"worker_id": worker, "max": max, "labels": labels}, &resp)
	return resp.Tasks
}

func (a *testAPI) enqueueTask(t *testing.T, task map[string]any) string {
	t.Helper()
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", task, &e)
	return e.ID
}

func (a *testAPI) task(t *testing.T, id string) api.Task {
	t.Helper()
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+id, nil, &task)
	return task
}

func TestLimitsCRUD(t *testing.T) {
	a := newTestAPI(t, Config{})
	var l api.Limit
	a.must(t, 200, "PUT", "/v1/limits/per-customer", `{"concurrency":3,"overrides":{"acme":10},"on_limit":"queue"}`, &l)
	if l.Name != "per-customer" || l.Concurrency != 3 || l.Overrides["acme"] != 10 || l.OnLimit != "queue" || l.CreatedAt.IsZero() {
		t.Fatalf("PUT answered %+v", l)
	}
	a.must(t, 200, "PUT", "/v1/limits/openai", `{"rate":500,"period":"1m","burst":50}`, &l)
	if l.Rate != 500 || l.Period != "1m0s" || l.Burst != 50 || l.OnLimit != "queue" {
		t.Fatalf("PUT of a rate answered %+v", l)
	}
	// Replaced whole: the overrides are gone.
	var replaced api.Limit
	a.must(t, 200, "PUT", "/v1/limits/per-customer", `{"concurrency":2}`, &replaced)
	if replaced.Concurrency != 2 || replaced.Overrides != nil {
		t.Fatalf("replaced: %+v", replaced)
	}
	var list api.LimitList
	a.must(t, 200, "GET", "/v1/limits", nil, &list)
	if len(list.Limits) != 2 || list.Limits[0].Name != "openai" || list.Limits[1].Name != "per-customer" {
		t.Fatalf("GET /v1/limits = %+v", list)
	}
	var (
		one     api.LimitDetail
		deleted api.Limit
	)
	a.must(t, 200, "GET", "/v1/limits/openai?limit=5", nil, &one)
	if one.Name != "openai" || one.Keys == nil || len(one.Keys) != 0 || one.NextCursor != "" {
		t.Fatalf("GET one = %+v", one)
	}
	a.must(t, 200, "DELETE", "/v1/limits/openai", nil, &deleted)
	if deleted.Name != "openai" || deleted.Rate != 500 {
		t.Fatalf("DELETE answered %+v", deleted)
	}
	a.wantError(t, 404, api.CodeLimitNotFound, "", "GET", "/v1/limits/openai", nil)
	a.wantError(t, 404, api.CodeLimitNotFound, "", "DELETE", "/v1/limits/openai", nil)
	a.wantError(t, 400, api.CodeBadRequest, "name", "GET", "/v1/limits/9lives", nil)
	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", "/v1/limits/per-customer?limit=0", nil)
	a.wantError(t, 400, api.CodeBadRequest, "limit", "GET", "/v1/limits/per-customer?limit=1001", nil)

	for _, tc := range []struct {
		body, field string
		status      int
	}{
		{`{"concurrency":3,"name":"x"}`, "name", 400},
		{`{"concurrency":"3"}`, "concurrency", 400},
		{`{"concurrency":-1}`, "concurrency", 422},
		{`{}`, "concurrency", 422},
		{`{"concurrency":1,"overrides":{"acme":-2}}`, "overrides", 422},
		{`{"rate":10}`, "period", 422},
		{`{"rate":10,"period":"soon"}`, "period", 422},
		{`{"concurrency":1,"period":"1m"}`, "period", 422},
		{`{"concurrency":1,"burst":5}`, "burst", 422},
		{`{"rate":-1,"period":"1s"}`, "rate", 422},
		{`{"concurrency":1,"on_limit":"drop"}`, "on_limit", 422},
		{`{"rate":1,"period":"1s","on_limit":"reject"}`, "on_limit", 422},
	} {
		code := api.CodeInvalid
		if tc.status == 400 {
			code = api.CodeBadRequest
		}
		a.wantError(t, tc.status, code, tc.field, "PUT", "/v1/limits/bad", tc.body)
	}
	a.wantError(t, 404, api.CodeLimitNotFound, "", "GET", "/v1/limits/bad", nil)
}

func TestTaskLimitFields(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 200, "PUT", "/v1/limits/per-customer", `{"concurrency":1}`, nil)
	id := a.enqueueTask(t, map[string]any{"kind": "report", "limits": map[string]string{"per-customer": "acme"}, "cost": 2,
		"requires": map[string]string{"gpu": "true", "mem": ">=64"}, "fairness_key": "acme"})
	task := a.task(t, id)
	if !reflect.DeepEqual(task.Limits, map[string]string{"per-customer": "acme"}) || task.Cost != 2 ||
		!reflect.DeepEqual(task.Requires, map[string]string{"gpu": "true", "mem": ">=64"}) || task.FairnessKey != "acme" {
		t.Fatalf("task = %+v", task)
	}
	// Requirements no worker meets: nothing claims it, and it says why.
	if task.BlockedReason == nil || task.BlockedReason.Reason != "no_matching_worker" {
		t.Fatalf("blocked_reason = %+v, want no_matching_worker", task.BlockedReason)
	}
	// Listings carry the fields too, but no computed reason.
	var page api.TaskList
	a.must(t, 200, "GET", "/v1/tasks", nil, &page)
	if len(page.Tasks) != 1 || page.Tasks[0].FairnessKey != "acme" || page.Tasks[0].BlockedReason != nil {
		t.Fatalf("listed %+v", page.Tasks)
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"bad requirement", map[string]any{"kind": "k", "requires": map[string]string{"mem": ">=lots"}}, 422, api.CodeInvalid, "requires"},
		{"empty requirement", map[string]any{"kind": "k", "requires": map[string]string{"gpu": ""}}, 422, api.CodeInvalid, "requires"},
		{"bad label", map[string]any{"kind": "k", "requires": map[string]string{"9gpu": "true"}}, 422, api.CodeInvalid, "requires"},
		{"unknown limit", map[string]any{"kind": "k", "limits": map[string]string{"per-customr": "acme"}}, 422, api.CodeInvalid, "limits"},
		{"empty key", map[string]any{"kind": "k", "limits": map[string]string{"per-customer": ""}}, 422, api.CodeInvalid, "limits"},
		{"cost without limits", map[string]any{"kind": "k", "cost": 3}, 422, api.CodeInvalid, "cost"},
		{"limits not an object", `{"kind": "k", "limits": ["per-customer"]}`, 400, api.CodeBadRequest, "limits"},
		{"in a batch", map[string]any{"tasks": []any{map[string]any{"kind": "k"}, map[string]any{"kind": "k", "requires": map[string]string{"mem": "<=x"}}}}, 422, api.CodeInvalid, "tasks[1].requires"},
		{"unknown limit in a batch", map[string]any{"tasks": []any{map[string]any{"kind": "k"}, map[string]any{"kind": "k", "limits": map[string]string{"nope": "a"}}}}, 422, api.CodeInvalid, "tasks[1].limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.wantError(t, tc.status, tc.code, tc.field, "POST", "/v1/tasks", tc.body)
		})
	}
	if n := a.count(t); n != 1 {
		t.Fatalf("%d tasks, want the first one only", n)
	}
	// Flow members share the task decoder.
	a.wantError(t, 422, api.CodeInvalid, "tasks[0].requires", "POST", "/v1/flows", map[string]any{
		"tasks": []any{map[string]any{"key": "a", "kind": "k", "requires": map[string]string{"mem": ">=x"}}}})
}

// A limit at its cap: a reject limit refuses the enqueue (409 naming the
// limit and the key), a queue limit sets the task aside and says why.
func TestLimitAtItsCap(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 200, "PUT", "/v1/limits/exports", `{"concurrency":1,"on_limit":"reject"}`, nil)
	a.must(t, 200, "PUT", "/v1/limits/per-customer", `{"concurrency":1}`, nil)
	first := a.enqueueTask(t, map[string]any{"kind": "export", "limits": map[string]string{"exports": "acme", "per-customer": "acme"}})
	claimed := a.claimOne(t, "w1", 10, nil)
	if len(claimed) != 1 || claimed[0].ID != first || !reflect.DeepEqual(claimed[0].Limits, map[string]string{"exports": "acme", "per-customer": "acme"}) {
		t.Fatalf("claimed %+v", claimed)
	}
	e := a.wantError(t, 409, api.CodeLimitReached, "limits", "POST", "/v1/tasks", map[string]any{"kind": "export", "limits": map[string]string{"exports": "acme"}})
	if !strings.Contains(e.Message, `"exports"`) || !strings.Contains(e.Message, `"acme"`) {
		t.Fatalf("message %q does not name the limit and the key", e.Message)
	}
	e = a.wantError(t, 409, api.CodeLimitReached, "tasks[1].limits", "POST", "/v1/tasks", map[string]any{"tasks": []any{
		map[string]any{"kind": "export", "limits": map[string]string{"exports": "globex"}},
		map[string]any{"kind": "export", "limits": map[string]string{"exports": "acme"}},
	}})
	if n := a.count(t); n != 1 {
		t.Fatalf("%d tasks after refusals, want 1", n)
	}
	// Another key is not held back.
	a.enqueueTask(t, map[string]any{"kind": "export", "limits": map[string]string{"exports": "globex"}})

	// A queue limit sets the next acme task aside.
	waiting := a.enqueueTask(t, map[string]any{"kind": "report", "limits": map[string]string{"per-customer": "acme"}})
	got := a.claimOne(t, "w1", 10, nil)
	for _, c := range got {
		if c.ID == waiting {
			t.Fatalf("a task over its key's cap was claimed: %+v", got)
		}
	}
	task := a.task(t, waiting)
	b := task.BlockedReason
	if b == nil || b.Reason != "limit" || b.Limit != "per-customer" || b.Key != "acme" || b.Cap == nil || *b.Cap != 1 || b.InUse == nil || *b.InUse != 1 {
		t.Fatalf("blocked_reason = %+v", b)
	}
	var l api.LimitDetail
	a.must(t, 200, "GET", "/v1/limits/per-customer", nil, &l)
	if l.InUse != 1 || l.Waiting != 1 || len(l.Keys) != 1 || l.Keys[0] != (api.LimitKey{Key: "acme", InUse: 1, Cap: 1, Waiting: 1}) {
		t.Fatalf("limit = %+v", l)
	}
	// The completion frees the slot (its token says the task is limited),
	// and the task set aside runs next.
	var out api.Outcome
	a.must(t, 200, "POST", "/v1/tasks/"+first+"/complete", map[string]any{"lease_token": claimed[0].LeaseToken}, &out)
	got = a.claimOne(t, "w1", 10, nil)
	if len(got) != 1 || got[0].ID != waiting {
		t.Fatalf("after the completion, claimed %+v, want %s", got, waiting)
	}
}

func TestQueuePausedIsABlockedReason(t *testing.T) {
	a := newTestAPI(t, Config{})
	id := a.enqueueTask(t, map[string]any{"kind": "k", "queue": "mail"})
	if b := a.task(t, id).BlockedReason; b != nil {
		t.Fatalf("blocked_reason before the pause: %+v", b)
	}
	a.must(t, 200, "POST", "/v1/queues/mail/pause", nil, nil)
	if b := a.task(t, id).BlockedReason; b == nil || b.Reason != "queue_paused" {
		t.Fatalf("blocked_reason = %+v, want queue_paused", b)
	}
}

// A remote worker's labels route tasks to it, are recorded in the
// registry, and clear a task's no_matching_worker.
func TestClaimLabels(t *testing.T) {
	a := newTestAPI(t, Config{})
	gpu := a.enqueueTask(t, map[string]any{"kind": "train", "requires": map[string]string{"gpu": "true", "mem": ">=64"}})
	plain := a.enqueueTask(t, map[string]any{"kind": "train"})
	if got := a.claimOne(t, "cpu-1", 10, nil); len(got) != 1 || got[0].ID != plain {
		t.Fatalf("a worker without labels claimed %+v, want only %s", got, plain)
	}
	if got := a.claimOne(t, "small-gpu", 10, map[string]string{"gpu": "true", "mem": "32"}); len(got) != 0 {
		t.Fatalf("a worker with too little memory claimed %+v", got)
	}
	task := a.task(t, gpu)
	if b := task.BlockedReason; b == nil || b.Reason != "no_matching_worker" {
		t.Fatalf("blocked_reason = %+v, want no_matching_worker", b)
	}
	if !strings.Contains(task.Hint, "gpu=true, mem>=64") {
		t.Fatalf("hint = %q, want the requirements named", task.Hint)
	}
	var ws api.WorkerList
	a.must(t, 200, "GET", "/v1/workers", nil, &ws)
	labels := map[string]map[string]string{}
	for _, w := range ws.Workers {
		labels[w.ID] = w.Labels
	}
	if !reflect.DeepEqual(labels, map[string]map[string]string{"cpu-1": nil, "small-gpu": {"gpu": "true", "mem": "32"}}) {
		t.Fatalf("registry labels = %v", labels)
	}
	// A matching worker exists: the task is no longer without one, and it
	// claims it.
	big := map[string]string{"gpu": "true", "mem": "128"}
	if got := a.claimOne(t, "big-gpu", 10, big); len(got) != 1 || got[0].ID != gpu {
		t.Fatalf("the matching worker claimed %+v, want %s", got, gpu)
	}

	a.wantError(t, 422, api.CodeInvalid, "labels", "POST", "/v1/claims", map[string]any{"worker_id": "w", "labels": map[string]string{"9gpu": "x"}})
	a.wantError(t, 400, api.CodeBadRequest, "labels", "POST", "/v1/claims", `{"worker_id": "w", "labels": {"gpu": true}}`)
}

func TestRateLimitedOutcome(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 200, "PUT", "/v1/limits/openai", `{"rate":100,"period":"1s"}`, nil)
	id := a.enqueueTask(t, map[string]any{"kind": "call", "limits": map[string]string{"openai": "default"}})
	c := a.claimOne(t, "w", 1, nil)
	if len(c) != 1 {
		t.Fatalf("claimed %+v", c)
	}
	a.wantError(t, 400, api.CodeBadRequest, "rate_limited", "POST", "/v1/tasks/"+id+"/fail",
		map[string]any{"lease_token": c[0].LeaseToken, "error": "429", "rate_limited": true})
	a.wantError(t, 400, api.CodeBadRequest, "snooze", "POST", "/v1/tasks/"+id+"/fail",
		map[string]any{"lease_token": c[0].LeaseToken, "error": "429", "snooze": "1m", "retry_in": "1m", "rate_limited": true})
	var out api.Outcome
	a.must(t, 200, "POST", "/v1/tasks/"+id+"/fail", map[string]any{"lease_token": c[0].LeaseToken, "error": "429 Too Many Requests", "snooze": "1m", "rate_limited": true}, &out)
	if out.State != "pending" || out.RunAt == nil || time.Until(*out.RunAt) < 50*time.Second {
		t.Fatalf("outcome %+v, want pending for a minute", out)
	}
	task := a.task(t, id)
	if task.Attempt != 0 {
		t.Fatalf("attempt = %d: a rate-limited snooze gives the attempt back", task.Attempt)
	}
	var events []api.Event
	for _, line := range strings.Split(strings.TrimSpace(string(a.mustRaw(t, "GET", "/v1/tasks/"+id+"/events"))), "\n") {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		events = append(events, ev)
	}
	last := events[len(events)-1]
	if last.Type != "snoozed" || !strings.Contains(string(last.Data), `"reason":"rate_limited"`) {
		t.Fatalf("last event %+v, want snoozed for rate_limited", last)
	}
	// The key is held back for everyone until then.
	var l api.LimitDetail
	a.must(t, 200, "GET", "/v1/limits/openai", nil, &l)
	if len(l.Keys) != 1 || l.Keys[0].NextAllowedAt == nil || time.Until(*l.Keys[0].NextAllowedAt) < 50*time.Second {
		t.Fatalf("limit keys %+v, want default held back for a minute", l.Keys)
	}

	// In a batch report, rate_limited is an option of a failure.
	id2 := a.enqueueTask(t, map[string]any{"kind": "other"})
	c = a.claimOne(t, "w", 1, nil)
	var res api.OutcomesResponse
	a.must(t, 200, "POST", "/v1/outcomes", map[string]any{"outcomes": []any{
		map[string]any{"id": id2, "lease_token": c[0].LeaseToken, "rate_limited": true},
	}}, &res)
	if e := res.Outcomes[0].Error; e == nil || e.Field != "outcomes[0].rate_limited" {
		t.Fatalf("a completion with rate_limited: %+v", res.Outcomes[0])
	}
	var snoozed api.OutcomesResponse
	a.must(t, 200, "POST", "/v1/outcomes", map[string]any{"outcomes": []any{
		map[string]any{"id": id2, "lease_token": c[0].LeaseToken, "error": "429", "snooze": "10s", "rate_limited": true},
	}}, &snoozed)
	if snoozed.Outcomes[0].Error != nil || snoozed.Outcomes[0].State != "pending" {
		t.Fatalf("a rate-limited failure in a batch: %+v", snoozed.Outcomes[0])
	}
}

// mustRaw reads a route's body, which must answer 200.
func (a *testAPI) mustRaw(t *testing.T, method, path string) []byte {
	t.Helper()
	status, b := a.do(t, method, path, nil)
	if status != 200 {
		t.Fatalf("%s %s = %d %s", method, path, status, b)
	}
	return b
}

func TestFairnessRoutes(t *testing.T) {
	a := newTestAPI(t, Config{})
	var f api.Fairness
	a.must(t, 200, "GET", "/v1/queues/mail/fairness", nil, &f)
	if f.Queue != "mail" || f.Weights == nil || len(f.Weights) != 0 {
		t.Fatalf("no weights: %+v", f)
	}
	a.must(t, 200, "PUT", "/v1/queues/mail/fairness", `{"weights":{"acme":3,"globex":2}}`, &f)
	if !reflect.DeepEqual(f.Weights, map[string]int{"acme": 3, "globex": 2}) {
		t.Fatalf("PUT answered %+v", f)
	}
	// Keys not named keep their weights; 0 puts one back to 1.
	var after api.Fairness
	a.must(t, 200, "PUT", "/v1/queues/mail/fairness", `{"weights":{"globex":0}}`, &after)
	if !reflect.DeepEqual(after.Weights, map[string]int{"acme": 3}) {
		t.Fatalf("after resetting globex: %+v", after)
	}
	a.wantError(t, 422, api.CodeInvalid, "weights", "PUT", "/v1/queues/mail/fairness", `{"weights":{"acme":-1}}`)
	a.wantError(t, 422, api.CodeInvalid, "weights", "PUT", "/v1/queues/mail/fairness", `{}`)
	a.wantError(t, 400, api.CodeBadRequest, "weight", "PUT", "/v1/queues/mail/fairness", `{"weight":{"acme":1}}`)
	a.wantError(t, 400, api.CodeBadRequest, "name", "GET", "/v1/queues/9q/fairness", nil)
}

// TestOpenAPIInputsMatchWireTypes holds the documented request bodies of
// limits, claims and outcomes to the fields the server decodes: with
// additionalProperties false, a field missing from either side would be
// refused by one and sent by the other.
func TestOpenAPIInputsMatchWireTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"TaskInput": api.TaskInput{}, "LimitInput": api.LimitInput{}, "FairnessInput": api.FairnessInput{},
		"ClaimRequest": api.ClaimRequest{}, "FailRequest": api.FailRequest{}, "OutcomeInput": api.OutcomeInput{},
		"Limit": api.Limit{}, "LimitKey": api.LimitKey{}, "BlockedReason": api.BlockedReason{}, "Worker": api.Worker{},
	} {
		documented := slices.Sorted(maps.Keys(doc.Components.Schemas[name].Properties))
		if fields := jsonFields(reflect.TypeOf(v)); !slices.Equal(documented, fields) {
			t.Errorf("%s: openapi.json documents %v, the wire type has %v", name, documented, fields)
		}
	}
}

// jsonFields lists the JSON names of a struct's fields, embedded ones
// included, sorted.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if f.Anonymous {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestLimitMetrics(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.must(t, 200, "PUT", "/v1/limits/per-customer", `{"concurrency":1}`, nil)
	// Twelve keys with two tasks each: one of each runs, one waits.
	for i := range 12 {
		key := string(rune('a' + i))
		for range 2 {
			a.enqueueTask(t, map[string]any{"kind": "k", "limits": map[string]string{"per-customer": key}})
		}
	}
	if got := a.claimOne(t, "w", 100, nil); len(got) != 12 {
		t.Fatalf("claimed %d, want one per key", len(got))
	}
	a.must(t, 200, "POST", "/v1/queues/mail/pause", nil, nil)
	a.enqueueTask(t, map[string]any{"kind": "k", "queue": "mail"})
	_, body := a.do(t, "GET", "/metrics", nil)
	for series, want := range map[string]float64{
		`weft_limit_in_use{limit="per-customer"}`:              12,
		`weft_limit_waiting{limit="per-customer"}`:             12,
		`weft_limit_key_waiting{key="a",limit="per-customer"}`: 1,
		`weft_tasks_blocked{reason="limit"}`:                   12,
		`weft_tasks_blocked{reason="queue_paused"}`:            1,
		`weft_limit_drift_keys_total`:                          metricValue(t, body, `weft_limit_drift_keys_total`),
	} {
		if got := metricValue(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if n := strings.Count(string(body), "\nweft_limit_key_waiting{"); n != topKeys {
		t.Errorf("%d key series, want the top %d only", n, topKeys)
	}
}
