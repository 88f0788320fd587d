package cli

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// testServer is the real HTTP API on a SQLite file, in process.
type testServer struct {
	url  string
	path string
	st   store.Store
}

func newTestServer(t *testing.T, token string) *testServer {
	t.Helper()
	return newTestServerWith(t, httpapi.Config{Token: token})
}

// newTestServerWith serves cfg, with a client, logger and event poll of
// its own.
func newTestServerWith(t *testing.T, cfg httpapi.Config) *testServer {
	t.Helper()
	path, st := testenv.SQLite(t)
	cfg.Client, cfg.Logger, cfg.EventPoll = testenv.Client(t, st), testenv.Logger(), 20*time.Millisecond
	h, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testServer{url: srv.URL, path: path, st: st}
}

// both runs args against the server and straight on its database.
func (s *testServer) both(t *testing.T, args ...string) (viaServer, direct result) {
	t.Helper()
	return runWeft(t, append(args, "--server", s.url)...), runWeft(t, append(args, "--database", s.path)...)
}

func TestHTTPEnqueueAndTask(t *testing.T) {
	s := newTestServer(t, "")
	r := ok(t, runWeft(t, "enqueue", "email", "--server", s.url, "--args", `{"to":"a"}`, "--unique-key", "k", "--delay", "1h", "--format", "json"))
	enq := decode[api.Enqueued](t, r.stdout)
	if enq.ID == "" || enq.Duplicate {
		t.Fatalf("enqueued = %+v", enq)
	}
	r = ok(t, runWeft(t, "enqueue", "email", "--server", s.url, "--unique-key", "k"))
	if strings.TrimSpace(r.stdout) != enq.ID || !strings.Contains(r.stderr, "duplicate of") {
		t.Errorf("duplicate:\n%s", r)
	}

	// The two backends print the same thing.
	viaServer, direct := s.both(t, "task", enq.ID, "--format", "json")
	if ok(t, viaServer).stdout != ok(t, direct).stdout {
		t.Errorf("task json differs:\nserver: %s\ndirect: %s", viaServer.stdout, direct.stdout)
	}
	viaServer, direct = s.both(t, "list", "--format", "ndjson")
	if ok(t, viaServer).stdout != ok(t, direct).stdout {
		t.Errorf("list differs:\nserver: %s\ndirect: %s", viaServer.stdout, direct.stdout)
	}
	viaServer, direct = s.both(t, "queues", "--format", "json")
	if ok(t, viaServer).stdout != ok(t, direct).stdout {
		t.Errorf("queues differ:\nserver: %s\ndirect: %s", viaServer.stdout, direct.stdout)
	}

	// Errors read the same too.
	for _, args := range [][]string{
		{"task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"},
		{"enqueue", "9lives"},
		{"enqueue", "k", "--args", `{"a":1}`, "--metadata", `{"m":1}`, "--max-attempts", "-1"},
		{"task", enq.ID, "--retry"},
		{"queues", "pause", "9bad"},
		{"list", "--cursor", "not-a-cursor"},
	} {
		viaServer, direct := s.both(t, args...)
		if viaServer.code != exitError || viaServer.stderr != direct.stderr {
			t.Errorf("%v: errors differ:\nserver: %s\ndirect: %s", args, viaServer, direct)
		}
	}

	r = ok(t, runWeft(t, "task", enq.ID, "--cancel", "--server", s.url))
	if strings.TrimSpace(r.stdout) != "task "+enq.ID+": cancelled" {
		t.Errorf("cancel:\n%s", r)
	}
	viaServer, direct = s.both(t, "task", enq.ID, "--cancel")
	if viaServer.code != exitError || viaServer.stderr != direct.stderr || !strings.Contains(viaServer.stderr, "409 conflict") {
		t.Errorf("second cancel:\nserver: %s\ndirect: %s", viaServer, direct)
	}
	tk := decode[api.Task](t, ok(t, runWeft(t, "task", enq.ID, "--retry", "--server", s.url, "--format", "json")).stdout)
	if tk.State != "pending" {
		t.Errorf("retried = %+v", tk)
	}
}

func TestHTTPBatchListQueues(t *testing.T) {
	s := newTestServer(t, "")
	dir := t.TempDir()
	var b strings.Builder
	for i := 0; i < 7; i++ {
		b.WriteString(`{"kind":"bulk","queue":"mail"}` + "\n")
	}
	file := filepath.Join(dir, "tasks.ndjson")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := ok(t, runWeft(t, "batch", file, "--server", s.url))
	if !strings.HasPrefix(r.stdout, "enqueued 7 tasks (0 duplicates)\n") {
		t.Errorf("batch:\n%s", r)
	}

	bad := filepath.Join(dir, "bad.ndjson")
	if err := os.WriteFile(bad, []byte(`{"kind":"a"}`+"\n\n"+`{"kind":"b","timeout":"-1s"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	viaServer, direct := s.both(t, "batch", bad)
	failsWith(t, viaServer, exitError, "line 3: ", "tasks[1].timeout")
	if viaServer.stderr != direct.stderr {
		t.Errorf("batch errors differ:\nserver: %s\ndirect: %s", viaServer, direct)
	}

	all := ndjson[api.Task](t, ok(t, runWeft(t, "list", "--server", s.url, "--limit", "3", "--all", "--format", "ndjson")).stdout)
	if len(all) != 7 {
		t.Errorf("--all over HTTP listed %d tasks, want 7", len(all))
	}

	q := decode[api.Queue](t, ok(t, runWeft(t, "queues", "pause", "mail", "--server", s.url, "--format", "json")).stdout)
	if !q.Paused || q.Counts["pending"] != 7 {
		t.Errorf("paused = %+v", q)
	}
	r = ok(t, runWeft(t, "queues", "resume", "mail", "--server", s.url))
	if !strings.Contains(r.stdout, "queue mail resumed") {
		t.Errorf("resume:\n%s", r)
	}
}

func TestHTTPMonitor(t *testing.T) {
	s := newTestServer(t, "")
	for _, tc := range []struct {
		state store.State
		code  int
	}{
		{store.StateCompleted, exitTaskCompleted},
		{store.StateFailed, exitTaskFailed},
		{store.StateCancelled, exitTaskCancelled},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			id := enqueueStore(t, s.st, store.NewTask{Kind: "job", Queue: "q" + string(tc.state)})[0]
			go func() {
				time.Sleep(300 * time.Millisecond)
				claimAndFinish(t, s.st, id, tc.state, "it broke")
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r := cli{t: t}.run(ctx, "task", id, "--monitor", "--server", s.url)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tc.code, r)
			}
			evs := ndjson[api.Event](t, r.stdout)
			if len(evs) != 3 || evs[2].Type != string(tc.state) {
				t.Errorf("events = %+v", evs)
			}
		})
	}

	// Interrupted while following over HTTP.
	id := enqueueStore(t, s.st, store.NewTask{Kind: "job"})[0]
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	r := cli{t: t}.run(ctx, "task", id, "--monitor", "--server", s.url)
	if r.code != exitInterrupted || strings.TrimSpace(r.stderr) != "weft: interrupted" {
		t.Errorf("interrupted:\n%s", r)
	}
}

func TestHTTPToken(t *testing.T) {
	s := newTestServer(t, "s3cret")
	failsWith(t, runWeft(t, "list", "--server", s.url), exitError, "401 unauthorized", "set --token or WEFT_API_TOKEN")
	failsWith(t, runWeft(t, "list", "--server", s.url, "--token", "wrong"), exitError, "401 unauthorized")
	ok(t, runWeft(t, "list", "--server", s.url, "--token", "s3cret"))
	c := cli{t: t, env: map[string]string{"WEFT_API_TOKEN": "s3cret", "WEFT_SERVER": s.url}}
	r := ok(t, c.run(context.Background(), "enqueue", "email", "--format", "json"))
	if enq := decode[api.Enqueued](t, r.stdout); enq.ID == "" {
		t.Errorf("enqueue with env token and server: %s", r)
	}
	// The flag beats the environment.
	failsWith(t, c.run(context.Background(), "list", "--token", "wrong"), exitError, "401")
}

// TestHTTPEventsResume checks that a monitor picks up where a dropped
// stream stopped, without repeating events.
func TestHTTPEventsResume(t *testing.T) {
	s := newTestServer(t, "")
	id := enqueueStore(t, s.st, store.NewTask{Kind: "job"})[0]
	b := &flakyBackend{backend: httpBackend{mustClient(t, s.url)}, dropAfter: 1}
	go func() {
		time.Sleep(300 * time.Millisecond)
		claimAndFinish(t, s.st, id, store.StateCompleted, "")
	}()
	var out, errb syncBuffer
	g := &globals{stdout: &out, stderr: &errb, LogLevel: "error", LogFormat: "text"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := monitorTask(ctx, g, b, id, monitorOptions{timeout: time.Minute}); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	evs := ndjson[api.Event](t, out.String())
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if strings.Join(types, " ") != "created started completed" {
		t.Errorf("events = %v", types)
	}
	if b.streams < 2 {
		t.Errorf("%d streams opened, want a reconnect", b.streams)
	}
}

func mustClient(t *testing.T, url string) *apiclient.Client {
	t.Helper()
	return apiclient.New(url, "", nil)
}

// flakyBackend drops the first event stream after dropAfter events, as a
// broken connection would.
type flakyBackend struct {
	backend
	dropAfter int
	streams   int
}

func (f *flakyBackend) Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	f.streams++
	first := f.streams == 1
	return func(yield func(api.Event, error) bool) {
		n := 0
		for ev, err := range f.backend.Events(ctx, id, after, follow) {
			if first && n == f.dropAfter {
				yield(api.Event{}, errors.New("connection reset by peer"))
				return
			}
			n++
			if !yield(ev, err) {
				return
			}
		}
	}
}

// refusingStore refuses every write with err, as a full or read-only
// database, a closing store or a lease lost to a concurrent rescue would.
type refusingStore struct {
	store.Store
	err error
}

func (r refusingStore) Enqueue(context.Context, []store.NewTask) ([]store.EnqueueResult, error) {
	return nil, r.err
}
func (r refusingStore) Cancel(context.Context, string) (*store.Task, error) { return nil, r.err }
func (r refusingStore) Retry(context.Context, string) (*store.Task, error)  { return nil, r.err }
func (r refusingStore) PauseQueue(context.Context, string, bool) error      { return r.err }

// TestDirectErrorsAsServer checks that direct mode reports the store's
// refusals exactly as the server answers them, status, code and message.
func TestDirectErrorsAsServer(t *testing.T) {
	_, st := testenv.SQLite(t)
	id := enqueueStore(t, st, store.NewTask{Kind: "k"})[0]
	ctx := context.Background()
	actions := map[string]func(backend) error{
		"enqueue": func(b backend) error { _, err := b.Enqueue(ctx, api.TaskInput{Kind: "k"}); return err },
		"cancel":  func(b backend) error { _, err := b.Cancel(ctx, id); return err },
		"retry":   func(b backend) error { _, err := b.Retry(ctx, id); return err },
		"pause":   func(b backend) error { _, err := b.PauseQueue(ctx, "mail"); return err },
	}
	for _, tc := range []struct {
		sentinel error
		client   error
	}{
		{store.ErrStorageFull, apiclient.ErrUnavailable},
		{store.ErrReadOnly, apiclient.ErrUnavailable},
		{store.ErrClosed, apiclient.ErrUnavailable},
		{store.ErrLeaseLost, apiclient.ErrLeaseLost},
	} {
		refusing := refusingStore{Store: st, err: fmt.Errorf("sqlite: commit: %w", tc.sentinel)}
		h, err := httpapi.New(httpapi.Config{Client: testenv.Client(t, refusing), Logger: testenv.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		viaServer := httpBackend{apiclient.New(srv.URL, "", nil)}
		// Not closed: it would close the test's store.
		direct := newDirectBackend(refusing)
		for name, op := range actions {
			server, local := op(viaServer), op(direct)
			if server == nil || local == nil || server.Error() != local.Error() || !errors.Is(local, tc.client) {
				t.Errorf("%s refused with %v:\nserver: %v\ndirect: %v", name, tc.sentinel, server, local)
			}
		}
		srv.Close()
	}
}
