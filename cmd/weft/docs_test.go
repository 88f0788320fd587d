//go:build unix

package main_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// apiDoc is the guide whose sh examples TestAPIDocExamples runs, within
// docExamplesTimeout.
const (
	apiDoc             = "../../docs/api.md"
	docExamplesTimeout = 2 * time.Minute
)

// docBaseAddrs are the addresses the guide's examples use for the server;
// the test points them at its own server.
var docBaseAddrs = []string{"127.0.0.1:7070", "localhost:7070"}

// docBlock is one ```sh fenced block of the guide.
type docBlock struct {
	// line is the line number of the opening fence, 1-based.
	line int
	// text is the block's content, each line ending with a newline.
	text string
	// output is what the guide shows the block printing: the ```text or
	// ```json block that follows it with nothing but blank lines between.
	output *docOutput
}

// docOutput is the output the guide shows for an example.
type docOutput struct {
	line int
	text string
}

// shBlocks returns the ```sh fenced blocks of a Markdown document in order,
// each with the output block that follows it, if any. Other fenced blocks
// (console, text, json, ...) are skipped.
func shBlocks(doc string) ([]docBlock, error) {
	var (
		blocks []docBlock
		cur    *docBlock
		out    *docOutput
		fence  string // the open fence's backticks, or "" outside a block
		body   strings.Builder
		// lastSh is the index of the last sh block while only blank lines
		// followed it, -1 otherwise.
		lastSh = -1
	)
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if !strings.HasPrefix(trimmed, "```") {
				if trimmed != "" {
					lastSh = -1
				}
				continue
			}
			info := strings.TrimSpace(strings.TrimLeft(trimmed, "`"))
			fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, "`"))]
			body.Reset()
			switch {
			case info == "sh":
				cur = &docBlock{line: n}
			case (info == "text" || info == "json") && lastSh >= 0:
				out = &docOutput{line: n}
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`") == "" {
			lastSh = -1
			switch {
			case cur != nil:
				cur.text = body.String()
				blocks = append(blocks, *cur)
				lastSh = len(blocks) - 1
				cur = nil
			case out != nil:
				out.text = body.String()
				blocks[len(blocks)-1].output = out
				out = nil
			}
			fence = ""
			continue
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if fence != "" {
		return nil, errors.New("a fenced block is not closed")
	}
	return blocks, nil
}

// volatile matches what differs from run to run in the guide's outputs:
// ids, times, event numbers, lease tokens, the version, measured values.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "<id>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(`("seq": ?|^id: )\d+`), "${1}<n>"},
	{regexp.MustCompile(`("lease_token": ?)"[^"]*"`), `${1}"<token>"`},
	{regexp.MustCompile(`("version": ?)"[^"]*"`), `${1}"<version>"`},
}

// normalize prepares an output for comparison: volatile values replaced,
// trailing blanks and blank lines at the end dropped.
func normalize(s string) []string {
	var out []string
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, " \t\r\n")
		for _, v := range volatile {
			line = v.re.ReplaceAllString(line, v.with)
		}
		out = append(out, line)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// sameOutput compares an example's output with what the guide shows. A
// documented line "..." stands for any number of lines; "..." within a
// line for any text.
func sameOutput(documented, got string) bool {
	return matchLines(normalize(documented), normalize(got))
}

func matchLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if want[0] == "..." {
		for i := 0; i <= len(got); i++ {
			if matchLines(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && matchLine(want[0], got[0]) && matchLines(want[1:], got[1:])
}

func matchLine(want, got string) bool {
	if !strings.Contains(want, "...") {
		return want == got
	}
	parts := strings.Split(regexp.QuoteMeta(want), regexp.QuoteMeta("..."))
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(got)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// TestAPIDocExamples runs every sh example of docs/api.md, in order and in
// one shell, against a fresh `weft serve`, as a reader would: the guide
// promises that they work as written.
func TestAPIDocExamples(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI to run the examples of docs/api.md", tool)
			}
			t.Skipf("%s not installed: the examples of docs/api.md need it", tool)
		}
	}
	raw, err := os.ReadFile(apiDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := shBlocks(string(raw))
	if err != nil {
		t.Fatalf("%s: %v", apiDoc, err)
	}
	if len(blocks) == 0 {
		t.Fatalf("%s has no sh examples", apiDoc)
	}

	// A server of its own, without a token even if the environment has one.
	s := startServer(t, []string{"WEFT_API_TOKEN="}, "--database", filepath.Join(t.TempDir(), "weft.db"))
	hostPort := strings.TrimPrefix(s.URL, "http://")

	var script strings.Builder
	script.WriteString("doc_block=none\n")
	script.WriteString(`trap 'rc=$?; if [ "$rc" -ne 0 ]; then echo "docs/api.md: example $doc_block failed (exit $rc)"; fi' EXIT` + "\n")
	for i, b := range blocks {
		text := b.text
		for _, addr := range docBaseAddrs {
			text = strings.ReplaceAll(text, addr, hostPort)
		}
		if strings.Contains(text, ":7070") {
			t.Fatalf("%s:%d: the example uses a server address other than %s:\n%s", apiDoc, b.line, strings.Join(docBaseAddrs, " or "), b.text)
		}
		if strings.Contains(text, "weft serve") {
			// The test brings its own server; starting one belongs in a
			// console block.
			t.Fatalf("%s:%d: an sh example starts weft serve; show that in a console block:\n%s", apiDoc, b.line, b.text)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(b.text), "\n")
		name := fmt.Sprintf("%d/%d (line %d: %s)", i+1, len(blocks), b.line+1, first)
		fmt.Fprintf(&script, "\ndoc_block=%s\necho \"=== $doc_block\"\n", shellQuote(name))
		if b.output == nil {
			script.WriteString(text)
			continue
		}
		// In the same shell (braces, not a subshell), so that variables
		// carry on; the output is kept for comparison and shown too.
		fmt.Fprintf(&script, "{\n%s} > out-%d.txt 2>&1\ncat out-%d.txt\n", text, i, i)
	}
	script.WriteString("\ndoc_block=none\n")

	dir := t.TempDir()
	path := filepath.Join(dir, "api-examples.sh")
	if err := os.WriteFile(path, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), docExamplesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-eu", "-o", "pipefail", path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"WEFT_API_TOKEN=",
		"TMPDIR="+dir,
		// Nothing between curl and the loopback server, whatever the
		// developer's settings.
		"CURL_HOME="+dir, "NO_PROXY=*", "no_proxy=*",
	)
	// Background jobs of the examples (a followed stream, a long poll)
	// are killed with the shell on timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		// Whatever an example left running in the background goes too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		t.Fatalf("the examples of %s did not finish within %s; output so far:\n%s", apiDoc, docExamplesTimeout, out.String())
	}
	if err != nil {
		t.Fatalf("the examples of %s failed: %v\n%s", apiDoc, err, out.String())
	}
	compared := 0
	for i, b := range blocks {
		if b.output == nil {
			continue
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out-%d.txt", i)))
		if err != nil {
			t.Fatal(err)
		}
		compared++
		if !sameOutput(b.output.text, string(got)) {
			t.Errorf("%s:%d: the example prints what line %d does not show (ids, times, event numbers, tokens and the version aside):\n--- shown:\n%s--- printed:\n%s",
				apiDoc, b.line, b.output.line, b.output.text, got)
		}
	}
	t.Logf("ran %d examples of %s in %s, %d outputs compared", len(blocks), apiDoc, time.Since(start).Round(time.Millisecond), compared)
}

// TestSameOutput checks the comparison of documented outputs.
func TestSameOutput(t *testing.T) {
	for _, tc := range []struct {
		shown, printed string
		same           bool
	}{
		{`{"id":"01a2092d-fb9e-7ec6-bdaa-6ebd8747a6c9","seq":7}` + "\n", `{"id":"01a252a2-d923-7a52-89d6-fffbef29a099","seq":31}` + "\n\n", true},
		{`{"at":"2026-11-23T16:12:18.206961Z"}`, `{"at":"2026-12-07T22:32:13Z"}`, true},
		{"a\nb\n", "a\nc\n", false},
		{"a\n...\nd\n", "a\nb\nc\nd\n", true},
		{"a\n...\nd\n", "a\nd\n", true},
		{"a\n...\nd\n", "a\nb\n", false},
		{"}...\n", "},\n", true},
		{"x...y\n", "xzz\n", false},
		{"409\n", "400\n", false},
	} {
		if got := sameOutput(tc.shown, tc.printed); got != tc.same {
			t.Errorf("sameOutput(%q, %q) = %v", tc.shown, tc.printed, got)
		}
	}
}
