package cli

import (
	"context"
	"errors"
	"io/fs"
	"iter"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// TestDatabaseSchemes checks the spellings of --database: SQLite paths
// as sqlite:, sqlite:// and file: URIs open the file they name (not a
// file named after the URI), PostgreSQL URLs are recognised, and any other
// scheme is refused by name, creating nothing.
func TestDatabaseSchemes(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tc := range []struct{ dsn, file string }{
		{"sqlite:a.db", "a.db"},
		{"sqlite://b.db", "b.db"},
		{"sqlite://" + filepath.Join(dir, "c.db"), "c.db"},
		{"file:d.db?mode=rwc", "d.db"},
		{"file://" + filepath.Join(dir, "e.db"), "e.db"},
		{"file:sp%20ace.db", "sp ace.db"},
	} {
		ok(t, runWeft(t, "migrate", "up", "--database", tc.dsn))
		if _, err := os.Stat(filepath.Join(dir, tc.file)); err != nil {
			t.Errorf("--database %s: %s was not created: %v", tc.dsn, tc.file, err)
		}
		// And the data commands read the same file.
		ok(t, runWeft(t, "enqueue", "k", "--database", tc.dsn))
		if r := ok(t, runWeft(t, "list", "--database", tc.file)); !strings.Contains(r.stdout, "pending") {
			t.Errorf("the task enqueued through %s is not in %s:\n%s", tc.dsn, tc.file, r)
		}
	}
	// mode=rw means the file must exist.
	failsWith(t, runWeft(t, "migrate", "up", "--database", "file:f.db?mode=rw"), exitError, "f.db does not exist")

	for _, tc := range []struct{ dsn, want string }{
		{"mysql://root@localhost/weft", "mysql:// is not supported: use a SQLite path (for example ./weft.db) or a postgres:// URL"},
		{"MySQL://root@localhost/weft", "mysql:// is not supported"},
		{"redis://localhost:6379", "redis:// is not supported"},
		{"file:g.db?cache=shared", `parameter "cache" is not supported`},
		{"file:g.db?mode=ro", "mode=ro is not supported"},
		{"sqlite:", "names no file"},
	} {
		for _, cmd := range [][]string{{"migrate", "up"}, {"list"}, {"serve", "--addr", "127.0.0.1:0"}} {
			failsWith(t, runWeft(t, append(cmd, "--database", tc.dsn)...), exitUsage, tc.want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.Contains(n, ":") || strings.HasPrefix(n, "g.db") || strings.HasPrefix(n, "f.db") {
			t.Errorf("a refused --database left %s behind", n)
		}
	}
}

// TestServeCreatesNothingWhenItCannotListen checks that serve binds its
// address before it creates (and migrates) a database.
func TestServeCreatesNothingWhenItCannotListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(t.TempDir(), "weft.db")
	failsWith(t, runWeft(t, "serve", "--addr", ln.Addr().String(), "--database", path), exitError, "the address is in use")
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve created %s although it could not listen (%v)", path, err)
	}
}

// TestGlobalFlagsWhereTheyApply checks --version, and that each command
// lists (and takes) only the global flags it uses.
func TestGlobalFlagsWhereTheyApply(t *testing.T) {
	r := ok(t, runWeft(t, "--version"))
	if v := ok(t, runWeft(t, "version")).stdout; r.stdout != v {
		t.Errorf("--version printed %q, version %q", r.stdout, v)
	}
	for _, tc := range []struct {
		cmd        []string
		has, lacks []string
	}{
		{[]string{"version"}, []string{"--format"}, []string{"--database", "--server", "--token", "--log-level"}},
		{[]string{"serve"}, []string{"--database", "--token", "--log-level", `(default "weft.db")`}, []string{"--server", "--format"}},
		{[]string{"worker"}, []string{"--server", "--token"}, []string{"--database", "--format"}},
		{[]string{"migrate", "up"}, []string{"--database", "--format"}, []string{"--server", "--token"}},
		{[]string{"bench"}, []string{"--database", "default: a temporary directory"}, []string{"--server", `(default "weft.db")`}},
		{[]string{"list"}, []string{"--server", "--database", "--format"}, []string{`(default "weft.db")`}},
		{[]string{"queues", "pause"}, []string{"--server", "--database", "--create"}, nil},
		{[]string{"task"}, []string{"--timeout", "--monitor prints ndjson when stdout is not a terminal", "3 no such task"}, nil},
	} {
		help := ok(t, runWeft(t, append(tc.cmd, "--help")...)).stdout
		for _, want := range tc.has {
			if !strings.Contains(help, want) {
				t.Errorf("%v --help lacks %s:\n%s", tc.cmd, want, help)
			}
		}
		for _, not := range tc.lacks {
			if strings.Contains(help, not) {
				t.Errorf("%v --help shows %s:\n%s", tc.cmd, not, help)
			}
		}
	}
	failsWith(t, runWeft(t, "version", "--database", "x.db"), exitUsage, "unknown flag: --database")
	// Shell completion is listed and documented.
	if help := ok(t, runWeft(t, "--help")).stdout; !strings.Contains(help, "completion") {
		t.Errorf("help does not list completion:\n%s", help)
	}
	if r := ok(t, runWeft(t, "completion", "bash")); !strings.Contains(r.stdout, "bash completion") {
		t.Errorf("completion bash:\n%.300s", r.stdout)
	}
}

// TestMonitorExitCodes checks the monitor's exit codes for a task that
// cannot be followed: 3 for a malformed id, an unknown task, and a server
// that stays unreachable for --timeout.
func TestMonitorExitCodes(t *testing.T) {
	path, _ := testenv.SQLite(t)
	failsWith(t, runWeft(t, "task", "not-a-uuid", "--monitor", "--database", path), exitTaskUnknown, `malformed task id "not-a-uuid"`, "a task id is a UUID")
	failsWith(t, runWeft(t, "task", "not-a-uuid", "--database", path), exitUsage, `malformed task id "not-a-uuid"`)
	failsWith(t, runWeft(t, "task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e", "--cancel", "--monitor", "--database", path), exitTaskUnknown, "404 not_found")

	start := time.Now()
	r := runWeft(t, "task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e", "--monitor", "--timeout", "600ms", "--server", closedServer(t))
	failsWith(t, r, exitTaskUnknown, "gave up after 600ms without reaching the server (--timeout)", "cannot reach the Weft server")
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("gave up after %s, before --timeout", d)
	}
	failsWith(t, runWeft(t, "task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e", "--monitor", "--timeout", "-1s"), exitUsage, "--timeout")
}

// TestMonitorCleanEndWarning checks the warning of a stream the server
// ended cleanly (as it does when it shuts down): it says so, without an
// empty error.
func TestMonitorCleanEndWarning(t *testing.T) {
	_, st := testenv.SQLite(t)
	id := enqueueStore(t, st, store.NewTask{Kind: "job"})[0]
	b := &endingBackend{backend: newDirectBackend(st)}
	var out, errb syncBuffer
	g := &globals{stdout: &out, stderr: &errb, LogLevel: "info", LogFormat: "text"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		// Finish the task once the monitor has reconnected.
		for !strings.Contains(errb.String(), "reconnecting") {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		claimAndFinish(t, st, id, store.StateCompleted, "")
	}()
	if err := monitorTask(ctx, g, b, id, monitorOptions{timeout: time.Minute}); err != nil {
		t.Fatalf("monitor: %v\n%s", err, errb.String())
	}
	if log := errb.String(); strings.Contains(log, "err=<nil>") || !strings.Contains(log, "the server ended the event stream before the task finished") {
		t.Errorf("warning:\n%s", log)
	}
}

// endingBackend ends its first event stream at once, without an error.
type endingBackend struct {
	backend
	streams int
}

func (e *endingBackend) Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	e.streams++
	if e.streams == 1 {
		return func(func(api.Event, error) bool) {}
	}
	return e.backend.Events(ctx, id, after, follow)
}

// TestQueuesWatch follows `queues --watch` off a terminal, directly on
// the database and through a server: one NDJSON line per refresh, with
// the counts and the rates of the events of every task.
func TestQueuesWatch(t *testing.T) {
	s := newTestServer(t, "")
	for _, via := range [][]string{{"--database", s.path}, {"--server", s.url}} {
		t.Run(via[0], func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, append([]string{"queues", "--watch", "--interval", "100ms"}, via...), strings.NewReader(""), &out, &errb,
					func(string) (string, bool) { return "", false })
			}()
			// Enqueue until a refresh counts what was enqueued: the
			// watch follows the feed from its end, so what came before
			// it started is not counted.
			deadline := time.Now().Add(20 * time.Second)
			var seen watchLine
			for time.Now().Before(deadline) && seen.Queues == nil {
				enqueueStore(t, s.st, store.NewTask{Kind: "w", Queue: "watched"})
				time.Sleep(50 * time.Millisecond)
				for _, line := range ndjson[watchLine](t, out.String()) {
					for _, q := range line.Queues {
						if q.Name == "watched" && q.Rates != nil && q.Rates.Created > 0 && q.Counts["pending"] > 0 {
							seen = line
						}
					}
				}
			}
			cancel()
			if code := <-done; code != exitInterrupted {
				t.Errorf("exit %d after Ctrl-C, want %d\nstderr: %s", code, exitInterrupted, errb.String())
			}
			if seen.Queues == nil || seen.At.IsZero() {
				t.Fatalf("no refresh counted the enqueued tasks:\n%s\nstderr: %s", out.String(), errb.String())
			}
			if errb.String() != "weft: interrupted\n" {
				t.Errorf("stderr: %s", errb.String())
			}
		})
	}
	failsWith(t, runWeft(t, "queues", "--watch", "--interval", "0s", "--database", s.path), exitUsage, "--interval")
}

// TestDrawWatch checks the table `queues --watch` redraws on a terminal.
func TestDrawWatch(t *testing.T) {
	now := time.Now()
	oldest := now.Add(-90 * time.Second)
	var b strings.Builder
	line := watchLine{At: now, Queues: []watchedQueue{
		{Queue: api.Queue{Name: "mail", Counts: map[string]int64{"pending": 7, "running": 2}, OldestReadyAt: &oldest}, Rates: &queueRates{Created: 12.5, Completed: 240, Failed: 0.25}},
		{Queue: api.Queue{Name: "reports", Paused: true, Counts: map[string]int64{}}},
	}}
	if err := drawWatch(&b, line, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, want := range []string{"\x1b[H\x1b[2J", "every 2s (Ctrl-C to stop)", "IN/S", "DONE/S", "FAILED/S", "waiting 1m30s", "12.5", "240", "0.2", "reports  yes"} {
		if !strings.Contains(got, want) {
			t.Errorf("the table lacks %q:\n%s", want, got)
		}
	}
}
