package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

func TestSchedules(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		before := time.Now()
		sc, err := svc.PutSchedule(ctx, "nightly", api.ScheduleInput{Spec: "0 3 * * *", Kind: "report", Args: json.RawMessage(`{"scope":"daily"}`), Queue: "reports"})
		if err != nil {
			t.Fatal(err)
		}
		if sc.Name != "nightly" || sc.Queue != "reports" || sc.MaxAttempts != store.DefaultMaxAttempts || sc.Missed != "skip" || sc.Paused ||
			!sc.NextAt.After(before) || sc.NextAt.After(before.Add(24*time.Hour)) || sc.NextAt.Minute() != 0 {
			t.Fatalf("put = %+v", sc)
		}
		// Triggering enqueues the schedule's task once, and moves nothing.
		tr, err := svc.TriggerSchedule(ctx, "nightly")
		if err != nil || tr.Schedule != "nightly" {
			t.Fatalf("trigger = %+v, %v", tr, err)
		}
		task, err := svc.Get(ctx, tr.ID)
		if err != nil || task.Kind != "report" || task.Queue != "reports" || compactJSON(t, task.Args) != `{"scope":"daily"}` || task.UniqueKey != "" {
			t.Fatalf("triggered task = %+v, %v", task, err)
		}
		if again, _ := svc.Schedule(ctx, "nightly"); !again.NextAt.Equal(sc.NextAt) {
			t.Fatalf("a trigger moved the next slot from %v to %v", sc.NextAt, again.NextAt)
		}
		if sc, err = svc.PauseSchedule(ctx, "nightly"); err != nil || !sc.Paused {
			t.Fatalf("pause = %+v, %v", sc, err)
		}
		// A paused schedule can still be triggered by hand.
		if _, err := svc.TriggerSchedule(ctx, "nightly"); err != nil {
			t.Fatalf("trigger while paused: %v", err)
		}
		if sc, err = svc.ResumeSchedule(ctx, "nightly"); err != nil || sc.Paused {
			t.Fatalf("resume = %+v, %v", sc, err)
		}
		list, err := svc.Schedules(ctx)
		if err != nil || len(list.Schedules) != 1 {
			t.Fatalf("schedules = %+v, %v", list, err)
		}
		if sc, err = svc.DeleteSchedule(ctx, "nightly"); err != nil || sc.Name != "nightly" {
			t.Fatalf("delete = %+v, %v", sc, err)
		}
		for _, op := range []func(context.Context, string) (api.Schedule, error){svc.Schedule, svc.PauseSchedule, svc.ResumeSchedule, svc.DeleteSchedule} {
			_, err := op(ctx, "nightly")
			wantProblem(t, err, 404, api.CodeNotFound, "name")
		}
		_, err = svc.TriggerSchedule(ctx, "nightly")
		wantProblem(t, err, 404, api.CodeNotFound, "name")

		// Bad input names the field, and nothing is written.
		for _, tc := range []struct {
			name   string
			in     api.ScheduleInput
			status int
			field  string
		}{
			{"bad name", api.ScheduleInput{Spec: "@daily", Kind: "k"}, 400, "name"},
			{"s", api.ScheduleInput{Spec: "every day", Kind: "k"}, 422, "spec"},
			{"s", api.ScheduleInput{Spec: "@every 100ms", Kind: "k"}, 422, "spec"},
			{"s", api.ScheduleInput{Spec: "@daily"}, 422, "kind"},
			{"s", api.ScheduleInput{Spec: "@daily", Kind: "k", Missed: "often"}, 422, "missed"},
			{"s", api.ScheduleInput{Spec: "@daily", Kind: "k", Metadata: json.RawMessage(`[1]`)}, 422, "metadata"},
			{"s", api.ScheduleInput{Spec: "@daily", Kind: "k", Queue: "no queue"}, 422, "queue"},
		} {
			_, err := svc.PutSchedule(ctx, tc.name, tc.in)
			wantProblem(t, err, tc.status, api.CodeForStatus(tc.status), tc.field)
		}
		if list, err := svc.Schedules(ctx); err != nil || len(list.Schedules) != 0 {
			t.Fatalf("refused schedules were stored: %+v, %v", list, err)
		}
	})
}

func TestBulk(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		// More tasks than one batch holds: the call goes through three.
		const n = 2*store.MaxBulkBatch + 500
		in := make([]api.TaskInput, n)
		for i := range in {
			in[i] = api.TaskInput{Kind: "k", Queue: "bulk", Delay: "1h"}
		}
		if _, err := svc.EnqueueBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		filter := &api.TaskFilter{Queue: "bulk"}
		res, err := svc.Bulk(ctx, api.BulkRequest{Action: api.BulkRunNow, Filter: filter, DryRun: true})
		if err != nil || res != (api.BulkResult{Action: "run_now", DryRun: true, Matched: n}) {
			t.Fatalf("dry run = %+v, %v", res, err)
		}
		res, err = svc.Bulk(ctx, api.BulkRequest{Action: api.BulkCancel, Filter: filter})
		if err != nil || res.Matched != n || res.Changed != n {
			t.Fatalf("cancel = %+v, %v", res, err)
		}
		q, err := svc.Queues(ctx)
		if err != nil || q.Queues[0].Counts["cancelled"] != n || q.Queues[0].Counts["pending"] != 0 {
			t.Fatalf("queues after the cancel = %+v, %v", q, err)
		}
		res, err = svc.Bulk(ctx, api.BulkRequest{Action: api.BulkDelete, Filter: &api.TaskFilter{States: []string{"cancelled"}, Since: time.Now().Add(-time.Hour).Format(time.RFC3339)}})
		if err != nil || res.Changed != n {
			t.Fatalf("delete = %+v, %v", res, err)
		}
		if page, err := svc.List(ctx, api.ListParams{}); err != nil || len(page.Tasks) != 0 {
			t.Fatalf("after the delete: %d tasks, %v", len(page.Tasks), err)
		}

		// Refused requests name the field and change nothing.
		e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			req    api.BulkRequest
			status int
			field  string
		}{
			{api.BulkRequest{Filter: filter}, 422, "action"},
			{api.BulkRequest{Action: "purge", Filter: filter}, 422, "action"},
			{api.BulkRequest{Action: api.BulkCancel}, 422, "filter"},
			{api.BulkRequest{Action: api.BulkCancel, Filter: filter, IDs: []string{e.ID}}, 422, "ids"},
			{api.BulkRequest{Action: api.BulkCancel, IDs: []string{}}, 422, "ids"},
			{api.BulkRequest{Action: api.BulkCancel, IDs: []string{e.ID, "x"}}, 422, "ids[1]"},
			{api.BulkRequest{Action: api.BulkCancel, IDs: make([]string, api.MaxBulkIDs+1)}, 413, "ids"},
			{api.BulkRequest{Action: api.BulkCancel, Filter: &api.TaskFilter{Queue: "no queue"}}, 422, "filter.queue"},
			{api.BulkRequest{Action: api.BulkCancel, Filter: &api.TaskFilter{Kind: "9"}}, 422, "filter.kind"},
			{api.BulkRequest{Action: api.BulkDelete, Filter: &api.TaskFilter{States: []string{"pending"}}}, 422, "filter.states"},
			{api.BulkRequest{Action: api.BulkCancel, Filter: &api.TaskFilter{States: []string{"asleep"}}}, 422, "filter.states"},
			{api.BulkRequest{Action: api.BulkCancel, Filter: &api.TaskFilter{Since: "yesterday"}}, 422, "filter.since"},
			{api.BulkRequest{Action: api.BulkCancel, Filter: &api.TaskFilter{Since: "2030-01-02T00:00:00Z", Until: "2030-01-01T00:00:00Z"}}, 422, "filter.until"},
		} {
			_, err := svc.Bulk(ctx, tc.req)
			wantProblem(t, err, tc.status, api.CodeForStatus(tc.status), tc.field)
		}
		if task, err := svc.Get(ctx, e.ID); err != nil || task.State != "pending" {
			t.Fatalf("task after refused requests = %+v, %v", task, err)
		}
		// By id, in any spelling of the id.
		res, err = svc.Bulk(ctx, api.BulkRequest{Action: api.BulkCancel, IDs: []string{strings.ToUpper(e.ID)}})
		if err != nil || res.Changed != 1 {
			t.Fatalf("cancel by id = %+v, %v", res, err)
		}
	})
}

func TestDeleteAndRunTask(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k", Delay: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		task, err := svc.DeleteTask(ctx, e.ID)
		wantProblem(t, err, 409, api.CodeConflict, "")
		if task.ID != e.ID || !strings.Contains(err.Error(), "cancel it first") {
			t.Fatalf("delete of a pending task = %+v, %v", task, err)
		}
		before := time.Now()
		if task, err = svc.RunTask(ctx, e.ID); err != nil || task.RunAt.Before(before.Add(-time.Second)) || task.RunAt.After(time.Now()) {
			t.Fatalf("run now = %+v, %v", task, err)
		}
		// A ready task is answered as it is.
		if again, err := svc.RunTask(ctx, e.ID); err != nil || !again.RunAt.Equal(task.RunAt) {
			t.Fatalf("run now again = %+v, %v", again, err)
		}
		if _, err := svc.Cancel(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
		_, err = svc.RunTask(ctx, e.ID)
		wantProblem(t, err, 409, api.CodeConflict, "")
		if task, err = svc.DeleteTask(ctx, e.ID); err != nil || task.State != "cancelled" {
			t.Fatalf("delete = %+v, %v", task, err)
		}
		for _, op := range []func(context.Context, string) (api.Task, error){svc.DeleteTask, svc.RunTask, svc.Get} {
			_, err := op(ctx, e.ID)
			wantProblem(t, err, 404, api.CodeNotFound, "")
		}
		if evs, err := st.Events(ctx, e.ID, 0, 0); err != nil || len(evs) != 0 {
			t.Fatalf("a deleted task kept %d events: %v", len(evs), err)
		}
	})
}

func TestWorkersAndHints(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		hint := func(in api.TaskInput) string {
			t.Helper()
			e, err := svc.Enqueue(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			task, err := svc.Get(ctx, e.ID)
			if err != nil {
				t.Fatal(err)
			}
			return task.Hint
		}
		if h := hint(api.TaskInput{Kind: "py.resize"}); !strings.Contains(h, "no live worker") {
			t.Fatalf("hint with no worker = %q", h)
		}
		if err := st.TouchNode(ctx, store.Node{ID: "serve-1", Host: "h", PID: 1, Queues: []string{"default"}, Kinds: []string{"http"}}); err != nil {
			t.Fatal(err)
		}
		if err := st.TouchWorker(ctx, store.RemoteWorker{ID: "py-1", Host: "10.0.0.7", Queues: []string{"images"}}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			in   api.TaskInput
			want string
		}{
			{api.TaskInput{Kind: "http"}, ""},
			{api.TaskInput{Kind: "py.resize"}, "no live worker on queue default runs kind py.resize (they run http)"},
			{api.TaskInput{Kind: "py.resize", Queue: "images"}, ""},
			{api.TaskInput{Kind: "http", Queue: "mail"}, "no live worker works queue mail (live workers work default, images)"},
		} {
			if h := hint(tc.in); h != tc.want {
				t.Errorf("hint of %+v = %q, want %q", tc.in, h, tc.want)
			}
		}
		if _, err := svc.PauseQueue(ctx, "images"); err != nil {
			t.Fatal(err)
		}
		if h := hint(api.TaskInput{Kind: "py.resize", Queue: "images"}); !strings.Contains(h, "queue images is paused") {
			t.Fatalf("hint in a paused queue = %q", h)
		}
		// Only pending tasks carry a hint.
		e, _ := svc.Enqueue(ctx, api.TaskInput{Kind: "py.resize", Queue: "mail"})
		if task, err := svc.Cancel(ctx, e.ID); err != nil || task.Hint != "" {
			t.Fatalf("cancelled task = %+v, %v", task, err)
		}
		if task, _ := svc.Get(ctx, e.ID); task.Hint != "" {
			t.Fatalf("a cancelled task has the hint %q", task.Hint)
		}

		list, err := svc.Workers(ctx)
		if err != nil || len(list.Workers) != 2 {
			t.Fatalf("workers = %+v, %v", list, err)
		}
		node, remote := list.Workers[0], list.Workers[1]
		if node.ID != "serve-1" || node.Type != api.WorkerNode || !node.Live || node.PID != 1 || strings.Join(node.Kinds, ",") != "http" ||
			remote.ID != "py-1" || remote.Type != api.WorkerRemote || !remote.Live || remote.Kinds != nil || remote.Host != "10.0.0.7" {
			t.Fatalf("workers = %+v", list.Workers)
		}
		queues, err := svc.Queues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		workers := map[string]int{}
		for _, q := range queues.Queues {
			workers[q.Name] = q.Workers
		}
		if workers["default"] != 1 || workers["images"] != 1 || workers["mail"] != 0 {
			t.Fatalf("workers per queue = %v", workers)
		}
		if q, err := svc.PauseQueue(ctx, "default"); err != nil || q.Workers != 1 {
			t.Fatalf("pause = %+v, %v", q, err)
		}
	})
}

func TestListOrderAndTime(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		var ids []string
		for range 3 {
			e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k"})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		}
		page, err := svc.List(ctx, api.ListParams{Order: "newest", Limit: 2})
		if err != nil || len(page.Tasks) != 2 || page.Tasks[0].ID != ids[2] || page.NextCursor != ids[1] {
			t.Fatalf("newest first = %+v, %v", page, err)
		}
		page, err = svc.List(ctx, api.ListParams{Order: "newest", Limit: 2, Cursor: page.NextCursor})
		if err != nil || len(page.Tasks) != 1 || page.Tasks[0].ID != ids[0] {
			t.Fatalf("second page, newest first = %+v, %v", page, err)
		}
		if page, err = svc.List(ctx, api.ListParams{Since: time.Now().Add(time.Minute)}); err != nil || len(page.Tasks) != 0 {
			t.Fatalf("since a minute from now = %+v, %v", page, err)
		}
		if page, err = svc.List(ctx, api.ListParams{Until: time.Now().Add(time.Minute)}); err != nil || len(page.Tasks) != 3 {
			t.Fatalf("until a minute from now = %+v, %v", page, err)
		}
		now := time.Now()
		for _, tc := range []struct {
			p     api.ListParams
			field string
		}{
			{api.ListParams{Order: "random"}, "order"},
			{api.ListParams{Since: now, Until: now}, "until"},
		} {
			_, err := svc.List(ctx, tc.p)
			wantProblem(t, err, 400, api.CodeBadRequest, tc.field)
		}
	})
}

func TestParseListQueryOrderAndTime(t *testing.T) {
	p, err := ops.ParseListQuery(url.Values{"order": {"newest"}, "since": {"2030-01-02T03:04:05Z"}, "until": {"2030-01-03T00:00:00.5+01:00"}})
	if err != nil || p.Order != "newest" || !p.Since.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) || !p.Until.Equal(time.Date(2030, 1, 2, 23, 0, 0, 5e8, time.UTC)) {
		t.Fatalf("= %+v, %v", p, err)
	}
	for _, field := range []string{"since", "until"} {
		_, err := ops.ParseListQuery(url.Values{field: {"yesterday"}})
		wantProblem(t, err, 400, api.CodeBadRequest, field)
	}
}

// compactJSON is raw without insignificant space (PostgreSQL's jsonb adds
// some).
func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	return b.String()
}
