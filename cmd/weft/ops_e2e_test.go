package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
)

// The first hour without Go: schedules, bulk actions, the workers and why a
// task waits, through the real binary against a real server that works
// the queue "mail" only.

func TestOperatorCLISQLite(t *testing.T) {
	t.Parallel()
	operatorCases(t, startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"), "--queue", "mail"))
}

func TestOperatorCLIPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	operatorCases(t, startServer(t, []string{"WEFT_DATABASE_URL=" + dsn}, "--queue", "mail"))
}

// decodeOut decodes a command's JSON output.
func decodeOut[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, out, err)
	}
	return v
}

// failsWith runs a command that must exit with code, saying want on
// standard error.
func failsWith(t *testing.T, s *weftproc.Server, code int, want string, args ...string) {
	t.Helper()
	r := s.Run(t, "", args...)
	if r.Code != code || !strings.Contains(r.Stderr, want) {
		t.Fatalf("weft %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(args, " "), r.Code, r.Stderr, code, want)
	}
}

func operatorCases(t *testing.T, s *weftproc.Server) {
	target := webhookTarget(t)

	// The server is a node working mail with the http kind (and the
	// built-in wait step).
	workers := decodeOut[api.WorkerList](t, s.Must(t, "", "workers", "--format", "json"))
	if len(workers.Workers) != 1 || workers.Workers[0].Type != "node" || strings.Join(workers.Workers[0].Queues, ",") != "mail" ||
		strings.Join(workers.Workers[0].Kinds, ",") != "http,"+weft.WaitStepKind || !workers.Workers[0].Live {
		t.Fatalf("workers = %+v", workers)
	}
	// A task nothing will run says why, and so does its queue.
	waiting := enqueue(t, s, "http", `{"url": "http://127.0.0.1:9/never"}`)
	if out := s.Must(t, "", "task", waiting); !strings.Contains(out, "hint:        no live worker works queue default (live workers work mail)") {
		t.Fatalf("task of an unworked queue:\n%s", out)
	}
	if out := s.Must(t, "", "queues"); !strings.Contains(out, "0 (none: its pending tasks wait)") {
		t.Fatalf("queues:\n%s", out)
	}
	// A remote worker claiming default over HTTP is registered, and the
	// hint changes to the kind.
	resp, err := http.Post(s.URL+"/v1/claims", "application/json", strings.NewReader(`{"worker_id": "py-7", "kinds": ["py.resize"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if task := getTask(t, s, waiting); task.Hint != "no live worker on queue default runs kind http (they run py.resize)" {
		t.Fatalf("hint with a remote worker on default = %q", task.Hint)
	}
	if out := s.Must(t, "", "workers"); !strings.Contains(out, "py-7") || !strings.Contains(out, "remote") {
		t.Fatalf("workers:\n%s", out)
	}

	// Schedules: set, list, trigger (the server runs the task), pause,
	// delete.
	out := s.Must(t, "", "schedule", "set", "ping", "0 3 * * *", "http", "--args", fmt.Sprintf(`{"url": %q, "method": "GET"}`, target.URL+"/ok"), "--queue", "mail")
	if !strings.HasPrefix(out, `schedule ping set: http on queue mail at "0 3 * * *"; next run `) {
		t.Fatalf("schedule set printed %q", out)
	}
	failsWith(t, s, 1, "422 invalid: spec", "schedule", "set", "typo", "0 3 * *", "http")
	failsWith(t, s, 2, "NAME, SPEC and KIND", "schedule", "set", "typo", "@daily")
	list := decodeOut[api.ScheduleList](t, s.Must(t, "", "schedules", "--format", "json"))
	if len(list.Schedules) != 1 || list.Schedules[0].Name != "ping" {
		t.Fatalf("schedules = %+v (a refused one stored?)", list)
	}
	id := strings.TrimSpace(s.Must(t, "", "schedule", "trigger", "ping"))
	if r := s.Run(t, "", "task", id, "--monitor"); r.Code != 0 {
		t.Fatalf("the triggered task did not complete: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if after := decodeOut[api.Schedule](t, s.Must(t, "", "schedule", "show", "ping", "--format", "json")); !after.NextAt.Equal(list.Schedules[0].NextAt) {
		t.Fatalf("a trigger moved the next run from %v to %v", list.Schedules[0].NextAt, after.NextAt)
	}
	s.Must(t, "", "schedule", "pause", "ping")
	s.Must(t, "", "schedule", "delete", "ping")
	failsWith(t, s, 1, "404 not_found", "schedule", "trigger", "ping")

	// Bulk: five tasks fail for good, are counted, retried and deleted.
	var failing []string
	for range 5 {
		failing = append(failing, enqueue(t, s, "http", fmt.Sprintf(`{"url": %q}`, target.URL+"/missing"), "--queue", "mail", "--max-attempts", "1"))
	}
	for _, id := range failing {
		if r := s.Run(t, "", "task", id, "--monitor"); r.Code != 1 {
			t.Fatalf("task %s: monitor exit %d, want 1 (failed)", id, r.Code)
		}
	}
	if out := s.Must(t, "", "list", "--state", "failed", "--order", "newest"); !strings.Contains(out, "LAST ERROR") || !strings.Contains(out, "404") ||
		strings.Index(out, failing[4]) > strings.Index(out, failing[0]) {
		t.Fatalf("failed tasks, newest first:\n%s", out)
	}
	if out := s.Must(t, "", "retry", "--state", "failed", "--queue", "mail", "--dry-run"); strings.TrimSpace(out) != "would retry 5 tasks (dry run: nothing changed)" {
		t.Fatalf("dry run printed %q", out)
	}
	failsWith(t, s, 2, "select the tasks to retry", "retry")
	failsWith(t, s, 2, "--state: delete applies to", "delete", "--state", "pending")
	res := decodeOut[api.BulkResult](t, s.Must(t, "", "retry", "--state", "failed", "--queue", "mail", "--format", "json"))
	if res.Matched != 5 || res.Changed != 5 {
		t.Fatalf("retry = %+v", res)
	}
	// They fail again (one more attempt each), and are deleted.
	deadline := time.Now().Add(time.Minute)
	for {
		page := decodeOut[api.TaskList](t, s.Must(t, "", "list", "--state", "failed", "--queue", "mail", "--format", "json"))
		if len(page.Tasks) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute, %d of the 5 retried tasks failed again", len(page.Tasks))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := s.Must(t, "", "delete", "--queue", "mail", "--state", "failed"); strings.TrimSpace(out) != "deleted 5 tasks" {
		t.Fatalf("delete printed %q", out)
	}
	failsWith(t, s, 1, "404 not_found", "task", failing[0])
	failsWith(t, s, 1, "1 task of the 1 id given not matched", "delete", failing[0])
	failsWith(t, s, 1, `400 bad_request: cursor: "garbage" is not a cursor`, "list", "--cursor", "garbage")
	if out := s.Must(t, "", "cancel", waiting); strings.TrimSpace(out) != "cancelled 1 task" {
		t.Fatalf("cancel printed %q", out)
	}
}
