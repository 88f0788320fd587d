package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// sameBothWays runs args against the server and on its database, and
// checks that both print the same and exit alike; it returns the server's
// run.
func (s *testServer) sameBothWays(t *testing.T, args ...string) result {
	t.Helper()
	viaServer, direct := s.both(t, args...)
	if viaServer.code != direct.code || viaServer.stdout != direct.stdout || viaServer.stderr != direct.stderr {
		t.Errorf("%v differs:\nserver: %s\ndirect: %s", args, viaServer, direct)
	}
	return viaServer
}

func TestSchedulesCLI(t *testing.T) {
	s := newTestServer(t, "")
	r := ok(t, runWeft(t, "schedule", "set", "nightly", "0 3 * * *", "report.build", "--args", `{"scope":"daily"}`, "--queue", "reports", "--missed", "run_once", "--server", s.url))
	if !strings.HasPrefix(r.stdout, `schedule nightly set: report.build on queue reports at "0 3 * * *"; next run `) {
		t.Errorf("set:\n%s", r)
	}
	list := decode[api.ScheduleList](t, s.sameBothWays(t, "schedules", "--format", "json").stdout)
	if len(list.Schedules) != 1 || list.Schedules[0].Missed != "run_once" || list.Schedules[0].Spec != "0 3 * * *" {
		t.Fatalf("schedules = %+v", list)
	}
	r = ok(t, runWeft(t, "schedules", "--server", s.url))
	if !strings.Contains(r.stdout, "NEXT RUN") || !strings.Contains(r.stdout, "nightly  0 3 * * *  report.build  reports") {
		t.Errorf("schedules table:\n%s", r)
	}
	r = ok(t, runWeft(t, "schedule", "show", "nightly", "--database", s.path))
	if !strings.Contains(r.stdout, "spec:        0 3 * * *") || !strings.Contains(r.stdout, `"scope": "daily"`) {
		t.Errorf("show:\n%s", r)
	}

	// Trigger prints the id of the task it enqueued; direct mode too.
	for _, where := range [][]string{{"--server", s.url}, {"--database", s.path}} {
		id := strings.TrimSpace(ok(t, runWeft(t, append([]string{"schedule", "trigger", "nightly"}, where...)...)).stdout)
		task := decode[api.Task](t, ok(t, runWeft(t, "task", id, "--format", "json", "--server", s.url)).stdout)
		if task.Kind != "report.build" || task.Queue != "reports" {
			t.Errorf("triggered task = %+v", task)
		}
	}
	if r := ok(t, runWeft(t, "schedule", "pause", "nightly", "--server", s.url)); strings.TrimSpace(r.stdout) != "schedule nightly paused" {
		t.Errorf("pause:\n%s", r)
	}
	if r := ok(t, runWeft(t, "schedules", "--database", s.path)); !strings.Contains(r.stdout, "paused") {
		t.Errorf("paused schedule listed as:\n%s", r)
	}
	if r := ok(t, runWeft(t, "schedule", "resume", "nightly", "--database", s.path)); !strings.HasPrefix(r.stdout, "schedule nightly resumed; next run ") {
		t.Errorf("resume:\n%s", r)
	}

	// Bad input: the same errors either way, and nothing is written.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"schedule", "set", "x", "every day", "k"}, exitError, "422 invalid: spec: \"every day\""},
		{[]string{"schedule", "set", "x", "@every 10ms", "k"}, exitError, "the shortest is @every 1s"},
		{[]string{"schedule", "set", "x", "@daily", "9k"}, exitError, "422 invalid: kind:"},
		{[]string{"schedule", "set", "x y", "@daily", "k"}, exitError, "400 bad_request: name:"},
		{[]string{"schedule", "set", "x", "@daily", "k", "--args", "{"}, exitUsage, "--args: not valid JSON"},
		{[]string{"schedule", "set", "x", "@daily", "k", "--missed", "never"}, exitUsage, "--missed"},
		{[]string{"schedule", "set", "x", "@daily"}, exitUsage, "NAME, SPEC and KIND"},
		{[]string{"schedule", "trigger", "nope"}, exitError, `404 not_found: name: no schedule named "nope"`},
		{[]string{"schedule", "delete", "nope"}, exitError, `404 not_found`},
		{[]string{"schedule", "pause"}, exitUsage, "one schedule name"},
	} {
		r := s.sameBothWays(t, tc.args...)
		failsWith(t, r, tc.code, tc.want)
	}
	if scs, err := s.st.Schedules(context.Background()); err != nil || len(scs) != 1 {
		t.Fatalf("refused schedules were stored: %+v, %v", scs, err)
	}
	if r := ok(t, runWeft(t, "schedule", "delete", "nightly", "--server", s.url)); !strings.Contains(r.stdout, "schedule nightly deleted") {
		t.Errorf("delete:\n%s", r)
	}
	if r := ok(t, runWeft(t, "schedules", "--server", s.url)); !strings.HasPrefix(r.stdout, "no schedules") {
		t.Errorf("empty list:\n%s", r)
	}
}

// seedStates enqueues one task per state given, in queue q, driving it
// there: claimed and finished, or cancelled while pending.
func seedStates(t *testing.T, st store.Store, q string, states ...store.State) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, len(states))
	for i, state := range states {
		ids[i] = enqueueStore(t, st, store.NewTask{Kind: "k", Queue: q, MaxAttempts: 1})[0]
		switch state {
		case store.StatePending:
			continue
		case store.StateCancelled:
			if _, err := st.Cancel(ctx, ids[i]); err != nil {
				t.Fatal(err)
			}
			continue
		}
		claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "seed", LeaseTTL: time.Hour, Queues: []store.QueueClaim{{Queue: q, Limit: 1}}})
		if err != nil || len(claimed) != 1 || claimed[0].ID != ids[i] {
			t.Fatalf("claim = %v, %v", claimed, err)
		}
		o := store.Outcome{TaskID: ids[i], Epoch: claimed[0].LeaseEpoch, State: state, Event: store.EventCompleted}
		if state == store.StateFailed {
			o.Event, o.Error = store.EventFailed, &store.AttemptError{Attempt: 1, At: time.Now(), Error: "connection refused\nby the peer"}
		}
		if state != store.StateRunning {
			res, err := st.Finish(ctx, []store.Outcome{o})
			if err != nil || res[0].Err != nil {
				t.Fatalf("finish = %v, %v", res, err)
			}
		}
	}
	return ids
}

func TestBulkCLI(t *testing.T) {
	s := newTestServer(t, "")
	ids := seedStates(t, s.st, "mail", store.StateFailed, store.StateFailed, store.StateCancelled, store.StateCompleted, store.StatePending)
	other := seedStates(t, s.st, "other", store.StateFailed)

	r := s.sameBothWays(t, "retry", "--queue", "mail", "--dry-run")
	if strings.TrimSpace(r.stdout) != "would retry 3 tasks (dry run: nothing changed)" {
		t.Errorf("dry run:\n%s", r)
	}
	res := decode[api.BulkResult](t, ok(t, runWeft(t, "retry", "--queue", "mail", "--state", "failed", "--format", "json", "--server", s.url)).stdout)
	if res != (api.BulkResult{Action: "retry", Matched: 2, Changed: 2}) {
		t.Errorf("retry = %+v", res)
	}
	if r := ok(t, runWeft(t, "cancel", "--queue", "mail", "--database", s.path)); strings.TrimSpace(r.stdout) != "cancelled 3 tasks" {
		t.Errorf("cancel:\n%s", r)
	}
	// By ids; an id of a task in another state, or of none, is not
	// matched, and the command says so.
	r = ok(t, runWeft(t, "delete", ids[3], other[0], "--server", s.url))
	if strings.TrimSpace(r.stdout) != "deleted 2 tasks" {
		t.Errorf("delete by ids:\n%s", r)
	}
	r = s.sameBothWays(t, "run-now", ids[0], ids[3])
	if strings.TrimSpace(r.stdout) != "made ready 0 tasks" {
		t.Errorf("run-now of a cancelled and a deleted task:\n%s", r)
	}
	failsWith(t, r, exitError, "run-now: 2 tasks of the 2 ids given not matched: unknown, or not pending and scheduled for later")
	if n := countTasks(t, s.st); n != 4 {
		t.Fatalf("%d tasks left, want 4", n)
	}
	r = ok(t, runWeft(t, "run-now", "--all", "--server", s.url))
	if strings.TrimSpace(r.stdout) != "made ready 0 tasks" {
		t.Errorf("run-now:\n%s", r)
	}

	// Bad selections are usage errors; nothing is changed.
	before := ok(t, runWeft(t, "list", "--format", "json", "--database", s.path)).stdout
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"retry"}, exitUsage, "select the tasks to retry"},
		{[]string{"cancel", ids[0], "--queue", "mail"}, exitUsage, "exclude each other"},
		{[]string{"delete", "--state", "pending"}, exitUsage, "--state: delete applies to completed, failed, cancelled, skipped tasks, not pending ones"},
		{[]string{"retry", "--state", "broken"}, exitUsage, `--state: "broken" is not a state`},
		{[]string{"cancel", "--since", "last week"}, exitUsage, `--since: "last week" is not a time`},
		{[]string{"cancel", "not-an-id"}, exitError, `422 invalid: ids[0]: "not-an-id" is not a task id`},
		{[]string{"cancel", "--queue", "no queue"}, exitError, "422 invalid: filter.queue:"},
	} {
		failsWith(t, s.sameBothWays(t, tc.args...), tc.code, tc.want)
	}
	if after := ok(t, runWeft(t, "list", "--format", "json", "--database", s.path)).stdout; after != before {
		t.Errorf("refused commands changed the tasks:\nbefore %s\nafter %s", before, after)
	}
}

func TestTaskDeleteAndRunNowCLI(t *testing.T) {
	s := newTestServer(t, "")
	id := enqueueStore(t, s.st, store.NewTask{Kind: "k", Delay: time.Hour})[0]
	r := s.sameBothWays(t, "task", id, "--delete")
	failsWith(t, r, exitError, "409 conflict", "cancel it first")
	if r := ok(t, runWeft(t, "task", id, "--run-now", "--server", s.url)); strings.TrimSpace(r.stdout) != "task "+id+": pending, ready now" {
		t.Errorf("run now:\n%s", r)
	}
	ok(t, runWeft(t, "task", id, "--cancel", "--database", s.path))
	if r := ok(t, runWeft(t, "task", id, "--delete", "--database", s.path)); strings.TrimSpace(r.stdout) != "task "+id+": deleted (it was cancelled)" {
		t.Errorf("delete:\n%s", r)
	}
	failsWith(t, s.sameBothWays(t, "task", id), exitError, "404 not_found")
	failsWith(t, runWeft(t, "task", id, "--delete", "--retry"), exitUsage, "--retry and --delete were both given")
	failsWith(t, runWeft(t, "task", id, "--delete", "--monitor"), exitUsage, "exclude each other")
}

func TestWorkersCLI(t *testing.T) {
	s := newTestServer(t, "")
	r := s.sameBothWays(t, "workers")
	if !strings.HasPrefix(r.stdout, "no workers") {
		t.Errorf("no workers:\n%s", r)
	}
	ctx := context.Background()
	id := enqueueStore(t, s.st, store.NewTask{Kind: "py.resize", Queue: "images"})[0]
	if r := ok(t, runWeft(t, "task", id, "--server", s.url)); !strings.Contains(r.stdout, "hint:        no live worker: start one that works queue images and runs kind py.resize") {
		t.Errorf("task without a worker:\n%s", r)
	}
	if err := s.st.TouchNode(ctx, store.Node{ID: "serve-1", Host: "box", PID: 42, Queues: []string{"default"}, Kinds: []string{"http"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.st.TouchWorker(ctx, store.RemoteWorker{ID: "py-1", Host: "10.0.0.7", Queues: []string{"images"}}); err != nil {
		t.Fatal(err)
	}
	list := decode[api.WorkerList](t, s.sameBothWays(t, "workers", "--format", "json").stdout)
	if len(list.Workers) != 2 || list.Workers[0].ID != "serve-1" || list.Workers[1].ID != "py-1" {
		t.Fatalf("workers = %+v", list)
	}
	r = ok(t, runWeft(t, "workers", "--server", s.url))
	for _, want := range []string{"ID", "serve-1  node    box", "py-1     remote  10.0.0.7  images   any", "live"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("workers table lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := ok(t, runWeft(t, "task", id, "--database", s.path)); strings.Contains(r.stdout, "hint:") {
		t.Errorf("a task a live worker takes has a hint:\n%s", r)
	}
	mail := enqueueStore(t, s.st, store.NewTask{Kind: "http", Queue: "mail"})[0]
	task := decode[api.Task](t, s.sameBothWays(t, "task", mail, "--format", "json").stdout)
	if task.Hint != "no live worker works queue mail (live workers work default, images)" {
		t.Errorf("hint = %q", task.Hint)
	}
	r = ok(t, runWeft(t, "queues", "--server", s.url))
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "mail ") && !strings.HasSuffix(line, "0 (none: its pending tasks wait)") ||
			strings.HasPrefix(line, "images ") && !strings.HasSuffix(line, " 1") {
			t.Errorf("queues table:\n%s", r.stdout)
		}
	}
}

func TestListOrderErrorsCLI(t *testing.T) {
	s := newTestServer(t, "")
	ids := seedStates(t, s.st, "default", store.StateCompleted, store.StateFailed, store.StatePending)
	page := decode[api.TaskList](t, s.sameBothWays(t, "list", "--order", "newest", "--limit", "2", "--format", "json").stdout)
	if len(page.Tasks) != 2 || page.Tasks[0].ID != ids[2] || page.NextCursor != ids[1] {
		t.Fatalf("newest first = %+v", page)
	}
	page = decode[api.TaskList](t, s.sameBothWays(t, "list", "--order", "newest", "--cursor", page.NextCursor, "--format", "json").stdout)
	if len(page.Tasks) != 1 || page.Tasks[0].ID != ids[0] {
		t.Fatalf("next page, newest first = %+v", page)
	}
	r := s.sameBothWays(t, "list", "--state", "failed")
	if !strings.Contains(r.stdout, "LAST ERROR") || !strings.Contains(r.stdout, "connection refused by the peer") {
		t.Errorf("failed tasks without their error:\n%s", r)
	}
	if r := s.sameBothWays(t, "list", "--since", "1h", "--until", time.Now().Add(time.Hour).Format(time.RFC3339), "--format", "json"); len(decode[api.TaskList](t, r.stdout).Tasks) != 3 {
		t.Errorf("created in the last hour:\n%s", r)
	}
	if r := s.sameBothWays(t, "list", "--since", time.Now().Add(24*time.Hour).Format(time.DateOnly)); strings.TrimSpace(r.stdout) != "no tasks" {
		t.Errorf("created from tomorrow:\n%s", r)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"list", "--order", "random"}, exitUsage, `--order: "random" is not an order`},
		{[]string{"list", "--since", "soon"}, exitUsage, `--since: "soon" is not a time`},
		{[]string{"list", "--cursor", "garbage"}, exitError, `400 bad_request: cursor: "garbage" is not a cursor`},
		{[]string{"list", "--since", "2030-01-02", "--until", "2030-01-01T00:00:00Z"}, exitError, "400 bad_request: until: 2030-01-01T00:00:00Z is not after the start of the range"},
	} {
		failsWith(t, s.sameBothWays(t, tc.args...), tc.code, tc.want)
	}
}

func TestOpsHelp(t *testing.T) {
	r := ok(t, runWeft(t, "--help"))
	for _, cmd := range []string{"schedules", "workers", "retry", "cancel", "delete", "run-now"} {
		if !strings.Contains(r.stdout, "  "+cmd+" ") {
			t.Errorf("help lacks %s:\n%s", cmd, r.stdout)
		}
	}
	for _, cmd := range [][]string{{"schedules"}, {"schedule", "set"}, {"schedule", "trigger"}, {"schedule", "pause"}, {"schedule", "show"}, {"workers"}, {"retry"}, {"cancel"}, {"delete"}, {"run-now"}} {
		r := ok(t, runWeft(t, append(cmd, "--help")...))
		if !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%v --help has no examples:\n%s", cmd, r.stdout)
		}
	}
}
