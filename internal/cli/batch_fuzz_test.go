package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// batchSeeds are NDJSON files, good and hostile, for FuzzBatchNDJSON.
var batchSeeds = []string{
	`{"kind":"email","args":{"to":"a"}}` + "\n\n" + `{"kind":"email","unique_key":"dup"}` + "\n" + `{"kind":"email","unique_key":"dup"}`,
	`  {"kind":"report","queue":"reports","delay":"1h","priority":3}  ` + "\r\n" + `{"kind":"b","run_at":"2030-01-02T03:04:05Z"}`,
	`{"kind":"a"}` + "\n\n" + `{"kind":"b","queu":"x"}`,
	`{"kind":"a"}` + "\n" + `{"kind":`,
	`{"kind":"a"} {"kind":"b"}`,
	`{"kind":"a","priority":"high"}`,
	`{"kind":"a","priority":1e400}`,
	`{"kind":"a","priority":9223372036854775808}`,
	`[1,2]`,
	`null`,
	`"kind"`,
	`{"args":{}}`,
	`{"kind":"a"}` + "\n" + `{"kind":"9c"}`,
	`{"kind":"c","delay":"soon"}`,
	`{"kind":"c","delay":"-1s"}`,
	`{"kind":"c","delay":"2562047h"}`,
	`{"kind":"c","delay":"1s","run_at":"2030-01-01T00:00:00Z"}`,
	`{"kind":"c","run_at":"0001-01-01T00:00:00Z"}`,
	`{"kind":"c","run_at":"9999-12-31T23:59:59Z"}`,
	`{"kind":"c","timeout":"-5s","max_attempts":-1}`,
	`{"kind":"c","metadata":[1]}`,
	`{"kind":"c","metadata":null,"args":null}`,
	`{"kind":"'; DROP TABLE weft_tasks; --"}`,
	`{"kind":"a","unique_key":"'; DROP TABLE weft_tasks; --","queue":"q\"uote"}`,
	`{"kind":"a","unique_key":"k\u0000ey","args":{"s":"\u0000\ud800"}}`,
	`{"kind":"émail"}`,
	`{"kind":"a","kind":"b"}`,
	"\xef\xbb\xbf" + `{"kind":"bom"}`,
	"{\"kind\":\"a\",\"args\":\"\xff\xfe\"}",
	`{"kind":"a","args":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	`{"kind":"a","args":` + strings.Repeat(`{"a":`, 500) + `1` + strings.Repeat(`}`, 500) + `}`,
	"\n\n\n",
	"",
}

// lineNamed finds the line an error names.
var lineNamed = regexp.MustCompile(`line (\d+)`)

// FuzzBatchNDJSON runs `weft batch -` on a real SQLite database, directly
// (no server), with the fuzzer's input as the NDJSON file. Whatever the
// input: no panic; success prints one answer per task and stores exactly
// the new ones; a refusal exits 1, names the line at fault (unless the
// file as a whole is wrong: empty, or too many tasks), and stores nothing.
// `go test` runs the seeds; `go test -fuzz FuzzBatchNDJSON ./internal/cli`
// explores.
func FuzzBatchNDJSON(f *testing.F) {
	for _, s := range batchSeeds {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "weft.db")
	// NORMAL: a fuzzer's database is not worth an fsync per input.
	st, err := sqlite.Open(context.Background(), path, &sqlite.Options{Logger: slog.New(slog.DiscardHandler), Synchronous: sqlite.SyncNormal})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	f.Fuzz(func(t *testing.T, input []byte) {
		before := totalTasks(t, st)
		r := cli{t: t, stdin: string(input)}.run(context.Background(), "batch", "-", "--database", path, "--format", "json")
		added := totalTasks(t, st) - before
		if r.code != exitOK {
			if r.code != exitError {
				t.Fatalf("input %q: exit %d, want %d\n%s", input, r.code, exitError, r)
			}
			if added != 0 {
				t.Fatalf("input %q: refused, yet %d tasks were stored\n%s", input, added, r)
			}
			if !strings.HasPrefix(r.stderr, "weft: ") || strings.Contains(r.stderr, "goroutine ") || r.stdout != "" {
				t.Fatalf("input %q: not a one-line error:\n%s", input, r)
			}
			checkNamesLine(t, input, r.stderr)
			return
		}
		var res api.BatchEnqueued
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("input %q: success, but stdout is not the answer: %v\n%s", input, err, r)
		}
		fresh := 0
		for _, task := range res.Tasks {
			if task.ID == "" {
				t.Fatalf("input %q: an answer without an id\n%s", input, r)
			}
			if !task.Duplicate {
				fresh++
			}
		}
		if n := nonBlankLines(input); len(res.Tasks) != n {
			t.Fatalf("input %q: %d answers for %d non-blank lines\n%s", input, len(res.Tasks), n, r)
		}
		if added != fresh {
			t.Fatalf("input %q: %d tasks stored, %d reported new\n%s", input, added, fresh, r)
		}
	})
}

// checkNamesLine requires an error about a batch to name an existing line
// of it, unless it is about the file as a whole.
func checkNamesLine(t *testing.T, input []byte, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "no tasks (expected one JSON task per line)") ||
		strings.Contains(stderr, "one batch may hold") {
		return
	}
	m := lineNamed.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("input %q: the error names no line: %s", input, stderr)
	}
	n, _ := strconv.Atoi(m[1])
	if lines := bytes.Count(input, []byte("\n")) + 1; n < 1 || n > lines {
		t.Fatalf("input %q: the error names line %d of %d: %s", input, n, lines, stderr)
	}
}

// nonBlankLines counts the lines that are not blank, as `weft batch` does.
func nonBlankLines(input []byte) int {
	n := 0
	for _, l := range bytes.Split(input, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			n++
		}
	}
	return n
}

// totalTasks counts the stored tasks in every state.
func totalTasks(t *testing.T, st store.Store) int {
	t.Helper()
	stats, err := st.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range stats {
		for _, c := range q.Counts {
			n += int(c)
		}
	}
	return n
}
