package cli

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// Hostile command lines: names with quotes, NUL bytes, SQL and unicode;
// database paths that lead elsewhere or to things that are not databases;
// --args that are huge or nested beyond reason. The promises are the same
// for all: never a panic, never a partial write, and an error that says
// what is wrong.

// sqlFragment is a classic injection attempt.
const sqlFragment = "'; DROP TABLE weft_tasks; --"

// refusedCleanly checks that r is a clean refusal: exit code 1 or 2, one
// "weft: " error on stderr saying want, nothing on stdout, no stack.
func refusedCleanly(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != exitError && r.code != exitUsage {
		t.Errorf("exit code %d, want %d or %d\n%s", r.code, exitError, exitUsage, r)
	}
	if !strings.HasPrefix(r.stderr, "weft: ") || r.stdout != "" {
		t.Errorf("not a clean refusal:\n%s", r)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("a stack on stderr:\n%s", truncated(r.String()))
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q\n%s", w, truncated(r.String()))
		}
	}
}

// truncated keeps failure output readable when a case involves megabytes.
func truncated(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return s
}

func TestHostileNames(t *testing.T) {
	path, st := testenv.SQLite(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"SQL in kind", []string{"enqueue", sqlFragment}, "kind"},
		{"quotes in kind", []string{"enqueue", `em"a'il`}, "kind"},
		{"NUL in kind", []string{"enqueue", "em\x00ail"}, "kind"},
		{"unicode kind", []string{"enqueue", "émail"}, "kind"},
		{"empty kind", []string{"enqueue", ""}, "kind"},
		{"SQL in queue", []string{"enqueue", "k", "--queue", sqlFragment}, "queue"},
		{"NUL in queue", []string{"enqueue", "k", "--queue", "q\x00"}, "queue"},
		{"oversized unique key", []string{"enqueue", "k", "--unique-key", strings.Repeat("k", 100_000)}, "unique_key"},
		// PostgreSQL text cannot hold NUL, so no backend accepts it.
		{"NUL in unique key", []string{"enqueue", "k", "--unique-key", "k\x00ey"}, "unique_key"},
		{"NUL in metadata JSON text", []string{"enqueue", "k", "--metadata", "{\"a\":\"\x00\"}"}, "--metadata: not valid JSON"},
		{"SQL as batch kind", []string{"batch", "-"}, "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cli{t: t}
			if tc.args[0] == "batch" {
				c.stdin = `{"kind":"` + strings.ReplaceAll(sqlFragment, `'`, `\u0027`) + `"}`
			}
			refusedCleanly(t, c.run(context.Background(), append(tc.args, "--database", path)...), tc.want)
		})
	}
	if n := countTasks(t, st); n != 0 {
		t.Fatalf("refused enqueues stored %d tasks", n)
	}

	// Unique keys are free text: stored and matched byte for byte, never
	// interpreted.
	keys := []string{sqlFragment, `"double" 'single' \back`, "ключ-🔑-鍵", "\u202eRTL\u200b", strings.Repeat("é", store.MaxUniqueKeyLength/2)}
	for _, key := range keys {
		first := decode[api.Enqueued](t, ok(t, runWeft(t, "enqueue", "k", "--unique-key", key, "--database", path, "--format", "json")).stdout)
		got, err := st.Get(context.Background(), first.ID)
		if err != nil || got.UniqueKey != key {
			t.Errorf("key %q stored as %q (%v)", key, got.UniqueKey, err)
		}
		again := decode[api.Enqueued](t, ok(t, runWeft(t, "enqueue", "k", "--unique-key", key, "--database", path, "--format", "json")).stdout)
		if !again.Duplicate || again.ID != first.ID {
			t.Errorf("key %q enqueued again: %+v, want a duplicate of %s", key, again, first.ID)
		}
	}

	// Hostile ids and filters read nothing and change nothing.
	for _, args := range [][]string{
		{"task", sqlFragment},
		{"task", "\x00"},
		{"task", sqlFragment, "--cancel"},
		{"task", "../../etc/passwd", "--retry"},
	} {
		refusedCleanly(t, runWeft(t, append(args, "--database", path)...), "malformed task id")
	}
	for _, args := range [][]string{
		{"list", "--queue", sqlFragment},
		{"list", "--kind", sqlFragment},
		{"list", "--cursor", sqlFragment},
		{"list", "--kind", "k\x00"},
	} {
		r := runWeft(t, append(args, "--database", path, "--format", "json")...)
		if r.code == exitOK {
			if l := decode[api.TaskList](t, r.stdout); len(l.Tasks) > len(keys) {
				t.Errorf("%q listed %d tasks", args, len(l.Tasks))
			}
			continue
		}
		refusedCleanly(t, r)
	}
	if n := countTasks(t, st); n != len(keys) {
		t.Errorf("%d tasks stored, want %d: the table was changed", n, len(keys))
	}
}

func TestHostileDatabasePaths(t *testing.T) {
	dir := t.TempDir()
	// A decoy stands in for /etc/passwd: a command that wrongly wrote to
	// its database path must not be tried on the real one.
	decoyContent := []byte("root:x:0:0:root:/root:/bin/bash\n")
	decoy := filepath.Join(dir, "etc", "passwd")
	nested := filepath.Join(dir, "a", "b")
	for _, d := range []string{filepath.Dir(decoy), nested} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(decoy, decoyContent, 0o644); err != nil {
		t.Fatal(err)
	}
	sidecars := func(p string) []string {
		var found []string
		for _, s := range []string{"-journal", "-wal", "-shm"} {
			if _, err := os.Stat(p + s); err == nil {
				found = append(found, p+s)
			}
		}
		return found
	}
	// SQLite leaves a journal beside what it opened; /dev/null's would be
	// /dev/null-journal. Whatever is there already is not this test's.
	devNullBefore := sidecars(os.DevNull)

	cases := []struct {
		name, dsn string
		want      []string
	}{
		{"traversal to a non-database file", nested + "/../../etc/passwd", []string{"not a database"}},
		{"a non-database file", decoy, []string{"not a database"}},
		{"a directory", dir, []string{"is a directory"}},
		{"a device", os.DevNull, []string{"not a regular file"}},
		{"a NUL byte", filepath.Join(dir, "we\x00ft.db"), []string{`we\x00ft.db" contains a NUL byte`}},
		{"a missing directory", filepath.Join(dir, "nope", "weft.db"), []string{"does not exist"}},
		{"a file: URI in a missing directory", "file:" + filepath.Join(dir, "nope", "x.db") + "?mode=rwc", []string{"does not exist"}},
		{"a PostgreSQL URL with SQL and a password", "postgres://weft:s3cret" + strings.ReplaceAll(sqlFragment, " ", "%20") + "@127.0.0.1:1/weft?sslmode=disable&connect_timeout=2", []string{"connect"}},
	}
	commands := [][]string{
		{"enqueue", "k", "--args", `{"a":1}`},
		{"batch", "-"},
		{"list"},
		{"task", "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"},
		{"migrate", "up"},
		{"migrate", "status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, cmd := range commands {
				c := cli{t: t, stdin: `{"kind":"k"}`}
				r := c.run(context.Background(), append(cmd, "--database", tc.dsn)...)
				if strings.Contains(tc.dsn, "s3cret") && strings.Contains(r.stderr, "s3cret") {
					t.Errorf("%q: the password is in the error: %s", cmd, r.stderr)
				}
				if strings.Contains(tc.name, "missing") || strings.Contains(tc.name, "URI") {
					// Reading commands say the file does not exist;
					// creating ones say its directory does not.
					refusedCleanly(t, r)
					if !strings.Contains(r.stderr, "does not exist") {
						t.Errorf("%q: stderr lacks \"does not exist\"\n%s", cmd, r)
					}
					continue
				}
				if cmd[0] == "migrate" && cmd[1] == "status" && r.code == exitOK {
					continue // status of a database that is not there reads nothing
				}
				refusedCleanly(t, r, tc.want...)
			}
		})
	}
	if b, err := os.ReadFile(decoy); err != nil || !bytes.Equal(b, decoyContent) {
		t.Errorf("the decoy passwd file changed: %q (%v)", b, err)
	}
	if s := sidecars(decoy); len(s) > 0 {
		t.Errorf("files left beside the decoy: %v", s)
	}
	if after := sidecars(os.DevNull); len(after) > len(devNullBefore) {
		t.Errorf("files left beside %s: %v", os.DevNull, after)
		for _, p := range after {
			if !strings.Contains(strings.Join(devNullBefore, " "), p) {
				os.Remove(p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing directory was created (%v)", err)
	}

	// A path that looks like SQLite URI parameters names a file; the
	// parameters are not applied (mode=memory would lose every task).
	uriPath := filepath.Join(dir, "w.db?mode=memory&cache=shared")
	ok(t, runWeft(t, "migrate", "up", "--database", uriPath))
	id := strings.TrimSpace(ok(t, runWeft(t, "enqueue", "k", "--database", uriPath)).stdout)
	if _, err := os.Stat(uriPath); err != nil {
		t.Errorf("no file named %q: %v", filepath.Base(uriPath), err)
	}
	if r := ok(t, runWeft(t, "task", id, "--database", uriPath, "--format", "json")); decode[api.Task](t, r.stdout).ID != id {
		t.Errorf("the task is not in %s:\n%s", uriPath, r)
	}
}

func TestHostileArgs(t *testing.T) {
	path, st := testenv.SQLite(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return "@" + p
	}
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	// 50 MB once; the variants of the same refusal use 4 MiB, beyond the
	// 1 MiB limit too: under the race detector every 50 MB costs ~10s.
	big := `{"blob":"` + strings.Repeat("x", 50<<20) + `"}`
	large := `{"blob":"` + strings.Repeat("x", 4<<20) + `"}`
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  []string
	}{
		{"100k levels of nesting", []string{"--args", deep}, "", []string{"--args: not valid JSON", "exceeded max depth"}},
		{"100k levels from a file", []string{"--args", file("deep.json", deep)}, "", []string{"exceeded max depth"}},
		{"100k levels from standard input", []string{"--args", "-"}, deep, []string{"exceeded max depth"}},
		{"100k levels of metadata", []string{"--metadata", `{"a":` + deep + `}`}, "", []string{"--metadata: not valid JSON", "exceeded max depth"}},
		{"50 MB of args", []string{"--args", big}, "", []string{"422 invalid: args:", "exceeds the limit of 1048576 bytes"}},
		{"4 MiB of args from standard input", []string{"--args", "-"}, large, []string{"exceeds the limit"}},
		{"4 MiB of metadata", []string{"--metadata", large}, "", []string{"422 invalid: metadata:", "exceeds the limit"}},
		{"4 MiB unterminated", []string{"--args", large[:len(large)-2]}, "", []string{"--args: not valid JSON", "unexpected end of input"}},
		{"50 MB of garbage", []string{"--args", strings.Repeat("x", 50<<20)}, "", []string{"--args: not valid JSON", "at byte"}},
		{"a raw NUL byte", []string{"--args", "{\"a\":\"\x00\"}"}, "", []string{"--args: not valid JSON"}},
		{"two documents", []string{"--args", `{} {}`}, "", []string{"extra data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cli{t: t, stdin: tc.stdin}
			r := c.run(context.Background(), append([]string{"enqueue", "k", "--database", path}, tc.args...)...)
			refusedCleanly(t, r, tc.want...)
			if len(r.stderr) > 4096 {
				t.Errorf("a %d-byte error message: the input is echoed back", len(r.stderr))
			}
		})
	}
	if n := countTasks(t, st); n != 0 {
		t.Fatalf("refused enqueues stored %d tasks", n)
	}

	// A batch line beyond the 16 MiB bound is refused by line.
	r := cli{t: t, stdin: `{"kind":"a"}` + "\n" + `{"kind":"b","args":"` + strings.Repeat("y", 17<<20) + `"}`}.run(context.Background(), "batch", "-", "--database", path)
	refusedCleanly(t, r, "line 2", "longer than 16 MiB")

	// Deep nesting within encoding/json's bound (10,000 levels) is valid
	// JSON, small, and accepted: it must come back intact. It reads back
	// as NDJSON: --format json indents the args too, and indentation
	// grows with the square of the depth (9,000 levels, 54 KB of args,
	// print as 162 MB).
	nested := strings.Repeat(`{"a":`, 9000) + `1` + strings.Repeat(`}`, 9000)
	id := strings.TrimSpace(ok(t, runWeft(t, "enqueue", "k", "--database", path, "--args", nested)).stdout)
	got, err := st.Get(context.Background(), id)
	if err != nil || string(got.Args) != nested {
		t.Errorf("9,000 levels of args stored as %d bytes (%v), want them intact", len(got.Args), err)
	}
	task := ok(t, runWeft(t, "task", id, "--database", path, "--format", "ndjson"))
	if string(decode[api.Task](t, task.stdout).Args) != nested {
		t.Errorf("9,000 levels of args do not read back intact")
	}
	if n := countTasks(t, st); n != 1 {
		t.Errorf("%d tasks stored, want 1", n)
	}
}
