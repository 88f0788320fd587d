package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

func TestScheduleRoutes(t *testing.T) {
	a := newTestAPI(t, Config{})
	var sc api.Schedule
	a.must(t, 200, "PUT", "/v1/schedules/nightly", map[string]any{"spec": "0 3 * * *", "kind": "report", "args": map[string]any{"scope": "daily"}, "queue": "reports", "missed": "run_once"}, &sc)
	if sc.Name != "nightly" || sc.Spec != "0 3 * * *" || sc.Queue != "reports" || sc.Missed != "run_once" || sc.NextAt.Before(time.Now()) {
		t.Fatalf("put = %+v", sc)
	}
	var list api.ScheduleList
	a.must(t, 200, "GET", "/v1/schedules", nil, &list)
	if len(list.Schedules) != 1 || list.Schedules[0].Name != "nightly" {
		t.Fatalf("list = %+v", list)
	}
	var tr api.Triggered
	a.must(t, 201, "POST", "/v1/schedules/nightly/trigger", nil, &tr)
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+tr.ID, nil, &task)
	if task.Kind != "report" || task.Queue != "reports" || string(task.Args) != `{"scope":"daily"}` {
		t.Fatalf("triggered task = %+v", task)
	}
	a.must(t, 200, "POST", "/v1/schedules/nightly/pause", nil, &sc)
	if !sc.Paused {
		t.Fatalf("paused = %+v", sc)
	}
	a.must(t, 200, "POST", "/v1/schedules/nightly/resume", nil, &sc)
	a.must(t, 200, "GET", "/v1/schedules/nightly", nil, &sc)
	if sc.Paused {
		t.Fatalf("resumed = %+v", sc)
	}

	// Bad input: the field is named and nothing is written.
	a.wantError(t, 422, api.CodeInvalid, "spec", "PUT", "/v1/schedules/other", `{"spec": "every day", "kind": "k"}`)
	a.wantError(t, 422, api.CodeInvalid, "spec", "PUT", "/v1/schedules/other", `{"kind": "k"}`)
	a.wantError(t, 422, api.CodeInvalid, "kind", "PUT", "/v1/schedules/other", `{"spec": "@daily"}`)
	a.wantError(t, 422, api.CodeInvalid, "args", "PUT", "/v1/schedules/other", `{"spec": "@daily", "kind": "k", "args": "\u0000"}`)
	a.wantError(t, 400, api.CodeBadRequest, "spek", "PUT", "/v1/schedules/other", `{"spek": "@daily", "kind": "k"}`)
	a.wantError(t, 400, api.CodeBadRequest, "paused", "PUT", "/v1/schedules/other", `{"spec": "@daily", "kind": "k", "paused": "yes"}`)
	a.wantError(t, 400, api.CodeBadRequest, "", "PUT", "/v1/schedules/other", ``)
	a.wantError(t, 400, api.CodeBadRequest, "name", "PUT", "/v1/schedules/9lives", `{"spec": "@daily", "kind": "k"}`)
	a.must(t, 200, "GET", "/v1/schedules", nil, &list)
	if len(list.Schedules) != 1 {
		t.Fatalf("refused schedules were stored: %+v", list)
	}
	status, body := a.do(t, "PATCH", "/v1/schedules/nightly", nil)
	if status != 405 || !strings.Contains(string(body), "GET, PUT, DELETE") {
		t.Fatalf("PATCH = %d %s", status, body)
	}

	a.must(t, 200, "DELETE", "/v1/schedules/nightly", nil, &sc)
	if sc.Name != "nightly" {
		t.Fatalf("deleted = %+v", sc)
	}
	for _, req := range [][2]string{{"GET", ""}, {"DELETE", ""}, {"POST", "/pause"}, {"POST", "/resume"}, {"POST", "/trigger"}} {
		a.wantError(t, 404, api.CodeNotFound, "name", req[0], "/v1/schedules/nightly"+req[1], nil)
	}
}

func TestBulkRoute(t *testing.T) {
	a := newTestAPI(t, Config{})
	var b api.BatchEnqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"tasks": []map[string]any{
		{"kind": "a", "queue": "q"}, {"kind": "a", "queue": "q"}, {"kind": "b", "queue": "q", "delay": "1h"}, {"kind": "a", "queue": "other"},
	}}, &b)
	var res api.BulkResult
	a.must(t, 200, "POST", "/v1/tasks/bulk", map[string]any{"action": "cancel", "filter": map[string]any{"queue": "q", "kind": "a"}, "dry_run": true}, &res)
	if res != (api.BulkResult{Action: "cancel", DryRun: true, Matched: 2}) {
		t.Fatalf("dry run = %+v", res)
	}
	a.must(t, 200, "POST", "/v1/tasks/bulk", map[string]any{"action": "cancel", "filter": map[string]any{"queue": "q", "kind": "a"}}, &res)
	if res.Matched != 2 || res.Changed != 2 {
		t.Fatalf("cancel = %+v", res)
	}
	a.must(t, 200, "POST", "/v1/tasks/bulk", map[string]any{"action": "retry", "ids": []string{b.Tasks[0].ID, b.Tasks[3].ID}}, &res)
	if res.Matched != 1 || res.Changed != 1 {
		t.Fatalf("retry by ids = %+v", res)
	}
	a.must(t, 200, "POST", "/v1/tasks/bulk", map[string]any{"action": "run_now", "filter": map[string]any{}}, &res)
	if res.Matched != 1 || res.Changed != 1 {
		t.Fatalf("run now = %+v", res)
	}

	before := a.count(t)
	for _, tc := range []struct {
		body, code, field string
		status            int
	}{
		{`{"action": "delete"}`, api.CodeInvalid, "filter", 422},
		{`{"action": "delete", "filter": {}, "ids": []}`, api.CodeInvalid, "ids", 422},
		{`{"action": "destroy", "filter": {}}`, api.CodeInvalid, "action", 422},
		{`{"action": "delete", "filter": {"states": ["pending"]}}`, api.CodeInvalid, "filter.states", 422},
		{`{"action": "delete", "filter": {"since": "last week"}}`, api.CodeInvalid, "filter.since", 422},
		{`{"action": "delete", "ids": ["` + b.Tasks[0].ID + `", "no"]}`, api.CodeInvalid, "ids[1]", 422},
		{`{"action": "delete", "filter": {"queue": "q", "colour": "red"}}`, api.CodeBadRequest, "colour", 400},
		{`{"action": "delete", "filter": []}`, api.CodeBadRequest, "filter", 400},
		{`{"action": "delete", "dry_run": "yes", "filter": {}}`, api.CodeBadRequest, "dry_run", 400},
		{``, api.CodeBadRequest, "", 400},
	} {
		a.wantError(t, tc.status, tc.code, tc.field, "POST", "/v1/tasks/bulk", tc.body)
	}
	if after := a.count(t); after != before {
		t.Fatalf("refused bulk requests changed the task count from %d to %d", before, after)
	}
	// The delete of a whole queue's finished tasks.
	a.must(t, 200, "POST", "/v1/tasks/bulk", map[string]any{"action": "cancel", "filter": map[string]any{"queue": "q"}}, &res)
	a.must(t, 200, "POST", "/v1/tasks/bulk", map[string]any{"action": "delete", "filter": map[string]any{"queue": "q"}}, &res)
	if res.Changed != 3 || a.count(t) != 1 {
		t.Fatalf("delete = %+v, %d tasks left", res, a.count(t))
	}
}

func TestDeleteAndRunTaskRoutes(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "a", "delay": "1h"}, &e)
	a.wantError(t, 409, api.CodeConflict, "", "DELETE", "/v1/tasks/"+e.ID, nil)
	var task api.Task
	a.must(t, 200, "POST", "/v1/tasks/"+e.ID+"/run", nil, &task)
	if time.Until(task.RunAt) > 0 {
		t.Fatalf("run now left run_at at %v", task.RunAt)
	}
	a.must(t, 200, "POST", "/v1/tasks/"+e.ID+"/cancel", nil, &task)
	a.wantError(t, 409, api.CodeConflict, "", "POST", "/v1/tasks/"+e.ID+"/run", nil)
	a.must(t, 200, "DELETE", "/v1/tasks/"+e.ID, nil, &task)
	if task.ID != e.ID || task.State != "cancelled" {
		t.Fatalf("deleted = %+v", task)
	}
	a.wantError(t, 404, api.CodeNotFound, "", "DELETE", "/v1/tasks/"+e.ID, nil)
	a.wantError(t, 404, api.CodeNotFound, "", "POST", "/v1/tasks/"+e.ID+"/run", nil)
}

// A remote worker is recorded by its claims, at most once every few
// seconds unless what it serves changes, and its tasks' hints and its
// queues' counts know it.
func TestWorkerRegistry(t *testing.T) {
	a := newTestAPI(t, Config{})
	var e api.Enqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"kind": "resize", "queue": "images"}, &e)
	var task api.Task
	a.must(t, 200, "GET", "/v1/tasks/"+e.ID, nil, &task)
	if !strings.HasPrefix(task.Hint, "no live worker") {
		t.Fatalf("hint before any worker = %q", task.Hint)
	}
	claim := map[string]any{"worker_id": "py-1", "queues": []string{"images"}, "kinds": []string{"thumbnail"}}
	a.must(t, 200, "POST", "/v1/claims", claim, nil)
	a.must(t, 200, "GET", "/v1/tasks/"+e.ID, nil, &task)
	if want := "no live worker on queue images runs kind resize (they run thumbnail)"; task.Hint != want {
		t.Fatalf("hint = %q, want %q", task.Hint, want)
	}
	var list api.WorkerList
	a.must(t, 200, "GET", "/v1/workers", nil, &list)
	if len(list.Workers) != 1 {
		t.Fatalf("workers = %+v", list)
	}
	w := list.Workers[0]
	if w.ID != "py-1" || w.Type != "remote" || w.Host != "127.0.0.1" || strings.Join(w.Queues, ",") != "images" || strings.Join(w.Kinds, ",") != "thumbnail" || !w.Live {
		t.Fatalf("worker = %+v", w)
	}
	// The same claim again, at once: nothing is written.
	first := w.LastSeenAt
	a.must(t, 200, "POST", "/v1/claims", claim, nil)
	a.must(t, 200, "GET", "/v1/workers", nil, &list)
	if !list.Workers[0].LastSeenAt.Equal(first) {
		t.Fatalf("a repeated claim was written: last seen %v, then %v", first, list.Workers[0].LastSeenAt)
	}
	// A claim for other kinds is written at once, and takes the task.
	claim["kinds"] = []string{"thumbnail", "resize"}
	var resp api.ClaimResponse
	a.must(t, 200, "POST", "/v1/claims", claim, &resp)
	a.must(t, 200, "GET", "/v1/workers", nil, &list)
	if w := list.Workers[0]; strings.Join(w.Kinds, ",") != "resize,thumbnail" || len(resp.Tasks) != 1 || w.Running != 1 {
		t.Fatalf("after a claim for more kinds: %+v, claimed %d", w, len(resp.Tasks))
	}
	var queues api.QueueList
	a.must(t, 200, "GET", "/v1/queues", nil, &queues)
	if len(queues.Queues) != 1 || queues.Queues[0].Workers != 1 {
		t.Fatalf("queues = %+v", queues)
	}
	// A claim the API refuses records nothing.
	a.wantError(t, 400, api.CodeBadRequest, "queues[0]", "POST", "/v1/claims", map[string]any{"worker_id": "bad-1", "queues": []string{"no queue"}})
	ws, err := a.st.RemoteWorkers(context.Background())
	if err != nil || len(ws) != 1 {
		t.Fatalf("remote workers = %+v, %v", ws, err)
	}
}

func TestListOrderQuery(t *testing.T) {
	a := newTestAPI(t, Config{})
	var b api.BatchEnqueued
	a.must(t, 201, "POST", "/v1/tasks", map[string]any{"tasks": []map[string]any{{"kind": "a"}, {"kind": "b"}, {"kind": "c"}}}, &b)
	var page api.TaskList
	a.must(t, 200, "GET", "/v1/tasks?order=newest&limit=2", nil, &page)
	if len(page.Tasks) != 2 || page.Tasks[0].Kind != "c" || page.NextCursor != b.Tasks[1].ID {
		t.Fatalf("newest first = %+v", page)
	}
	a.must(t, 200, "GET", "/v1/tasks?order=newest&cursor="+page.NextCursor, nil, &page)
	if len(page.Tasks) != 1 || page.Tasks[0].Kind != "a" {
		t.Fatalf("next page = %+v", page)
	}
	since := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	a.must(t, 200, "GET", "/v1/tasks?since="+since, nil, &page)
	if len(page.Tasks) != 0 {
		t.Fatalf("since an hour from now = %+v", page)
	}
	a.wantError(t, 400, api.CodeBadRequest, "order", "GET", "/v1/tasks?order=random", nil)
	a.wantError(t, 400, api.CodeBadRequest, "since", "GET", "/v1/tasks?since=today", nil)
	a.wantError(t, 400, api.CodeBadRequest, "until", "GET", "/v1/tasks?since="+since+"&until="+since, nil)
	a.wantError(t, 400, api.CodeBadRequest, "cursor", "GET", "/v1/tasks?cursor=garbage", nil)
}

// A registry write that fails does not fail the claim.
func TestWorkerRegistryFailureKeepsClaims(t *testing.T) {
	a := newTestAPI(t, Config{})
	a.api.registry.st = failingRegistry{a.st}
	var resp api.ClaimResponse
	a.must(t, http.StatusOK, "POST", "/v1/claims", map[string]any{"worker_id": "py-1"}, &resp)
	if ws, err := a.st.RemoteWorkers(context.Background()); err != nil || len(ws) != 0 {
		t.Fatalf("remote workers = %+v, %v", ws, err)
	}
}

// failingRegistry is a store whose registry writes fail.
type failingRegistry struct{ store.Store }

func (failingRegistry) TouchWorker(context.Context, store.RemoteWorker) error {
	return store.ErrReadOnly
}
