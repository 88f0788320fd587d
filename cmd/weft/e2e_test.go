package main_test

// End-to-end tests: the real weft binary, built once, run as subprocesses —
// `weft serve` on a real database, driven over real HTTP and through the
// real CLI, and a Python remote worker that uses only its standard library.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
)

// weftBin is the binary under test, built by TestMain.
var weftBin string

func TestMain(m *testing.M) { os.Exit(weftproc.Main(m, &weftBin)) }

// startServer runs `weft serve` on a free port and waits until it serves.
func startServer(t *testing.T, env []string, args ...string) *weftproc.Server {
	t.Helper()
	return weftproc.StartServer(t, weftBin, env, args...)
}

// enqueue enqueues through the CLI and returns the id.
func enqueue(t *testing.T, s *weftproc.Server, kind, args string, more ...string) string {
	t.Helper()
	var e api.Enqueued
	out := s.Must(t, "", append([]string{"enqueue", kind, "--args", args, "--format", "json"}, more...)...)
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.ID == "" {
		t.Fatalf("enqueue printed %q: %v", out, err)
	}
	return e.ID
}

// getTask reads a task through the CLI.
func getTask(t *testing.T, s *weftproc.Server, id string) api.Task {
	t.Helper()
	var task api.Task
	if err := json.Unmarshal([]byte(s.Must(t, "", "task", id, "--format", "json")), &task); err != nil {
		t.Fatal(err)
	}
	// Compared as compact JSON: the CLI indents what it prints.
	var b bytes.Buffer
	if len(task.Result) > 0 && json.Compact(&b, task.Result) == nil {
		task.Result = b.Bytes()
	}
	return task
}

// webhookTarget answers /ok with 200 and anything else with 404.
func webhookTarget(t *testing.T) *httptest.Server {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			fmt.Fprint(w, "pong")
			return
		}
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	t.Cleanup(hs.Close)
	return hs
}

// monitorCases follows tasks to each terminal state through `task
// --monitor`, whose exit code is the outcome.
func monitorCases(t *testing.T, s *weftproc.Server) {
	target := webhookTarget(t)
	t.Run("completed", func(t *testing.T) {
		id := enqueue(t, s, "http", fmt.Sprintf(`{"url": %q, "method": "GET"}`, target.URL+"/ok"))
		r := s.Run(t, "", "task", id, "--monitor")
		if r.Code != 0 {
			t.Fatalf("monitor exit %d, want 0\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		var last api.Event
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Type != "completed" || last.TaskID != id {
			t.Fatalf("last monitored line %q (%v), want the completed event", lines[len(lines)-1], err)
		}
		task := getTask(t, s, id)
		if task.State != "completed" || !strings.Contains(string(task.Result), `"pong"`) {
			t.Fatalf("task = %+v", task)
		}
	})
	t.Run("failed", func(t *testing.T) {
		id := enqueue(t, s, "http", fmt.Sprintf(`{"url": %q}`, target.URL+"/missing"))
		r := s.Run(t, "", "task", id, "--monitor")
		if r.Code != 1 || !strings.Contains(r.Stdout, `"failed"`) {
			t.Fatalf("monitor of a failing task: exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if human := s.Must(t, "", "task", id); !strings.Contains(human, "failed") || !strings.Contains(human, "404") {
			t.Fatalf("task snapshot does not show the failure:\n%s", human)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		id := enqueue(t, s, "nobody.works.this", `{}`)
		mon := followMonitor(t, s, id)
		s.Must(t, "", "task", id, "--cancel")
		err := mon.wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("monitor of a cancelled task: %v, want exit 2\n%s", err, mon.out.String())
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		id := enqueue(t, s, "nobody.works.this", `{}`)
		mon := followMonitor(t, s, id)
		_ = mon.cmd.Process.Signal(os.Interrupt)
		err := mon.wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || strings.Contains(mon.errb.String(), "goroutine") {
			t.Fatalf("Ctrl-C during monitor: %v, stderr %q; want a clean exit 130", err, mon.errb.String())
		}
	})
}

// monitor is a running `weft task ID --monitor`.
type monitor struct {
	cmd       *exec.Cmd
	out, errb bytes.Buffer
	read      chan struct{} // closed once stdout is read to its end
}

// followMonitor starts `weft task ID --monitor` and returns once it has
// printed the task's created event: it is following the task then, its
// signal handling in place.
func followMonitor(t *testing.T, s *weftproc.Server, id string) *monitor {
	t.Helper()
	m := &monitor{cmd: s.Command("", "task", id, "--monitor"), read: make(chan struct{})}
	m.cmd.Stderr = &m.errb
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.cmd.Process.Kill() })
	first := make(chan string, 1)
	go func() {
		defer close(m.read)
		line, _ := bufio.NewReader(io.TeeReader(stdout, &m.out)).ReadString('\n')
		first <- line
		_, _ = io.Copy(&m.out, stdout)
	}()
	fail := func(format string, a ...any) {
		t.Helper()
		_ = m.cmd.Process.Kill()
		_ = m.wait()
		t.Fatalf(format+"\nstderr: %s", append(a, m.errb.String())...)
	}
	select {
	case line := <-first:
		if !strings.Contains(line, `"created"`) {
			fail("the monitor's first line is %q, want the created event", line)
		}
	case <-time.After(time.Minute):
		fail("the monitor printed nothing within a minute")
	}
	return m
}

// wait waits for the monitor to exit, having read all it printed.
func (m *monitor) wait() error {
	<-m.read
	return m.cmd.Wait()
}

func TestServeSQLite(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"))
	monitorCases(t, s)
}

func TestServePostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	s := startServer(t, []string{"WEFT_DATABASE_URL=" + dsn})
	monitorCases(t, s)
}

// TestBatchListQueues drives the CLI's batch, list, queues and retry.
func TestBatchListQueues(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"))
	var in strings.Builder
	for i := range 25 {
		fmt.Fprintf(&in, `{"kind": "report", "queue": "reports", "args": {"n": %d}}`+"\n", i)
	}
	out := s.Must(t, in.String(), "batch", "-")
	if !strings.Contains(out, "enqueued 25 tasks") {
		t.Fatalf("batch printed %q", out)
	}
	bad := s.Run(t, "{\"kind\": \"a\"}\n{\"kind\": \"b\", \"delay\": \"soon\"}\n", "batch", "-")
	if bad.Code == 0 || !strings.Contains(bad.Stderr, "delay") {
		t.Fatalf("bad batch: exit %d, stderr %q", bad.Code, bad.Stderr)
	}
	var list api.TaskList
	if err := json.Unmarshal([]byte(s.Must(t, "", "list", "--queue", "reports", "--limit", "1000", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 25 {
		t.Fatalf("listed %d tasks, want 25 (and none of the refused batch)", len(list.Tasks))
	}
	s.Must(t, "", "queues", "pause", "reports")
	if q := s.Must(t, "", "queues"); !strings.Contains(q, "reports") || !strings.Contains(q, "yes") {
		t.Fatalf("queues after pause:\n%s", q)
	}
	id := list.Tasks[0].ID
	s.Must(t, "", "task", id, "--cancel")
	s.Must(t, "", "task", id, "--retry")
	if task := getTask(t, s, id); task.State != "pending" {
		t.Fatalf("retried task is %s", task.State)
	}
	if r := s.Run(t, "", "task", "01a20000-0000-7000-8000-000000000000"); r.Code != 1 || !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("unknown task: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestPythonWorker runs the stdlib-only Python remote worker from
// examples/ against a real server.
func TestPythonWorker(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI for the remote-worker example")
		}
		t.Skip("python3 not installed")
	}
	s := startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"))
	var ids []string
	for i := range 20 {
		ids = append(ids, enqueue(t, s, "py.upper", fmt.Sprintf(`{"text": "hello %d"}`, i)))
	}
	bad := enqueue(t, s, "py.upper", `{"text": 42}`)
	sum := enqueue(t, s, "py.sum", `{"numbers": [1, 2, 3.5]}`)
	worker := exec.Command(python, "../../examples/python-worker/worker.py", "--server", s.URL, "--exit-when-idle", "--concurrency", "4")
	var wout, werr bytes.Buffer
	worker.Stdout, worker.Stderr = &wout, &werr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = worker.Process.Kill()
	}()
	if err := worker.Run(); err != nil {
		t.Fatalf("python worker: %v\n%s", err, werr.String())
	}
	for i, id := range ids {
		task := getTask(t, s, id)
		want := fmt.Sprintf(`{"text":"HELLO %d"}`, i)
		if task.State != "completed" || string(task.Result) != want || !strings.HasPrefix(task.Worker, "py-") {
			t.Fatalf("task %d = %s %s by %q, want completed %s", i, task.State, task.Result, task.Worker, want)
		}
	}
	if task := getTask(t, s, bad); task.State != "failed" || task.Attempt != 1 || !strings.Contains(task.Errors[0].Error, "args.text") {
		t.Fatalf("bad-args task = %+v, want failed permanently at once", task)
	}
	if task := getTask(t, s, sum); task.State != "completed" || string(task.Result) != `{"sum":6.5}` {
		t.Fatalf("sum task = %+v", task)
	}
	// One line per recorded outcome: "<id> <kind> <state>".
	for _, want := range []string{ids[0] + " py.upper completed\n", sum + " py.sum completed\n", bad + " py.upper failed\n"} {
		if !strings.Contains(wout.String(), want) {
			t.Errorf("the worker's output lacks %q:\n%s", want, wout.String())
		}
	}
	if n := strings.Count(wout.String(), "\n"); n != len(ids)+2 {
		t.Errorf("the worker printed %d lines, want %d:\n%s", n, len(ids)+2, wout.String())
	}
}

// TestPythonWorkerWrongToken checks that the Python worker stops at once,
// saying why, when the server refuses its token, rather than retrying.
func TestPythonWorkerWrongToken(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is required in CI for the remote-worker example")
		}
		t.Skip("python3 not installed")
	}
	s := startServer(t, []string{"WEFT_API_TOKEN=right"}, "--database", filepath.Join(t.TempDir(), "weft.db"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	worker := exec.CommandContext(ctx, python, "../../examples/python-worker/worker.py", "--server", s.URL)
	worker.Env = append(os.Environ(), "WEFT_API_TOKEN=wrong")
	out, err := worker.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || ctx.Err() != nil {
		t.Fatalf("worker with a wrong token: %v, want exit 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "refused the token (401 unauthorized): set WEFT_API_TOKEN to the server's token") {
		t.Errorf("output:\n%s", out)
	}
}

// TestWeftWorker runs `weft worker` against `weft serve`, both the real
// binary. The server works another queue, so the worker runs the http tasks
// of "remote": an attempt is bounded by the task's timeout, and a graceful
// stop hands a task still running back without spending its attempt.
func TestWeftWorker(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"), "--queue", "local")
	held := make(chan struct{}, 1)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "pong")
			return
		case "/hold":
			held <- struct{}{}
		}
		<-r.Context().Done() // until the attempt gives up
	}))
	t.Cleanup(target.Close)
	hook := func(path string) string { return fmt.Sprintf(`{"url": %q, "method": "GET"}`, target.URL+path) }

	worker := s.Command("", "worker", "--queue", "remote", "--worker-id", "e2e-worker", "--grace", "200ms", "--lease-ttl", "3s", "--log-format", "json")
	var log bytes.Buffer
	worker.Stderr = &log
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()
	t.Cleanup(func() {
		_ = worker.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("worker log:\n%s", log.String())
		}
	})

	ok := enqueue(t, s, "http", hook("/ok"), "--queue", "remote")
	if r := s.Run(t, "", "task", ok, "--monitor"); r.Code != 0 {
		t.Fatalf("monitor: exit %d, want completed\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if task := getTask(t, s, ok); task.Worker != "e2e-worker" || !strings.Contains(string(task.Result), "pong") {
		t.Fatalf("task = %+v, want completed by the remote worker", task)
	}

	slow := enqueue(t, s, "http", hook("/slow"), "--queue", "remote", "--timeout", "300ms", "--max-attempts", "1")
	if r := s.Run(t, "", "task", slow, "--monitor"); r.Code != 1 {
		t.Fatalf("monitor: exit %d, want failed\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if task := getTask(t, s, slow); len(task.Errors) != 1 || !strings.Contains(task.Errors[0].Error, "attempt timed out after 300ms") {
		t.Fatalf("errors = %+v, want the attempt timed out", task.Errors)
	}

	stopped := enqueue(t, s, "http", hook("/hold"), "--queue", "remote")
	<-held
	if err := worker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("worker after SIGTERM: %v, want a clean exit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop")
	}
	if task := getTask(t, s, stopped); task.State != "pending" || task.Attempt != 0 || len(task.Errors) != 0 {
		t.Fatalf("task running at the stop = %s, attempt %d, errors %+v; want pending again, attempt given back", task.State, task.Attempt, task.Errors)
	}
}

// TestKillAndRestart: every acknowledged enqueue survives SIGKILL of the
// server, and SIGTERM stops it cleanly.
func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "weft.db")
	s := startServer(t, nil, "--database", db)
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, `{"kind": "later", "delay": "1h", "args": {"i": %d}}`+"\n", i)
	}
	s.Must(t, in.String(), "batch", "-")
	one := enqueue(t, s, "later", `{"i": "one"}`, "--delay", "1h")
	if err := s.Stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("a killed server exited cleanly")
	}
	s2 := startServer(t, nil, "--database", db)
	var list api.TaskList
	if err := json.Unmarshal([]byte(s2.Must(t, "", "list", "--kind", "later", "--limit", "1000", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 501 {
		t.Fatalf("%d tasks after SIGKILL and restart, want all 501 acknowledged", len(list.Tasks))
	}
	if task := getTask(t, s2, one); task.State != "pending" {
		t.Fatalf("task enqueued before the kill is %s", task.State)
	}
	if err := s2.Stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v, want a clean exit\n%s", err, s2.Log())
	}
	if !strings.Contains(s2.Log(), "weft: stopped") {
		t.Fatalf("no clean stop in the log:\n%s", s2.Log())
	}
}

// TestAuthAndExposure: the token guards the API, the CLI passes it, and
// serve refuses to listen beyond loopback without one.
func TestAuthAndExposure(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "weft.db")
	s := startServer(t, []string{"WEFT_API_TOKEN=s3cret"}, "--database", db)
	if r := s.Run(t, "", "queues", "--token", "wrong"); r.Code != 1 || !strings.Contains(r.Stderr, "WEFT_API_TOKEN") {
		t.Fatalf("wrong token: exit %d, stderr %q", r.Code, r.Stderr)
	}
	s.Must(t, "", "queues")
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz without a token: %d", resp.StatusCode)
	}
	exposed := exec.Command(weftBin, "serve", "--addr", "0.0.0.0:0", "--database", db)
	exposed.Env = os.Environ()
	out, err := exposed.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("serve on 0.0.0.0 without a token: %v\n%s", err, out)
	}
}
