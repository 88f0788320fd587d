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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
)

// weftBin is the binary under test, built by TestMain.
var weftBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftBin = filepath.Join(dir, "weft")
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "the end-to-end tests build weft with the go command:", err)
		os.Exit(1)
	}
	build := exec.Command(goBin, "build", "-o", weftBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building weft:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `weft serve`.
type server struct {
	url string
	cmd *exec.Cmd
	env []string

	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan error
}

// syncWriter lets the log be read while the process writes it.
type syncWriter struct{ s *server }

func (w syncWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stderr.Write(p)
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// startServer runs `weft serve` on a free port and waits until it serves.
func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	s := &server{env: env, exited: make(chan error, 1)}
	s.cmd = exec.Command(weftBin, append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		pw.Close()
		s.exited <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = syncWriter{s}.Write([]byte(line + "\n"))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "weft: serving" {
				addr <- rec.Addr
			}
		}
	}()
	select {
	case s.url = <-addr:
	case err := <-s.exited:
		t.Fatalf("weft serve exited (%v):\n%s", err, s.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("weft serve did not start:\n%s", s.log())
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log())
		}
	})
	return s
}

// stop sends sig and waits for the process to exit.
func (s *server) stop(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("weft serve did not exit after %v:\n%s", sig, s.log())
	}
	return nil
}

// result is how a CLI run ended.
type result struct {
	stdout, stderr string
	code           int
}

// weft runs the CLI against s with stdin and returns its output and exit
// code.
func (s *server) weft(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := s.command(stdin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func (s *server) command(stdin string, args ...string) *exec.Cmd {
	cmd := exec.Command(weftBin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Env = append(cmd.Env, "WEFT_SERVER="+s.url)
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

func (s *server) must(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := s.weft(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("weft %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// enqueue enqueues through the CLI and returns the id.
func (s *server) enqueue(t *testing.T, kind, args string, more ...string) string {
	t.Helper()
	var e api.Enqueued
	out := s.must(t, "", append([]string{"enqueue", kind, "--args", args, "--format", "json"}, more...)...)
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.ID == "" {
		t.Fatalf("enqueue printed %q: %v", out, err)
	}
	return e.ID
}

func (s *server) task(t *testing.T, id string) api.Task {
	t.Helper()
	var task api.Task
	if err := json.Unmarshal([]byte(s.must(t, "", "task", id, "--format", "json")), &task); err != nil {
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
func monitorCases(t *testing.T, s *server) {
	target := webhookTarget(t)
	t.Run("completed", func(t *testing.T) {
		id := s.enqueue(t, "http", fmt.Sprintf(`{"url": %q, "method": "GET"}`, target.URL+"/ok"))
		r := s.weft(t, "", "task", id, "--monitor")
		if r.code != 0 {
			t.Fatalf("monitor exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		var last api.Event
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Type != "completed" || last.TaskID != id {
			t.Fatalf("last monitored line %q (%v), want the completed event", lines[len(lines)-1], err)
		}
		task := s.task(t, id)
		if task.State != "completed" || !strings.Contains(string(task.Result), `"pong"`) {
			t.Fatalf("task = %+v", task)
		}
	})
	t.Run("failed", func(t *testing.T) {
		id := s.enqueue(t, "http", fmt.Sprintf(`{"url": %q}`, target.URL+"/missing"))
		r := s.weft(t, "", "task", id, "--monitor")
		if r.code != 1 || !strings.Contains(r.stdout, `"failed"`) {
			t.Fatalf("monitor of a failing task: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		if human := s.must(t, "", "task", id); !strings.Contains(human, "failed") || !strings.Contains(human, "404") {
			t.Fatalf("task snapshot does not show the failure:\n%s", human)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		id := s.enqueue(t, "nobody.works.this", `{}`)
		mon := s.command("", "task", id, "--monitor")
		var out bytes.Buffer
		mon.Stdout = &out
		if err := mon.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		s.must(t, "", "task", id, "--cancel")
		err := mon.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("monitor of a cancelled task: %v, want exit 2\n%s", err, out.String())
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		id := s.enqueue(t, "nobody.works.this", `{}`)
		mon := s.command("", "task", id, "--monitor")
		var errb bytes.Buffer
		mon.Stderr = &errb
		if err := mon.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		_ = mon.Process.Signal(os.Interrupt)
		err := mon.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || strings.Contains(errb.String(), "goroutine") {
			t.Fatalf("Ctrl-C during monitor: %v, stderr %q; want a clean exit 130", err, errb.String())
		}
	})
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
	out := s.must(t, in.String(), "batch", "-")
	if !strings.Contains(out, "enqueued 25 tasks") {
		t.Fatalf("batch printed %q", out)
	}
	bad := s.weft(t, "{\"kind\": \"a\"}\n{\"kind\": \"b\", \"delay\": \"soon\"}\n", "batch", "-")
	if bad.code == 0 || !strings.Contains(bad.stderr, "delay") {
		t.Fatalf("bad batch: exit %d, stderr %q", bad.code, bad.stderr)
	}
	var list api.TaskList
	if err := json.Unmarshal([]byte(s.must(t, "", "list", "--queue", "reports", "--limit", "1000", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 25 {
		t.Fatalf("listed %d tasks, want 25 (and none of the refused batch)", len(list.Tasks))
	}
	s.must(t, "", "queues", "pause", "reports")
	if q := s.must(t, "", "queues"); !strings.Contains(q, "reports") || !strings.Contains(q, "yes") {
		t.Fatalf("queues after pause:\n%s", q)
	}
	id := list.Tasks[0].ID
	s.must(t, "", "task", id, "--cancel")
	s.must(t, "", "task", id, "--retry")
	if task := s.task(t, id); task.State != "pending" {
		t.Fatalf("retried task is %s", task.State)
	}
	if r := s.weft(t, "", "task", "01a20000-0000-7000-8000-000000000000"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("unknown task: exit %d, stderr %q", r.code, r.stderr)
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
		ids = append(ids, s.enqueue(t, "py.upper", fmt.Sprintf(`{"text": "hello %d"}`, i)))
	}
	bad := s.enqueue(t, "py.upper", `{"text": 42}`)
	sum := s.enqueue(t, "py.sum", `{"numbers": [1, 2, 3.5]}`)
	worker := exec.Command(python, "../../examples/python-worker/worker.py", "--server", s.url, "--exit-when-idle", "--concurrency", "4")
	var werr bytes.Buffer
	worker.Stderr = &werr
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
		task := s.task(t, id)
		want := fmt.Sprintf(`{"text":"HELLO %d"}`, i)
		if task.State != "completed" || string(task.Result) != want || !strings.HasPrefix(task.Worker, "py-") {
			t.Fatalf("task %d = %s %s by %q, want completed %s", i, task.State, task.Result, task.Worker, want)
		}
	}
	if task := s.task(t, bad); task.State != "failed" || task.Attempt != 1 || !strings.Contains(task.Errors[0].Error, "args.text") {
		t.Fatalf("bad-args task = %+v, want failed permanently at once", task)
	}
	if task := s.task(t, sum); task.State != "completed" || string(task.Result) != `{"sum":6.5}` {
		t.Fatalf("sum task = %+v", task)
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
	s.must(t, in.String(), "batch", "-")
	one := s.enqueue(t, "later", `{"i": "one"}`, "--delay", "1h")
	if err := s.stop(t, syscall.SIGKILL); err == nil {
		t.Fatal("a killed server exited cleanly")
	}
	s2 := startServer(t, nil, "--database", db)
	var list api.TaskList
	if err := json.Unmarshal([]byte(s2.must(t, "", "list", "--kind", "later", "--limit", "1000", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tasks) != 501 {
		t.Fatalf("%d tasks after SIGKILL and restart, want all 501 acknowledged", len(list.Tasks))
	}
	if task := s2.task(t, one); task.State != "pending" {
		t.Fatalf("task enqueued before the kill is %s", task.State)
	}
	if err := s2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v, want a clean exit\n%s", err, s2.log())
	}
	if !strings.Contains(s2.log(), "weft: stopped") {
		t.Fatalf("no clean stop in the log:\n%s", s2.log())
	}
}

// TestAuthAndExposure: the token guards the API, the CLI passes it, and
// serve refuses to listen beyond loopback without one.
func TestAuthAndExposure(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "weft.db")
	s := startServer(t, []string{"WEFT_API_TOKEN=s3cret"}, "--database", db)
	if r := s.weft(t, "", "queues", "--token", "wrong"); r.code != 1 || !strings.Contains(r.stderr, "WEFT_API_TOKEN") {
		t.Fatalf("wrong token: exit %d, stderr %q", r.code, r.stderr)
	}
	s.must(t, "", "queues")
	resp, err := http.Get(s.url + "/healthz")
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
