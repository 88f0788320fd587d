package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// orderFlow is a fan-out and fan-in with a compensation. Each member has
// a queue of its own, named after q and its key, so that a test runs
// exactly the member it means.
func orderFlow(q string) string {
	return strings.ReplaceAll(`{"name": "order 7", "tasks": [
  {"key": "pay", "kind": "pay", "queue": "Q-pay", "max_attempts": 1, "args": {"order": 7}},
  {"key": "pack", "kind": "pack", "queue": "Q-pack", "max_attempts": 1, "depends_on": ["pay"]},
  {"key": "label", "kind": "label", "queue": "Q-label", "max_attempts": 1, "depends_on": ["pay"]},
  {"key": "ship", "kind": "ship", "queue": "Q-ship", "max_attempts": 1, "depends_on": ["pack", "label"]},
  {"key": "refund", "kind": "refund", "queue": "Q-refund", "max_attempts": 1, "depends_on": ["pay"], "join": "none_succeeded"}
]}`, "Q", q)
}

func writeFlowFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flow.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runMembers finishes the flow's members of keys, in order, as state.
func runMembers(t *testing.T, st store.Store, tasks map[string]string, state store.State, keys ...string) {
	t.Helper()
	for _, k := range keys {
		claimAndFinish(t, st, tasks[k], state, k+" broke")
	}
}

// started runs the command line in the background; wait returns its
// result, and out is its standard output so far.
type started struct {
	out, errb syncBuffer
	done      chan int
}

func start(ctx context.Context, args ...string) *started {
	s := &started{done: make(chan int, 1)}
	go func() {
		s.done <- run(ctx, args, strings.NewReader(""), &s.out, &s.errb, func(string) (string, bool) { return "", false })
	}()
	return s
}

// waitFor waits until the command has printed want.
func (s *started) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the command did not print %q within 20s:\n%s\nstderr: %s", want, s.out.String(), s.errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *started) wait(t *testing.T) result {
	t.Helper()
	select {
	case code := <-s.done:
		return result{code: code, stdout: s.out.String(), stderr: s.errb.String()}
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not end within 30s:\n%s\nstderr: %s", s.out.String(), s.errb.String())
	}
	return result{}
}

func TestFlowCommandsDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	r := ok(t, runWeft(t, "flow", "submit", writeFlowFile(t, orderFlow("a")), "--database", path))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 7 || !strings.HasSuffix(lines[0], ": 5 tasks") || !strings.HasPrefix(lines[2], "pay ") || !strings.HasPrefix(lines[6], "refund ") {
		t.Fatalf("submit printed:\n%s", r)
	}
	enq := decode[api.FlowEnqueued](t, ok(t, cli{t: t, stdin: orderFlow("b")}.run(context.Background(), "flow", "submit", "-", "--format", "json", "--database", path)).stdout)
	if enq.ID == "" || len(enq.Tasks) != 5 {
		t.Fatalf("submitted = %+v", enq)
	}

	// The first flow fails at pay: the rest is skipped, the refund runs.
	first := strings.Fields(lines[0])[1]
	first = strings.TrimSuffix(first, ":")
	f := decode[api.Flow](t, ok(t, runWeft(t, "flow", first, "--format", "json", "--database", path)).stdout)
	tasks := map[string]string{}
	for _, m := range f.Members {
		tasks[m.Key] = m.TaskID
	}
	runMembers(t, st, tasks, store.StateFailed, "pay")
	r = ok(t, runWeft(t, "flow", first, "--database", path))
	for _, want := range []string{"name:      order 7", "state:     running", "progress:  4/5 done (80%): 1 failed, 3 skipped; 1 active"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("flow snapshot lacks %q:\n%s", want, r.stdout)
		}
	}
	rows := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = strings.Join(f, " ")
		}
	}
	for key, want := range map[string]string{
		"pay": "pay failed pay - -", "pack": "pack skipped pack pay dependency_failed (pay)",
		"ship": "ship skipped ship label,pack dependency_skipped (", "refund": "refund pending refund pay (none_succeeded) -",
	} {
		if !strings.HasPrefix(rows[key], want) {
			t.Errorf("member row %q, want %q", rows[key], want)
		}
	}
	runMembers(t, st, tasks, store.StateCompleted, "refund")
	// The refund absorbed the failure.
	r = ok(t, runWeft(t, "flow", first, "--monitor", "--database", path))
	evs := ndjson[api.Event](t, r.stdout)
	if len(evs) == 0 || evs[0].Key != "pay" || evs[0].Type != "created" || evs[len(evs)-1].Key != "refund" || evs[len(evs)-1].Type != "completed" {
		t.Errorf("monitor of a succeeded flow printed:\n%s", r)
	}
	failsWith(t, runWeft(t, "flow", "cancel", first, "--database", path), exitError, "409 already_finished")

	// The second fails with nothing to absorb it, then is retried.
	tasks = enq.Tasks
	runMembers(t, st, tasks, store.StateCompleted, "pay", "pack")
	runMembers(t, st, tasks, store.StateFailed, "label")
	failsWith(t, runWeft(t, "flow", enq.ID, "--monitor", "--format", "human", "--database", path), exitTaskFailed, "flow "+enq.ID+" failed")
	r = ok(t, runWeft(t, "flow", "retry", enq.ID, "--database", path))
	if !strings.Contains(r.stdout, "running again (1 pending, 1 blocked; 2 completed kept)") {
		t.Errorf("retry printed:\n%s", r)
	}
	runMembers(t, st, tasks, store.StateCompleted, "label", "ship")
	r = ok(t, runWeft(t, "flow", enq.ID, "--monitor", "--format", "human", "--database", path))
	if !strings.Contains(r.stdout, "] succeeded 5/5 done (100%): 4 completed, 1 skipped") {
		t.Errorf("human monitor printed:\n%s", r)
	}
	failsWith(t, runWeft(t, "flow", "retry", enq.ID, "--database", path), exitError, "409 conflict")

	// A cancelled flow.
	enq = decode[api.FlowEnqueued](t, ok(t, runWeft(t, "flow", "submit", writeFlowFile(t, orderFlow("c")), "--format", "json", "--database", path)).stdout)
	r = ok(t, runWeft(t, "flow", "cancel", enq.ID, "--database", path))
	if strings.TrimSpace(r.stdout) != "flow "+enq.ID+": cancelled" {
		t.Errorf("cancel printed:\n%s", r)
	}
	failsWith(t, runWeft(t, "flow", enq.ID, "--monitor", "--database", path), exitTaskCancelled, "was cancelled")
	failsWith(t, runWeft(t, "flow", "01a20000-0000-7000-8000-000000000000", "--monitor", "--database", path), exitFlowNotFound, "flow_not_found")
	failsWith(t, runWeft(t, "flow", "01a20000-0000-7000-8000-000000000000", "--database", path), exitError, "404 flow_not_found")

	r = ok(t, runWeft(t, "flows", "--database", path))
	if n := strings.Count(r.stdout, "order 7"); n != 3 || !strings.Contains(r.stdout, "cancelled") || !strings.Contains(r.stdout, "5/5") {
		t.Errorf("flows printed:\n%s", r)
	}
	list := decode[api.FlowList](t, ok(t, runWeft(t, "flows", "--state", "cancelled", "--format", "json", "--database", path)).stdout)
	if len(list.Flows) != 1 || list.Flows[0].ID != enq.ID {
		t.Errorf("cancelled flows = %+v", list)
	}
	r = ok(t, runWeft(t, "flows", "--limit", "1", "--database", path))
	if !strings.Contains(r.stderr, "more flows: add --cursor") {
		t.Errorf("first page:\n%s", r)
	}
	if all := ndjson[api.Flow](t, ok(t, runWeft(t, "flows", "--limit", "1", "--all", "--format", "ndjson", "--database", path)).stdout); len(all) != 3 {
		t.Errorf("all pages = %d flows, want 3", len(all))
	}
	failsWith(t, runWeft(t, "flows", "--state", "done", "--database", path), exitUsage, "not a flow state")
}

func TestFlowSubmitBadFile(t *testing.T) {
	path, st := testenv.SQLite(t)
	cases := []struct {
		name, body string
		want       []string
	}{
		{"not JSON", `{"tasks": [`, []string{"not valid JSON"}},
		{"no tasks", `{"name": "x"}`, []string{"tasks: missing"}},
		{"unknown field", `{"tasks": [{"key": "a", "kind": "k"}, {"key": "b", "kind": "k", "depends_ob": ["a"]}]}`, []string{"tasks[1]", `unknown field "depends_ob"`}},
		{"wrong type", `{"tasks": [{"key": "a", "kind": "k", "depends_on": "b"}]}`, []string{"tasks[0]", "depends_on"}},
		{"cycle", `{"tasks": [{"key": "a", "kind": "k", "depends_on": ["b"]}, {"key": "b", "kind": "k", "depends_on": ["a"]}]}`,
			[]string{"422 invalid: tasks[0].depends_on: dependency cycle: a -> b -> a"}},
		{"unknown key", `{"tasks": [{"key": "a", "kind": "k", "depends_on": ["nope"]}]}`, []string{"tasks[0].depends_on[0]", `"nope"`}},
		{"bad delay", `{"tasks": [{"key": "a", "kind": "k", "delay": "soon"}]}`, []string{"tasks[0].delay"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			failsWith(t, runWeft(t, "flow", "submit", writeFlowFile(t, tc.body), "--database", path), exitError, tc.want...)
		})
	}
	failsWith(t, runWeft(t, "flow", "submit", filepath.Join(t.TempDir(), "none.json"), "--database", path), exitError, "no such file")
	failsWith(t, runWeft(t, "flow", "submit", "--database", path), exitUsage, "one file name")
	if n := countTasks(t, st); n != 0 {
		t.Fatalf("bad flows wrote %d tasks", n)
	}
}

// TestFlowHTTP runs the flow commands against a server: they print what
// they print on the database, and the monitor follows a flow that remote
// members finish while it watches.
func TestFlowHTTP(t *testing.T) {
	s := newTestServer(t, "")
	enq := decode[api.FlowEnqueued](t, ok(t, runWeft(t, "flow", "submit", writeFlowFile(t, orderFlow("a")), "--format", "json", "--server", s.url)).stdout)
	for _, args := range [][]string{{"flow", enq.ID}, {"flow", enq.ID, "--format", "json"}, {"flows", "--format", "ndjson"}} {
		viaServer, direct := s.both(t, args...)
		// Times are shown relative to now in human output: compare
		// what does not move.
		if a, b := ok(t, viaServer).stdout, ok(t, direct).stdout; stripTimes(a) != stripTimes(b) {
			t.Errorf("%v differs:\nserver: %s\ndirect: %s", args, a, b)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mon := start(ctx, "flow", enq.ID, "--monitor", "--server", s.url)
	mon.waitFor(t, `"key":"refund"`)
	runMembers(t, s.st, enq.Tasks, store.StateCompleted, "pay", "pack", "label", "ship")
	r := mon.wait(t)
	if r.code != 0 {
		t.Fatalf("monitor exit %d, want 0\n%s", r.code, r)
	}
	evs := ndjson[api.Event](t, r.stdout)
	last := evs[len(evs)-1]
	if last.Key != "ship" || last.Type != "completed" {
		t.Errorf("last event %+v, want ship's completion", last)
	}
	skipped := false
	for _, e := range evs {
		skipped = skipped || (e.Key == "refund" && e.Type == "skipped")
	}
	if !skipped {
		t.Errorf("no skipped event for the refund:\n%s", r.stdout)
	}

	// The progress view, one line per change off a terminal.
	enq = decode[api.FlowEnqueued](t, ok(t, runWeft(t, "flow", "submit", writeFlowFile(t, orderFlow("b")), "--format", "json", "--server", s.url)).stdout)
	mon = start(ctx, "flow", enq.ID, "--monitor", "--format", "human", "--server", s.url)
	mon.waitFor(t, "] running 0/5 done (0%); 1 active, 4 blocked\n")
	runMembers(t, s.st, enq.Tasks, store.StateFailed, "pay")
	mon.waitFor(t, "1 failed, 3 skipped; 1 active\n")
	ok(t, runWeft(t, "flow", "cancel", enq.ID, "--server", s.url))
	r = mon.wait(t)
	if r.code != exitTaskCancelled || !strings.HasSuffix(r.stdout, "] cancelled 5/5 done (100%): 1 failed, 1 cancelled, 3 skipped\n") {
		t.Errorf("monitor of a cancelled flow: exit %d\n%s", r.code, r)
	}
	failsWith(t, runWeft(t, "flow", "01a20000-0000-7000-8000-000000000000", "--monitor", "--format", "human", "--server", s.url), exitFlowNotFound, "flow_not_found")
}

// stripTimes drops the times of a human flow snapshot, which are shown
// relative to now.
func stripTimes(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "created:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
