package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// result is one run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// syncBuffer is a bytes.Buffer safe to read while a command writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cli runs the command line with args, an environment of env only (so
// the tester's own WEFT_* variables never leak in), and stdin.
type cli struct {
	t     *testing.T
	env   map[string]string
	stdin string
}

func (c cli) run(ctx context.Context, args ...string) result {
	c.t.Helper()
	var out, errb syncBuffer
	code := run(ctx, args, strings.NewReader(c.stdin), &out, &errb, func(k string) (string, bool) {
		v, ok := c.env[k]
		return v, ok
	})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// runWeft runs the command line with a background context.
func runWeft(t *testing.T, args ...string) result {
	t.Helper()
	return cli{t: t}.run(context.Background(), args...)
}

// ok fails the test unless r exited 0.
func ok(t *testing.T, r result) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("unexpected failure:\n%s", r)
	}
	return r
}

// failsWith checks r's exit code and that stderr contains every want.
func failsWith(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\n%s", r.code, code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q\n%s", w, r)
		}
	}
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, s, err)
	}
	return v
}

// compact removes the indentation --format json adds to embedded JSON.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	return b.String()
}

func ndjson[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, decode[T](t, sc.Text()))
	}
	return out
}

func countTasks(t *testing.T, st store.Store) int {
	t.Helper()
	tasks, err := st.List(context.Background(), store.ListParams{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(tasks)
}

func enqueueStore(t *testing.T, st store.Store, tasks ...store.NewTask) []string {
	t.Helper()
	res, err := st.Enqueue(context.Background(), tasks)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	return ids
}

// closedServer is the URL of a port nothing listens on.
func closedServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestMigrateSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	latest := ms[len(ms)-1].Version

	r := ok(t, runWeft(t, "migrate", "--database", path))
	if !strings.Contains(r.stdout, "does not exist yet") || !strings.Contains(r.stdout, "pending") {
		t.Errorf("status of a missing file:\n%s", r)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("migrate status created the file (stat: %v)", err)
	}

	r = ok(t, runWeft(t, "migrate", "up", "--database", path))
	if want := fmt.Sprintf("from version 0 to %d", latest); !strings.Contains(r.stdout, want) {
		t.Errorf("up: stdout lacks %q\n%s", want, r)
	}
	rep := decode[migrationReport](t, ok(t, runWeft(t, "migrate", "status", "--database", path, "--format", "json")).stdout)
	if !rep.Exists || rep.Current != latest || rep.Latest != latest || len(rep.Migrations) != len(ms) || rep.Backend != "sqlite" {
		t.Errorf("status report = %+v", rep)
	}
	for _, m := range rep.Migrations {
		if !m.Applied || m.AppliedAt == nil {
			t.Errorf("migration %d not applied: %+v", m.Version, m)
		}
	}
	r = ok(t, runWeft(t, "migrate", "up", "--database", path))
	if !strings.Contains(r.stdout, "up to date") {
		t.Errorf("second up:\n%s", r)
	}
	failsWith(t, runWeft(t, "migrate", "down", "--to", "1", "--database", path), exitError, "SQLite migrations cannot be undone")
	failsWith(t, runWeft(t, "migrate", "up", "--to", "1", "--database", path), exitError, "already at version")
	failsWith(t, runWeft(t, "migrate", "up", "--to", "999", "--database", path), exitUsage, "--to")
	failsWith(t, runWeft(t, "migrate", "sideways", "--database", path), exitUsage, "subcommand")

	// The environment names the database when the flag does not.
	envPath := filepath.Join(t.TempDir(), "env.db")
	ok(t, cli{t: t, env: map[string]string{"WEFT_DATABASE_URL": envPath}}.run(context.Background(), "migrate", "up"))
	if _, err := os.Stat(envPath); err != nil {
		t.Errorf("WEFT_DATABASE_URL was not used: %v", err)
	}
}

func TestDatabasePathErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	log := testenv.Logger()
	cases := []struct {
		name, dsn, want string
	}{
		{"empty", "", "no database given"},
		{"directory", dir, "is a directory"},
		{"missing parent", filepath.Join(dir, "nope", "weft.db"), "does not exist (create it first)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := openStore(ctx, tc.dsn, log)
			if err == nil {
				st.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// Commands that only read or change tasks do not create a database.
	missing := filepath.Join(dir, "typo.db")
	failsWith(t, runWeft(t, "list", "--database", missing), exitError, "does not exist", "weft migrate up")
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("list created %s", missing)
	}
	failsWith(t, runWeft(t, "migrate", "--database", dir), exitError, "is a directory")

	if got := redactURL("postgres://weft:hunter2@db:5432/app"); strings.Contains(got, "hunter2") {
		t.Errorf("redactURL kept the password: %s", got)
	}
}

func TestEnqueueDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	before := time.Now()
	r := ok(t, runWeft(t, "enqueue", "email", "--database", path, "--format", "json",
		"--args", `{"to": "a@example.com"}`, "--queue", "mail", "--priority", "5", "--delay", "1h",
		"--unique-key", "u1", "--max-attempts", "3", "--timeout", "30s", "--metadata", `{"team":"x"}`))
	enq := decode[api.Enqueued](t, r.stdout)
	if enq.ID == "" || enq.Duplicate {
		t.Fatalf("enqueued = %+v", enq)
	}
	task := decode[api.Task](t, ok(t, runWeft(t, "task", enq.ID, "--database", path, "--format", "json")).stdout)
	if task.Kind != "email" || task.Queue != "mail" || task.Priority != 5 || task.MaxAttempts != 3 ||
		task.Timeout != "30s" || task.UniqueKey != "u1" || compact(t, task.Args) != `{"to":"a@example.com"}` ||
		compact(t, task.Metadata) != `{"team":"x"}` || task.State != "pending" {
		t.Errorf("task = %+v", task)
	}
	if d := task.RunAt.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("run_at is %s after the enqueue, want 1h", d)
	}

	// Human output is the bare id; a duplicate is noted on stderr.
	r = ok(t, runWeft(t, "enqueue", "email", "--database", path, "--queue", "mail", "--unique-key", "u1"))
	if strings.TrimSpace(r.stdout) != enq.ID || !strings.Contains(r.stderr, "duplicate of "+enq.ID) {
		t.Errorf("duplicate enqueue:\n%s", r)
	}

	// --args @file and --args - (standard input).
	file := filepath.Join(t.TempDir(), "args.json")
	if err := os.WriteFile(file, []byte(`{"n": 1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(ok(t, runWeft(t, "enqueue", "count", "--database", path, "--args", "@"+file)).stdout)
	if got, err := st.Get(context.Background(), id); err != nil || string(got.Args) != `{"n":1}` {
		t.Errorf("args from file: %s, %v", got.Args, err)
	}
	id = strings.TrimSpace(ok(t, cli{t: t, stdin: `{"n": 2}`}.run(context.Background(), "enqueue", "count", "--database", path, "--args", "-")).stdout)
	if got, err := st.Get(context.Background(), id); err != nil || string(got.Args) != `{"n":2}` {
		t.Errorf("args from stdin: %s, %v", got.Args, err)
	}

	// --at, and no --args at all.
	at := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	id = strings.TrimSpace(ok(t, runWeft(t, "enqueue", "later", "--database", path, "--at", at.Format(time.RFC3339))).stdout)
	if got, err := st.Get(context.Background(), id); err != nil || !got.RunAt.Equal(at) || string(got.Args) != "{}" {
		t.Errorf("--at: run_at %s args %s (%v), want %s {}", got.RunAt, got.Args, err, at)
	}

	// A kind the store refuses is reported as the server would, and so are
	// flags that parse but break the store's rules.
	failsWith(t, runWeft(t, "enqueue", "9lives", "--database", path), exitError, "422 invalid: kind:")
	failsWith(t, runWeft(t, "enqueue", "k", "--database", path, "--delay", "-5s"), exitError, "422 invalid: delay: -5s is negative")
	failsWith(t, runWeft(t, "enqueue", "k", "--database", path, "--delay", "1s", "--at", "2030-01-01T00:00:00Z"), exitError, "422 invalid: delay:", "not both")
	failsWith(t, runWeft(t, "enqueue", "k", "--database", path, "--timeout", "-1s"), exitError, "422 invalid: timeout:")

	// Zero means the default: no timeout, 25 attempts.
	id = strings.TrimSpace(ok(t, runWeft(t, "enqueue", "k", "--database", path, "--timeout", "0s", "--max-attempts", "0")).stdout)
	got, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.AttemptTimeout != 0 || got.MaxAttempts != store.DefaultMaxAttempts {
		t.Errorf("--timeout 0s --max-attempts 0: timeout %s, max attempts %d, want none and %d", got.AttemptTimeout, got.MaxAttempts, store.DefaultMaxAttempts)
	}
}

func TestBadInput(t *testing.T) {
	path, st := testenv.SQLite(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad args JSON", []string{"enqueue", "k", "--args", `{bad`}, "--args: not valid JSON"},
		{"args with trailing data", []string{"enqueue", "k", "--args", `{"a":1} x`}, "extra data"},
		{"empty args", []string{"enqueue", "k", "--args", " "}, "empty, expected JSON"},
		{"missing args file", []string{"enqueue", "k", "--args", "@/nonexistent/args.json"}, "--args"},
		{"unknown format", []string{"list", "--format", "yaml"}, `--format: "yaml" is not a format`},
		{"bad delay", []string{"enqueue", "k", "--delay", "10"}, `--delay: "10" is not a duration`},
		{"bad at", []string{"enqueue", "k", "--at", "tomorrow"}, "--at"},
		{"bad timeout", []string{"enqueue", "k", "--timeout", "soon"}, `--timeout: "soon" is not a duration`},
		{"metadata not an object", []string{"enqueue", "k", "--metadata", "[1]"}, "must be a JSON object"},
		{"no kind", []string{"enqueue"}, "expected the task kind"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"list", "--bogus"}, "unknown flag: --bogus"},
		{"bad state", []string{"list", "--state", "pending,nope"}, `--state: "nope" is not a state`},
		{"bad limit", []string{"list", "--limit", "5000"}, "--limit"},
		{"bad log level", []string{"list", "--log-level", "loud"}, "--log-level"},
		{"bad log format", []string{"list", "--log-format", "xml"}, "--log-format"},
		{"cancel and retry", []string{"task", "x", "--cancel", "--retry"}, "choose one"},
		{"bad priority", []string{"enqueue", "k", "--priority", "high"}, "invalid argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runWeft(t, append(tc.args, "--database", path)...)
			failsWith(t, r, exitUsage, tc.want, "--help")
			if !strings.HasPrefix(r.stderr, "weft: ") {
				t.Errorf("stderr does not start with \"weft: \":\n%s", r)
			}
			if r.stdout != "" {
				t.Errorf("usage error wrote to stdout:\n%s", r)
			}
			if strings.Contains(r.stderr, "Usage:") || strings.Contains(r.stderr, "goroutine") {
				t.Errorf("usage dump or stack on stderr:\n%s", r)
			}
		})
	}
	if n := countTasks(t, st); n != 0 {
		t.Errorf("bad input enqueued %d tasks", n)
	}
}

func TestBatchDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	existing := enqueueStore(t, st, store.NewTask{Kind: "email", UniqueKey: "dup"})[0]

	good := write("good.ndjson", `{"kind":"email","args":{"to":"a"}}`+"\n\n"+
		`{"kind":"email","unique_key":"dup"}`+"\n"+
		`  {"kind":"report","queue":"reports","delay":"1h","priority":3}  `+"\n")
	r := ok(t, runWeft(t, "batch", good, "--database", path))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || lines[0] != "enqueued 2 tasks (1 duplicate)" || lines[2] != existing+" (duplicate)" {
		t.Fatalf("batch output:\n%s", r)
	}
	if n := countTasks(t, st); n != 3 {
		t.Errorf("%d tasks stored, want 3", n)
	}

	// JSON output and standard input.
	r = ok(t, cli{t: t, stdin: `{"kind":"a"}` + "\n" + `{"kind":"b"}`}.run(context.Background(), "batch", "-", "--database", path, "--format", "json"))
	be := decode[api.BatchEnqueued](t, r.stdout)
	if len(be.Tasks) != 2 || be.Tasks[0].ID == "" || be.Tasks[0].Duplicate {
		t.Errorf("json batch = %+v", be)
	}

	before := countTasks(t, st)
	bad := []struct {
		name, content, want string
	}{
		{"unknown field", `{"kind":"a"}` + "\n\n" + `{"kind":"b","queu":"x"}` + "\n", `line 3: unknown field "queu"`},
		{"not JSON", `{"kind":"a"}` + "\n" + `{"kind":` + "\n", "line 2: not valid JSON"},
		{"two objects on a line", `{"kind":"a"} {"kind":"b"}`, "line 1: extra data"},
		{"wrong type", `{"kind":"a","priority":"high"}`, "line 1: priority: expected int"},
		{"not an object", `[1,2]`, "line 1: expected a JSON object"},
		{"no kind", `{"args":{}}`, "line 1: kind: must not be empty"},
		{"invalid delay", `{"kind":"a"}` + "\n\n" + `{"kind":"b"}` + "\n" + `{"kind":"c","delay":"soon"}` + "\n", `line 4: delay: "soon" is not a duration`},
		{"invalid kind", `{"kind":"a"}` + "\n" + `{"kind":"9c"}`, `line 2: kind: "9c" is not a valid name`},
		{"bad run_at", `{"kind":"a","run_at":"tomorrow"}`, `line 1: run_at: "tomorrow" is not an RFC 3339 time`},
		// Every bad line is reported, not only the first or the last.
		{"several bad lines", `{"kind":"a","run_at":"tomorrow"}` + "\n" + `{"kind":"b"}` + "\n" + `{"kind":"c","run_at":"2030-13-01T00:00:00Z"}` + "\n" + `{"kind":""}`,
			"3 bad lines, nothing was enqueued:\n  line 1: run_at: \"tomorrow\" is not an RFC 3339 time (for example 2030-01-02T15:04:05Z)\n  line 3: run_at: \"2030-13-01T00:00:00Z\" is not an RFC 3339 time (for example 2030-01-02T15:04:05Z)\n  line 4: kind: must not be empty\n"},
		// Found by the store, mapped back from tasks[1] to its line.
		{"priority out of range", `{"kind":"a"}` + "\n\n" + `{"kind":"b","priority":3000000000}`, "line 3: 422 invalid: tasks[1].priority"},
		{"empty", "\n\n", "no tasks"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			failsWith(t, runWeft(t, "batch", write(tc.name+".ndjson", tc.content), "--database", path), exitError, tc.want)
		})
	}

	var big strings.Builder
	for i := 0; i <= api.MaxBatch; i++ {
		big.WriteString(`{"kind":"bulk"}` + "\n")
	}
	failsWith(t, runWeft(t, "batch", write("big.ndjson", big.String()), "--database", path), exitError,
		fmt.Sprintf("has %d tasks, more than the %d one batch may hold", api.MaxBatch+1, api.MaxBatch))
	failsWith(t, runWeft(t, "batch", filepath.Join(dir, "missing.ndjson"), "--database", path), exitError, "no such file")

	if n := countTasks(t, st); n != before {
		t.Errorf("failed batches stored %d tasks", n-before)
	}
}

func TestListDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	ids := enqueueStore(t, st,
		store.NewTask{Kind: "a", Queue: "q1"}, store.NewTask{Kind: "b", Queue: "q1"},
		store.NewTask{Kind: "a", Queue: "q2"}, store.NewTask{Kind: "c", Queue: "q2"},
		store.NewTask{Kind: "a", Queue: "q2"})
	if _, err := st.Cancel(context.Background(), ids[1]); err != nil {
		t.Fatal(err)
	}

	page := decode[api.TaskList](t, ok(t, runWeft(t, "list", "--database", path, "--limit", "2", "--format", "json")).stdout)
	if len(page.Tasks) != 2 || page.Tasks[0].ID != ids[0] || page.NextCursor != ids[1] {
		t.Errorf("first page = %+v", page)
	}
	page = decode[api.TaskList](t, ok(t, runWeft(t, "list", "--database", path, "--limit", "2", "--cursor", page.NextCursor, "--format", "json")).stdout)
	if len(page.Tasks) != 2 || page.Tasks[0].ID != ids[2] {
		t.Errorf("second page = %+v", page)
	}

	all := ndjson[api.Task](t, ok(t, runWeft(t, "list", "--database", path, "--limit", "2", "--all", "--format", "ndjson")).stdout)
	if len(all) != 5 {
		t.Fatalf("--all listed %d tasks, want 5", len(all))
	}
	for i, tk := range all {
		if tk.ID != ids[i] {
			t.Errorf("task %d = %s, want %s", i, tk.ID, ids[i])
		}
	}
	list := decode[api.TaskList](t, ok(t, runWeft(t, "list", "--database", path, "--limit", "2", "--all", "--format", "json")).stdout)
	if len(list.Tasks) != 5 || list.NextCursor != "" {
		t.Errorf("--all json = %d tasks, cursor %q", len(list.Tasks), list.NextCursor)
	}

	list = decode[api.TaskList](t, ok(t, runWeft(t, "list", "--database", path, "--state", "cancelled", "--format", "json")).stdout)
	if len(list.Tasks) != 1 || list.Tasks[0].ID != ids[1] {
		t.Errorf("--state cancelled = %+v", list.Tasks)
	}
	list = decode[api.TaskList](t, ok(t, runWeft(t, "list", "--database", path, "--queue", "q2", "--kind", "a", "--format", "json")).stdout)
	if len(list.Tasks) != 2 {
		t.Errorf("--queue q2 --kind a = %d tasks, want 2", len(list.Tasks))
	}

	r := ok(t, runWeft(t, "list", "--database", path, "--queue", "q1"))
	if !strings.HasPrefix(r.stdout, "ID ") || !strings.Contains(r.stdout, ids[0]) || !strings.Contains(r.stdout, "cancelled") || strings.Contains(r.stdout, ids[2]) {
		t.Errorf("human list:\n%s", r)
	}
	r = ok(t, runWeft(t, "list", "--database", path, "--limit", "2"))
	if !strings.Contains(r.stderr, "--cursor "+ids[1]) {
		t.Errorf("no next-page hint:\n%s", r)
	}
	r = ok(t, runWeft(t, "list", "--database", path, "--kind", "zzz"))
	if strings.TrimSpace(r.stdout) != "no tasks" {
		t.Errorf("empty list:\n%s", r)
	}
}

func TestQueuesDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	enqueueStore(t, st, store.NewTask{Kind: "a", Queue: "mail"}, store.NewTask{Kind: "a", Queue: "mail"}, store.NewTask{Kind: "a"})

	q := decode[api.Queue](t, ok(t, runWeft(t, "queues", "pause", "mail", "--database", path, "--format", "json")).stdout)
	if q.Name != "mail" || !q.Paused || q.Counts["pending"] != 2 {
		t.Errorf("paused queue = %+v", q)
	}
	list := decode[api.QueueList](t, ok(t, runWeft(t, "queues", "--database", path, "--format", "json")).stdout)
	if len(list.Queues) != 2 || list.Queues[1].Name != "mail" || !list.Queues[1].Paused || list.Queues[0].Counts["pending"] != 1 {
		t.Errorf("queues = %+v", list)
	}
	r := ok(t, runWeft(t, "queues", "--database", path))
	if !strings.Contains(r.stdout, "QUEUE") || !strings.Contains(r.stdout, "mail") || !strings.Contains(r.stdout, "yes") {
		t.Errorf("queues table:\n%s", r)
	}
	r = ok(t, runWeft(t, "queues", "resume", "mail", "--database", path))
	if !strings.Contains(r.stdout, "queue mail resumed (2 pending, 0 running)") {
		t.Errorf("resume:\n%s", r)
	}
	// A queue that does not exist is refused, most likely a typo, and
	// nothing is paused...
	failsWith(t, runWeft(t, "queues", "pause", "mial", "--database", path), exitError, `no queue named "mial" (the queues are default, mail)`, "--create")
	failsWith(t, runWeft(t, "queues", "resume", "mial", "--database", path), exitError, `no queue named "mial"`, "nothing to resume")
	if list := decode[api.QueueList](t, ok(t, runWeft(t, "queues", "--database", path, "--format", "json")).stdout); len(list.Queues) != 2 {
		t.Errorf("a refused pause created a queue: %+v", list)
	}
	// ...but a queue may be paused before it has a task, on request.
	q = decode[api.Queue](t, ok(t, runWeft(t, "queues", "pause", "later", "--create", "--database", path, "--format", "json")).stdout)
	if !q.Paused || q.Counts["pending"] != 0 {
		t.Errorf("empty paused queue = %+v", q)
	}
	// As the server answers it: the name is part of the request's path.
	failsWith(t, runWeft(t, "queues", "pause", "9bad", "--database", path), exitError, "400 bad_request: name:")
	failsWith(t, runWeft(t, "queues", "pause", "--database", path), exitUsage, "one queue name")
}

func TestTaskSnapshotCancelRetryDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	ids := enqueueStore(t, st, store.NewTask{Kind: "email", Args: json.RawMessage(`{"to":"a"}`), UniqueKey: "k"})
	id := ids[0]

	r := ok(t, runWeft(t, "task", id, "--database", path))
	for _, want := range []string{"id:          " + id, "kind:        email", "state:       pending", "attempt:     0/25", `"to": "a"`, "unique key:  k"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("snapshot lacks %q:\n%s", want, r.stdout)
		}
	}

	r = ok(t, runWeft(t, "task", id, "--cancel", "--database", path))
	if strings.TrimSpace(r.stdout) != "task "+id+": cancelled" {
		t.Errorf("cancel:\n%s", r)
	}
	failsWith(t, runWeft(t, "task", id, "--cancel", "--database", path), exitError, "409 conflict", "already cancelled")

	tk := decode[api.Task](t, ok(t, runWeft(t, "task", id, "--retry", "--database", path, "--format", "json")).stdout)
	if tk.State != "pending" {
		t.Errorf("retried task = %+v", tk)
	}
	failsWith(t, runWeft(t, "task", id, "--retry", "--database", path), exitError, "409 conflict")
	failsWith(t, runWeft(t, "task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e", "--database", path), exitError, "404 not_found")

	// A failed task shows its errors.
	claimAndFinish(t, st, id, store.StateFailed, "boom: the receiver said no")
	r = ok(t, runWeft(t, "task", id, "--database", path))
	if !strings.Contains(r.stdout, "errors:      1") || !strings.Contains(r.stdout, "boom: the receiver said no") || !strings.Contains(r.stdout, "finalized:") {
		t.Errorf("failed snapshot:\n%s", r.stdout)
	}
}

// claimAndFinish claims task id through the store and records state as
// its outcome, as a worker would.
func claimAndFinish(t *testing.T, st store.Store, id string, state store.State, errMsg string) {
	t.Helper()
	ctx := context.Background()
	tk, err := st.Get(ctx, id)
	if err != nil {
		t.Error(err)
		return
	}
	claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "test", Queues: []store.QueueClaim{{Queue: tk.Queue, Limit: 100}}, LeaseTTL: time.Minute})
	if err != nil {
		t.Error(err)
		return
	}
	var epoch int64
	for _, c := range claimed {
		if c.ID == id {
			epoch = c.LeaseEpoch
		}
	}
	if epoch == 0 {
		t.Errorf("task %s was not claimed", id)
		return
	}
	o := store.Outcome{TaskID: id, Epoch: epoch, State: state}
	switch state {
	case store.StateCompleted:
		o.Event, o.Result = store.EventCompleted, json.RawMessage(`{"ok":true}`)
	case store.StateFailed:
		o.Event = store.EventFailed
		o.Error = &store.AttemptError{Attempt: 1, At: time.Now(), Error: errMsg}
	case store.StateCancelled:
		o.Event = store.EventCancelled
	}
	res, err := st.Finish(ctx, []store.Outcome{o})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Error(err)
	}
}

func TestMonitorDirect(t *testing.T) {
	cases := []struct {
		state store.State
		code  int
		note  string
	}{
		{store.StateCompleted, exitTaskCompleted, ""},
		{store.StateFailed, exitTaskFailed, "failed: it broke"},
		{store.StateCancelled, exitTaskCancelled, "was cancelled"},
	}
	for _, tc := range cases {
		t.Run(string(tc.state), func(t *testing.T) {
			path, st := testenv.SQLite(t)
			id := enqueueStore(t, st, store.NewTask{Kind: "job"})[0]
			go func() {
				// Let the monitor catch up with the created event
				// first, so it has to follow.
				time.Sleep(300 * time.Millisecond)
				claimAndFinish(t, st, id, tc.state, "it broke")
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r := cli{t: t}.run(ctx, "task", id, "--monitor", "--database", path)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r)
			}
			if tc.note != "" && !strings.Contains(r.stderr, tc.note) {
				t.Errorf("stderr lacks %q\n%s", tc.note, r)
			}
			evs := ndjson[api.Event](t, r.stdout)
			var types []string
			for _, e := range evs {
				types = append(types, e.Type)
				if e.TaskID != id || e.Seq == 0 {
					t.Errorf("event = %+v", e)
				}
			}
			want := "created started " + string(tc.state)
			if strings.Join(types, " ") != want {
				t.Errorf("events = %v, want %s", types, want)
			}
		})
	}
}

func TestMonitorFinishedTaskAndHumanFormat(t *testing.T) {
	path, st := testenv.SQLite(t)
	id := enqueueStore(t, st, store.NewTask{Kind: "job"})[0]
	claimAndFinish(t, st, id, store.StateCompleted, "")
	r := ok(t, runWeft(t, "task", id, "--monitor", "--format", "human", "--database", path))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "created") || !strings.Contains(lines[2], "completed") {
		t.Errorf("human monitor:\n%s", r)
	}
	failsWith(t, runWeft(t, "task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e", "--monitor", "--database", path), exitTaskUnknown, "404 not_found")

	// --cancel --monitor waits for the outcome.
	id = enqueueStore(t, st, store.NewTask{Kind: "job"})[0]
	r = runWeft(t, "task", id, "--cancel", "--monitor", "--database", path)
	if r.code != exitTaskCancelled || !strings.Contains(r.stdout, `"type":"cancelled"`) {
		t.Errorf("cancel and monitor:\n%s", r)
	}
}

func TestMonitorInterrupted(t *testing.T) {
	path, st := testenv.SQLite(t)
	id := enqueueStore(t, st, store.NewTask{Kind: "job"})[0]
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	r := cli{t: t}.run(ctx, "task", id, "--monitor", "--database", path)
	if r.code != exitInterrupted || strings.TrimSpace(r.stderr) != "weft: interrupted" {
		t.Errorf("interrupted monitor:\n%s", r)
	}
	if evs := ndjson[api.Event](t, r.stdout); len(evs) != 1 || evs[0].Type != "created" {
		t.Errorf("events = %+v", evs)
	}
}

func TestBackendSelection(t *testing.T) {
	path, _ := testenv.SQLite(t)
	down := closedServer(t)
	// WEFT_DATABASE_URL alone does not switch commands to the database:
	// it is for serve and migrate.
	c := cli{t: t, env: map[string]string{"WEFT_DATABASE_URL": path, "WEFT_SERVER": down}}
	failsWith(t, c.run(context.Background(), "list"), exitError,
		"cannot reach the Weft server at "+down, "is `weft serve` running? (set --server or WEFT_SERVER)")
	// The flag beats the environment.
	ok(t, c.run(context.Background(), "list", "--database", path))
	failsWith(t, runWeft(t, "list", "--server", down, "--database", path), exitUsage, "choose one")
	failsWith(t, runWeft(t, "list", "--server", "localhost:7070"), exitUsage, "--server")
}

func TestVersion(t *testing.T) {
	r := ok(t, runWeft(t, "version"))
	if !strings.HasPrefix(r.stdout, "weft ") || !strings.Contains(r.stdout, "go1") {
		t.Errorf("version:\n%s", r)
	}
	v := decode[versionInfo](t, ok(t, runWeft(t, "version", "--format", "json")).stdout)
	if v.Version == "" || !strings.HasPrefix(v.Go, "go") || v.Platform == "" {
		t.Errorf("version json = %+v", v)
	}
}

func TestHelp(t *testing.T) {
	r := ok(t, runWeft(t, "--help"))
	for _, cmd := range []string{"serve", "enqueue", "batch", "task", "signal", "list", "queues", "migrate", "worker", "version"} {
		if !strings.Contains(r.stdout, "  "+cmd+" ") {
			t.Errorf("help lacks %s:\n%s", cmd, r.stdout)
		}
	}
	r = ok(t, runWeft(t))
	if !strings.Contains(r.stdout, "Usage:") {
		t.Errorf("no args:\n%s", r)
	}
	for _, cmd := range [][]string{{"enqueue"}, {"batch"}, {"task"}, {"signal"}, {"list"}, {"queues"}, {"queues", "pause"}, {"migrate"}, {"migrate", "down"}, {"worker"}} {
		r := ok(t, runWeft(t, append(cmd, "--help")...))
		if !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%v --help has no examples:\n%s", cmd, r.stdout)
		}
	}
}
