package cli

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/testenv"
)

// mcpSession runs `weft mcp` with args in process, its stdin and stdout
// piped to an MCP client, and returns the client's session. Closing the
// session closes the command's stdin; wait then returns how it ended.
func mcpSession(t *testing.T, env map[string]string, args ...string) (cs *mcp.ClientSession, wait func() result) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		code := run(context.Background(), append([]string{"mcp"}, args...), inR, outW, &stderr, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		outW.Close()
		done <- code
	}()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(context.Background(),
		&mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, stderr.String())
	}
	return cs, func() result {
		return result{code: <-done, stderr: stderr.String()}
	}
}

// mcpCall calls a tool and returns its text and whether it is an error.
func mcpCall(t *testing.T, cs *mcp.ClientSession, name string, args any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res.Content[0].(*mcp.TextContent).Text, res.IsError
}

func TestMCPCommandDirect(t *testing.T) {
	path, st := testenv.SQLite(t)
	cs, wait := mcpSession(t, nil, "--database", path)
	out, isErr := mcpCall(t, cs, "enqueue_task", map[string]any{"kind": "email", "args": map[string]string{"to": "ada"}})
	enq := decode[api.Enqueued](t, out)
	if isErr || enq.ID == "" {
		t.Fatalf("enqueue_task: %s", out)
	}
	if got, err := st.Get(context.Background(), enq.ID); err != nil || string(got.Args) != `{"to":"ada"}` {
		t.Errorf("stored task = %+v, %v", got, err)
	}
	out, isErr = mcpCall(t, cs, "get_task", map[string]any{"id": "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"})
	if e := decode[api.Error](t, out); !isErr || e.Error.Code != api.CodeNotFound {
		t.Errorf("unknown task: %s", out)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if r := wait(); r.code != exitOK || !strings.Contains(r.stderr, "serving MCP on stdin and stdout") {
		t.Errorf("weft mcp after the client left:\n%s", r)
	}
}

func TestMCPCommandServer(t *testing.T) {
	s := newTestServer(t, "s3cret")
	cs, wait := mcpSession(t, map[string]string{"WEFT_API_TOKEN": "s3cret"}, "--server", s.url)
	out, isErr := mcpCall(t, cs, "queue_stats", map[string]any{})
	if isErr || decode[api.QueueList](t, out).Queues == nil {
		t.Errorf("queue_stats: %s", out)
	}
	_ = cs.Close()
	ok(t, wait())

	// A wrong token and an unreachable server are the tool's errors,
	// explained to whoever started the agent.
	for _, c := range []struct {
		env  map[string]string
		url  string
		want string
	}{
		{map[string]string{"WEFT_API_TOKEN": "wrong"}, s.url, `"code":"unauthorized"`},
		{nil, closedServer(t), "cannot reach the Weft server"},
	} {
		cs, wait := mcpSession(t, c.env, "--server", c.url)
		out, isErr := mcpCall(t, cs, "list_tasks", map[string]any{})
		if !isErr || !strings.Contains(out, c.want) {
			t.Errorf("list_tasks on %s: %s, want an error with %s", c.url, out, c.want)
		}
		_ = cs.Close()
		ok(t, wait())
	}
}

func TestMCPCommandUsage(t *testing.T) {
	failsWith(t, runWeft(t, "mcp", "extra"), exitUsage, "expected no arguments")
	failsWith(t, runWeft(t, "mcp", "--server", "ftp://x"), exitUsage, "--server")
	failsWith(t, runWeft(t, "mcp", "--database", "/nonexistent/weft.db"), exitError, "does not exist")
}
