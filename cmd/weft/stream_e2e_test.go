package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
)

// streamReader is a running `weft task ID --stream`, its output read as
// it comes.
type streamReader struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	errb bytes.Buffer
	read chan struct{}
}

func startStream(t *testing.T, s *weftproc.Server, id string, args ...string) *streamReader {
	t.Helper()
	r := &streamReader{cmd: s.Command("", append([]string{"task", id, "--stream"}, args...)...), read: make(chan struct{})}
	r.cmd.Stderr = &r.errb
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	go func() {
		defer close(r.read)
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			r.mu.Lock()
			r.out.Write(buf[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *streamReader) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// waitFor waits until the reader has printed want, while it still runs.
func (r *streamReader) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(r.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("`weft task --stream` did not print %q within a minute; printed %q\nstderr: %s", want, r.output(), r.errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exit waits for the reader to end and returns its exit code.
func (r *streamReader) exit(t *testing.T) int {
	t.Helper()
	<-r.read
	err := r.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return 0
}

// streamCases runs remote workers (plain HTTP requests) that write output
// frames, while `weft task ID --stream` — the real CLI, started before the
// first frame — prints them live and exits with the task's outcome.
func streamCases(t *testing.T, s *weftproc.Server) {
	claim := func(id string) string {
		t.Helper()
		var c api.ClaimResponse
		post(t, s, "/v1/claims", map[string]any{"worker_id": "e2e", "queues": []string{"streams"}}, 0, &c)
		if len(c.Tasks) != 1 || c.Tasks[0].ID != id {
			t.Fatalf("claimed %+v, want task %s", c.Tasks, id)
		}
		return c.Tasks[0].LeaseToken
	}
	frames := func(id, token string, seq int, fs ...map[string]any) {
		t.Helper()
		for i := range fs {
			fs[i]["seq"] = seq + i
		}
		post(t, s, "/v1/tasks/"+id+"/stream", map[string]any{"lease_token": token, "frames": fs}, 0, nil)
	}
	text := func(s string) map[string]any { return map[string]any{"kind": "text", "data": s} }

	id := enqueue(t, s, "e2e.stream", `{}`, "--queue", "streams")
	r := startStream(t, s, id)
	token := claim(id)
	frames(id, token, 1, text("line 1\n"))
	r.waitFor(t, "line 1\n")
	frames(id, token, 2, text("line 2 "), text("continued\n"), map[string]any{"kind": "json", "data": map[string]int{"n": 1}}, text("no newline"))
	// Sent again, as a worker that lost the answer would: printed once.
	frames(id, token, 2, text("line 2 "), text("continued\n"))
	post(t, s, "/v1/tasks/"+id+"/complete", map[string]any{"lease_token": token}, 0, nil)
	if code := r.exit(t); code != 0 {
		t.Fatalf("--stream of a completed task: exit %d, want 0\nstderr: %s", code, r.errb.String())
	}
	if got, want := r.output(), "line 1\nline 2 continued\n{\"n\":1}\nno newline\n"; got != want {
		t.Fatalf("--stream printed %q, want %q", got, want)
	}

	// A failing task, as NDJSON: every frame a line, the end last; exit 1.
	id = enqueue(t, s, "e2e.stream", `{}`, "--queue", "streams", "--max-attempts", "1")
	r = startStream(t, s, id, "--format", "json")
	token = claim(id)
	frames(id, token, 1, text("trying\n"))
	r.waitFor(t, `"trying\n"`)
	post(t, s, "/v1/tasks/"+id+"/fail", map[string]any{"lease_token": token, "error": "no luck"}, 0, nil)
	if code := r.exit(t); code != 1 {
		t.Fatalf("--stream of a failed task: exit %d, want 1\nstderr: %s", code, r.errb.String())
	}
	var lines []api.Frame
	sc := bufio.NewScanner(strings.NewReader(r.output()))
	for sc.Scan() {
		var f api.Frame
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("--format json line %q: %v", sc.Text(), err)
		}
		lines = append(lines, f)
	}
	if len(lines) != 2 || lines[0].Seq != 1 || lines[0].Kind != "text" || lines[1].Kind != api.FrameEnd || lines[1].State != "failed" {
		t.Fatalf("--stream --format json printed %+v, want the frame and a failed end", lines)
	}
	if !strings.Contains(r.errb.String(), "no luck") {
		t.Fatalf("stderr of a failed task's stream = %q, want its error", r.errb.String())
	}

	// A task that ended before the reader came: the stream is printed
	// whole, and the exit code is the outcome.
	res := s.Run(t, "", "task", id, "--stream")
	if res.Code != 1 || res.Stdout != "trying\n" {
		t.Fatalf("--stream of a finished task = exit %d, %q", res.Code, res.Stdout)
	}
}

func TestStreamSQLite(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"))
	streamCases(t, s)
}

func TestStreamPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	s := startServer(t, []string{"WEFT_DATABASE_URL=" + dsn})
	streamCases(t, s)
}
