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
}

// shBlocks returns the ```sh fenced blocks of a Markdown document in order.
// Other fenced blocks (console, text, json, ...) are skipped.
func shBlocks(doc string) ([]docBlock, error) {
	var (
		blocks []docBlock
		cur    *docBlock
		fence  string // the open fence's backticks, or "" outside a block
		body   strings.Builder
	)
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence == "" {
			if !strings.HasPrefix(trimmed, "```") {
				continue
			}
			info := strings.TrimLeft(trimmed, "`")
			fence = trimmed[:len(trimmed)-len(info)]
			if strings.TrimSpace(info) == "sh" {
				cur = &docBlock{line: n}
				body.Reset()
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`") == "" {
			if cur != nil {
				cur.text = body.String()
				blocks = append(blocks, *cur)
				cur = nil
			}
			fence = ""
			continue
		}
		if cur != nil {
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if fence != "" {
		return nil, errors.New("a fenced block is not closed")
	}
	return blocks, nil
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
		fmt.Fprintf(&script, "\ndoc_block=%s\necho \"=== $doc_block\"\n%s", shellQuote(name), text)
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
	t.Logf("ran %d examples of %s in %s", len(blocks), apiDoc, time.Since(start).Round(time.Millisecond))
}
