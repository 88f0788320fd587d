package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// suspend claims task id, the only ready one of its queue, gives it a waitpoint "approval" that takes
// approve and reject, and suspends it on it, as a worker would.
func suspend(t *testing.T, st store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	tk, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := st.Claim(ctx, store.ClaimRequest{Owner: "test", LeaseTTL: time.Minute, Queues: []store.QueueClaim{{Queue: tk.Queue, Limit: 1}}})
	if err != nil || len(tasks) != 1 || tasks[0].ID != id {
		t.Fatalf("claim = %v, %v", tasks, err)
	}
	if _, err := st.CreateWaitpoint(ctx, id, tasks[0].LeaseEpoch, store.NewWaitpoint{Name: "approval", Allow: []string{"approve", "reject"}}); err != nil {
		t.Fatal(err)
	}
	res, err := st.Finish(ctx, []store.Outcome{{TaskID: id, Epoch: tasks[0].LeaseEpoch, State: store.StateWaiting, Event: store.EventWaiting,
		Refund: true, Wait: &store.WaitSpec{Waitpoints: []string{"approval"}}}})
	if err != nil || res[0].Err != nil || res[0].State != store.StateWaiting {
		t.Fatalf("suspend = %+v, %v", res, err)
	}
}

// `weft signal` by token and by name, against a server and on the
// database directly, with the same output and errors either way; `task`
// shows the waitpoints, and `list --state waiting` finds the task.
func TestSignal(t *testing.T) {
	s := newTestServer(t, "")
	ids := enqueueStore(t, s.st, store.NewTask{Kind: "approval"})
	id := ids[0]
	suspend(t, s.st, id)

	viaServer, direct := s.both(t, "list", "--state", "waiting", "--format", "json")
	for _, r := range []result{viaServer, direct} {
		if l := decode[api.TaskList](t, ok(t, r).stdout); len(l.Tasks) != 1 || l.Tasks[0].ID != id {
			t.Fatalf("list --state waiting = %+v", l)
		}
	}
	viaServer, direct = s.both(t, "task", id)
	for _, r := range []result{viaServer, direct} {
		out := ok(t, r).stdout
		for _, want := range []string{"state:       waiting", "waitpoints:  1", "  approval: open", "    allows:  approve, reject", "    token:   wp1."} {
			if !strings.Contains(out, want) {
				t.Errorf("task lacks %q:\n%s", want, out)
			}
		}
	}
	if viaServer.stdout != direct.stdout {
		t.Errorf("task differs:\n--- server\n%s--- direct\n%s", viaServer.stdout, direct.stdout)
	}
	_, tok, _ := strings.Cut(viaServer.stdout, "token:   ")
	tok, _, _ = strings.Cut(tok, "\n")
	// The task's JSON is the API's task object, as ever.
	if tk := decode[api.Task](t, ok(t, runWeft(t, "task", id, "--server", s.url, "--format", "json")).stdout); tk.State != "waiting" {
		t.Fatalf("task json = %+v", tk)
	}

	// Refused, before anything is stored, alike either way.
	viaServer, direct = s.both(t, "signal", tok, "--name", "maybe", "--key", "k")
	failsWith(t, viaServer, exitError, "422 invalid: name: waitpoint approval takes [approve reject], not \"maybe\"")
	failsWith(t, direct, exitError, "422 invalid: name: waitpoint approval takes [approve reject], not \"maybe\"")
	viaServer, direct = s.both(t, "signal", tok+"x", "--name", "approve", "--key", "k")
	failsWith(t, viaServer, exitError, "404 not_found: token: no waitpoint for this token")
	if viaServer.stderr != direct.stderr {
		t.Errorf("a bad token: server %q, direct %q", viaServer.stderr, direct.stderr)
	}

	r := ok(t, runWeft(t, "signal", tok, "--name", "approve", "--payload", `{"by": "ada"}`, "--key", "approve-ada", "--server", s.url))
	if !strings.Contains(r.stdout, "(approve) delivered to waitpoint approval of task "+id+": the task resumed") || strings.Contains(r.stdout, "key:") {
		t.Errorf("signal:\n%s", r)
	}
	r = ok(t, runWeft(t, "signal", tok, "--name", "approve", "--key", "approve-ada", "--database", s.path))
	if !strings.Contains(r.stdout, "was already delivered with this key to waitpoint approval of task "+id+": nothing changed") {
		t.Errorf("repeat:\n%s", r)
	}
	viaServer, direct = s.both(t, "signal", tok, "--name", "reject", "--key", "reject-bob")
	failsWith(t, viaServer, exitError, "409 waitpoint_closed: waitpoint approval was resolved by signal")
	failsWith(t, direct, exitError, "409 waitpoint_closed: waitpoint approval was resolved by signal")
	tk, err := s.st.Get(context.Background(), id)
	if err != nil || tk.State != store.StatePending {
		t.Fatalf("task after the signal = %+v, %v", tk, err)
	}
	r = ok(t, runWeft(t, "task", id, "--database", s.path))
	if !strings.Contains(r.stdout, "  approval: resolved by signal, ") || !strings.Contains(r.stdout, `key approve-ada: {"by":"ada"}`) || strings.Contains(r.stdout, "token:") {
		t.Errorf("task after the signal:\n%s", r.stdout)
	}

	// By name, without a key: one is made and shown.
	other := enqueueStore(t, s.st, store.NewTask{Kind: "approval", Queue: "other"})[0]
	suspend(t, s.st, other)
	r = ok(t, runWeft(t, "signal", "--task", other, "--waitpoint", "approval", "--name", "reject", "--database", s.path))
	_, key, found := strings.Cut(r.stdout, "key: ")
	key, _, _ = strings.Cut(key, " ")
	if !found || !strings.Contains(r.stdout, "the task resumed") || !strings.Contains(r.stdout, "give --key "+key+" to repeat it safely") {
		t.Fatalf("signal by name:\n%s", r)
	}
	rec := decode[api.SignalReceipt](t, ok(t, runWeft(t, "signal", "--task", other, "--waitpoint", "approval", "--name", "reject", "--key", key, "--server", s.url, "--format", "json")).stdout)
	if !rec.Duplicate || rec.TaskID != other || rec.Signal.IdempotencyKey != key || string(rec.Signal.Payload) != "null" {
		t.Fatalf("repeat by name = %+v", rec)
	}
	viaServer, direct = s.both(t, "signal", "--task", other, "--waitpoint", "approvel", "--name", "reject", "--key", "k")
	failsWith(t, viaServer, exitError, "404 not_found", `no waitpoint named "approvel"`)
	failsWith(t, direct, exitError, "404 not_found", `no waitpoint named "approvel"`)
}

// Tokens are verified with WEFT_SIGNING_KEYS on the database directly, as
// the server verifies them: a token signed with other keys is refused.
func TestSignalSigningKeysDirect(t *testing.T) {
	s := newTestServer(t, "")
	id := enqueueStore(t, s.st, store.NewTask{Kind: "approval"})[0]
	suspend(t, s.st, id)
	const keys = "new:0123456789abcdef0123,old:fedcba9876543210fedc"
	c, err := weft.NewClient(s.st, &weft.Config{SigningKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	wps, err := c.Waitpoints(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	tok := wps[0].Token
	// The server (and the CLI without the keys) signs with the database's
	// key, and refuses it.
	failsWith(t, runWeft(t, "signal", tok, "--name", "approve", "--key", "k", "--server", s.url), exitError, "404 not_found: token")
	failsWith(t, runWeft(t, "signal", tok, "--name", "approve", "--key", "k", "--database", s.path), exitError, "404 not_found: token")
	bad := cli{t: t, env: map[string]string{"WEFT_SIGNING_KEYS": "short:abc"}}
	failsWith(t, bad.run(context.Background(), "signal", tok, "--name", "approve", "--key", "k", "--database", s.path), exitError, "WEFT_SIGNING_KEYS", "fewer than 16")
	// A ring with the old key second still verifies what it signed.
	rotated := cli{t: t, env: map[string]string{"WEFT_SIGNING_KEYS": "newer:00112233445566778899," + keys}}
	r := ok(t, rotated.run(context.Background(), "signal", tok, "--name", "approve", "--key", "k", "--database", s.path))
	if !strings.Contains(r.stdout, "the task resumed") {
		t.Fatalf("signal with the keys:\n%s", r)
	}
}

func TestSignalUsage(t *testing.T) {
	id := "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"signal", "--name", "approve"}, "give the waitpoint's TOKEN, or --task and --waitpoint"},
		{[]string{"signal", "--task", id, "--name", "approve"}, "give the waitpoint's TOKEN, or --task and --waitpoint"},
		{[]string{"signal", "tok", "--task", id, "--waitpoint", "a", "--name", "approve"}, "either a TOKEN or --task and --waitpoint"},
		{[]string{"signal", "tok", "--waitpoint", "a", "--name", "approve"}, "either a TOKEN or --task and --waitpoint"},
		{[]string{"signal", "tok"}, "--name is required"},
		{[]string{"signal", "tok", "other", "--name", "approve"}, "at most one token"},
		{[]string{"signal", "tok", "--name", "approve", "--payload", "{nope"}, "--payload: not valid JSON"},
		{[]string{"signal", "--task", "42", "--waitpoint", "a", "--name", "approve"}, "malformed task id"},
	} {
		failsWith(t, runWeft(t, append(tc.args, "--server", closedServer(t))...), exitUsage, tc.want)
	}
	// A payload read from standard input.
	s := newTestServer(t, "")
	task := enqueueStore(t, s.st, store.NewTask{Kind: "approval"})[0]
	suspend(t, s.st, task)
	in := cli{t: t, stdin: `{"by": "stdin"}`}
	r := ok(t, in.run(context.Background(), "signal", "--task", task, "--waitpoint", "approval", "--name", "approve", "--payload", "-", "--key", "k", "--server", s.url, "--format", "json"))
	if rec := decode[api.SignalReceipt](t, r.stdout); compact(t, rec.Signal.Payload) != `{"by":"stdin"}` || !rec.Resumed {
		t.Fatalf("receipt = %+v", rec)
	}

	// weft serve refuses bad keys before it opens anything.
	for _, keys := range []string{"nope", "a:0123456789abcdef0123,a:0123456789abcdef0123", "a:short"} {
		env := cli{t: t, env: map[string]string{"WEFT_SIGNING_KEYS": keys}}
		failsWith(t, env.run(context.Background(), "serve", "--addr", "127.0.0.1:0", "--database", t.TempDir()+"/weft.db"), exitUsage, "WEFT_SIGNING_KEYS: ")
	}
}

// `task` against a server without the waitpoints route (one older than
// waits) shows the snapshot without them.
func TestTaskWithoutWaitpointsRoute(t *testing.T) {
	s := newTestServer(t, "")
	id := enqueueStore(t, s.st, store.NewTask{Kind: "email"})[0]
	real := strings.TrimPrefix(s.url, "http://")
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/waitpoints") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":"not_found","message":"no route %s %s (see /v1/openapi.json)"}}`, r.Method, r.URL.Path)
			return
		}
		(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme, pr.Out.URL.Host = "http", real }}).ServeHTTP(w, r)
	}))
	t.Cleanup(old.Close)
	r := ok(t, runWeft(t, "task", id, "--server", old.URL))
	if !strings.Contains(r.stdout, "kind:        email") || strings.Contains(r.stdout, "waitpoints") {
		t.Fatalf("task:\n%s", r)
	}
}
