package main_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
)

// post sends a JSON body to the server with a plain HTTP client, as a
// remote worker in any language would, checks the status (want; 0 for any
// 2xx) and decodes the answer into out.
func post(t *testing.T, s *weftproc.Server, path string, body any, want int, out any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want == 0 && resp.StatusCode/100 != 2 || want != 0 && resp.StatusCode != want {
		t.Fatalf("POST %s = %d %s, want %d", path, resp.StatusCode, got, want)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			t.Fatalf("POST %s: %s: %v", path, got, err)
		}
	}
}

// claimOne claims one task of kind as a remote worker, waiting for it.
func claimOne(t *testing.T, s *weftproc.Server, kind string) api.ClaimedTask {
	t.Helper()
	var resp api.ClaimResponse
	post(t, s, "/v1/claims", map[string]any{"worker_id": "remote-1", "kinds": []string{kind}, "wait": "10s"}, 200, &resp)
	if len(resp.Tasks) != 1 {
		t.Fatalf("claimed %d tasks of kind %s, want 1", len(resp.Tasks), kind)
	}
	return resp.Tasks[0]
}

// suspendRemote claims the task of kind as a remote worker, creates a
// waitpoint named approval and suspends on it as wait says; it returns
// the waitpoint's token.
func suspendRemote(t *testing.T, s *weftproc.Server, kind string, wait map[string]any) string {
	t.Helper()
	c := claimOne(t, s, kind)
	var wp api.Waitpoint
	post(t, s, "/v1/tasks/"+c.ID+"/waitpoints", map[string]any{"lease_token": c.LeaseToken, "name": "approval", "expires_in": "1h"}, 201, &wp)
	wait["lease_token"], wait["waitpoints"] = c.LeaseToken, []string{"approval"}
	var out api.Outcome
	post(t, s, "/v1/tasks/"+c.ID+"/wait", wait, 200, &out)
	if out.State != "waiting" {
		t.Fatalf("suspend = %+v", out)
	}
	return wp.Token
}

// A remote worker speaking plain HTTP to the real binary claims a task,
// creates a waitpoint and suspends; `weft signal` with the token resumes
// the task, and the worker's next claim gets it with its signals. A server
// with other signing keys on the same database refuses the token.
func TestRemoteWorkerWaitsSQLite(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "weft.db")
	keys := []string{"WEFT_SIGNING_KEYS=k1:0123456789abcdef0123456789abcdef"}
	s := startServer(t, keys, "--database", db)
	remoteWorkerWaits(t, s)
	other := startServer(t, []string{"WEFT_SIGNING_KEYS=k2:fedcba9876543210fedcba9876543210"}, "--database", db)
	id := enqueue(t, s, "approval", `{}`)
	tok := suspendRemote(t, s, "approval", map[string]any{})
	if r := other.Run(t, "", "signal", tok, "--name", "approve", "--key", "k"); r.Code != 1 || !strings.Contains(r.Stderr, "404 not_found: token: no waitpoint for this token") {
		t.Fatalf("a token of other keys: exit %d, stderr %q", r.Code, r.Stderr)
	}
	// The server that signed it takes it; so does the database directly,
	// given the same keys.
	cmd := s.Command("", "signal", tok, "--name", "approve", "--key", "k", "--database", db)
	cmd.Env = append(cmd.Env, keys...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "the task resumed") {
		t.Fatalf("signal on the database with the server's keys: %v\n%s", err, out)
	}
	if task := getTask(t, s, id); task.State != "pending" {
		t.Fatalf("task after the signal is %s", task.State)
	}
}

func TestRemoteWorkerWaitsPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	remoteWorkerWaits(t, startServer(t, []string{"WEFT_DATABASE_URL=" + dsn}))
}

func remoteWorkerWaits(t *testing.T, s *weftproc.Server) {
	t.Helper()
	id := enqueue(t, s, "approval", `{"doc": 7}`)
	tok := suspendRemote(t, s, "approval", map[string]any{"timeout": "1h"})
	if task := getTask(t, s, id); task.State != "waiting" || task.Attempt != 0 {
		t.Fatalf("suspended task = %+v", task)
	}
	if out := s.Must(t, "", "list", "--state", "waiting"); !strings.Contains(out, id) {
		t.Fatalf("list --state waiting:\n%s", out)
	}
	out := s.Must(t, "", "signal", tok, "--name", "approve", "--payload", `{"by": "ada"}`, "--key", "approve-ada")
	if !strings.Contains(out, "the task resumed") {
		t.Fatalf("signal printed %q", out)
	}
	c := claimOne(t, s, "approval")
	if c.ID != id || c.Attempt != 1 || len(c.Signals) != 1 || c.Signals[0].Resolution != "signal" || len(c.Signals[0].Signals) != 1 {
		t.Fatalf("claim after the signal = %+v", c)
	}
	var payload map[string]string
	if err := json.Unmarshal(c.Signals[0].Signals[0].Payload, &payload); err != nil || payload["by"] != "ada" {
		t.Fatalf("signal payload %s: %v", c.Signals[0].Signals[0].Payload, err)
	}
	post(t, s, "/v1/tasks/"+id+"/complete", map[string]any{"lease_token": c.LeaseToken}, 200, nil)
	if task := getTask(t, s, id); task.State != "completed" {
		t.Fatalf("task = %+v", task)
	}
}

// Signals from three processes at once — `weft signal` through two servers
// on one database and one straight on the database — to a wait on two
// distinct sources: each time, one is stored, one resumes the task and the
// third finds the waitpoint closed; the task resumes exactly once.
func TestConcurrentSignalsSQLite(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "weft.db")
	concurrentSignals(t, db, nil, []string{"--database", db})
}

func TestConcurrentSignalsPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	concurrentSignals(t, dsn, []string{"WEFT_DATABASE_URL=" + dsn}, nil)
}

func concurrentSignals(t *testing.T, db string, env, args []string) {
	t.Helper()
	const rounds = 4
	a := startServer(t, env, args...)
	b := startServer(t, env, args...)
	ids, toks := make([]string, rounds), make([]string, rounds)
	for i := range rounds {
		ids[i] = enqueue(t, a, "vote", `{}`)
		toks[i] = suspendRemote(t, a, "vote", map[string]any{"mode": "count", "count": 2})
	}
	// Every process of every round is started before any is waited for.
	type run struct {
		cmd      *exec.Cmd
		out, err bytes.Buffer
	}
	runs := make([][3]*run, rounds)
	for i := range rounds {
		for j, cmd := range []*exec.Cmd{
			a.Command("", "signal", toks[i], "--name", "vote", "--key", "via-a"),
			b.Command("", "signal", toks[i], "--name", "vote", "--key", "via-b"),
			a.Command("", "signal", toks[i], "--name", "vote", "--key", "direct", "--database", db),
		} {
			r := &run{cmd: cmd}
			cmd.Stdout, cmd.Stderr = &r.out, &r.err
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			runs[i][j] = r
		}
	}
	for i := range rounds {
		stored, resumed, closed := 0, 0, 0
		for _, r := range runs[i] {
			err := r.cmd.Wait()
			switch out := r.out.String(); {
			case err == nil && strings.Contains(out, "the task resumed"):
				resumed++
			case err == nil && strings.Contains(out, "stored; the task's wait is not complete yet"):
				stored++
			case err != nil && strings.Contains(r.err.String(), "409 waitpoint_closed"):
				closed++
			default:
				t.Errorf("round %d: %v\nstdout: %s\nstderr: %s", i, err, out, r.err.String())
			}
		}
		if stored != 1 || resumed != 1 || closed != 1 {
			t.Errorf("round %d: %d stored, %d resumed, %d refused as closed; want one each", i, stored, resumed, closed)
		}
		counts := map[string]int{}
		for _, ev := range taskEvents(t, b, ids[i]) {
			counts[ev.Type]++
		}
		if counts["signalled"] != 2 || counts["resumed"] != 1 {
			t.Errorf("round %d: events %v, want 2 signalled and 1 resumed", i, counts)
		}
		if task := getTask(t, b, ids[i]); task.State != "pending" {
			t.Errorf("round %d: task is %s, want pending", i, task.State)
		}
	}
}

// taskEvents reads a task's events with a plain HTTP client.
func taskEvents(t *testing.T, s *weftproc.Server, id string) []api.Event {
	t.Helper()
	resp, err := http.Get(s.URL + "/v1/tasks/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var evs []api.Event
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var ev api.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}
