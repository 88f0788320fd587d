package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/api"
)

// bearerTransport adds the API token to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// mcpClient is a session on the real binary with the progress
// notifications it received.
type mcpClient struct {
	cs       *mcp.ClientSession
	progress chan string
}

func connectMCP(t *testing.T, tr mcp.Transport) *mcpClient {
	t.Helper()
	c := &mcpClient{progress: make(chan string, 64)}
	opts := &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		c.progress <- req.Params.Message
	}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, opts).Connect(context.Background(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	c.cs = cs
	return c
}

// call calls a tool; a tool error is returned as its text with isErr.
func (c *mcpClient) call(t *testing.T, name string, args any, meta mcp.Meta) (text string, isErr bool) {
	t.Helper()
	res, err := c.cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args, Meta: meta})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res.Content[0].(*mcp.TextContent).Text, res.IsError
}

func mustCall[T any](t *testing.T, c *mcpClient, name string, args any) T {
	t.Helper()
	text, isErr := c.call(t, name, args, nil)
	var out T
	if isErr || json.Unmarshal([]byte(text), &out) != nil {
		t.Fatalf("%s(%v): %s", name, args, text)
	}
	return out
}

// exerciseMCP lists the tools and calls each: an http task runs on the
// server to completion while wait_for_task reports its events as progress.
func exerciseMCP(t *testing.T, c *mcpClient, hookURL string) {
	var tools []string
	for tool, err := range c.cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		tools = append(tools, tool.Name)
	}
	slices.Sort(tools)
	if want := []string{"cancel_task", "enqueue_flow", "enqueue_task", "get_flow", "get_task", "list_tasks", "queue_stats", "retry_task", "signal_waitpoint", "wait_for_task"}; !slices.Equal(tools, want) {
		t.Fatalf("tools = %v, want %v", tools, want)
	}

	hook := mustCall[api.Enqueued](t, c, "enqueue_task", map[string]any{"kind": "http", "args": map[string]any{"url": hookURL + "/ok"}})
	text, isErr := c.call(t, "wait_for_task", map[string]any{"id": hook.ID, "timeout": "1m"}, mcp.Meta{"progressToken": hook.ID})
	var waited struct {
		Task     api.Task `json:"task"`
		Finished bool     `json:"finished"`
	}
	if isErr || json.Unmarshal([]byte(text), &waited) != nil || !waited.Finished || waited.Task.State != "completed" {
		t.Fatalf("wait_for_task: %s", text)
	}
	// The notifications were sent before the result; the client may still
	// be handling the last ones.
	var progress []string
	for !slices.Contains(progress, "completed (attempt 1)") {
		select {
		case p := <-c.progress:
			progress = append(progress, p)
		case <-time.After(10 * time.Second):
			t.Fatalf("progress notifications %q lack the completion", progress)
		}
	}
	if !slices.Contains(progress, "created (attempt 0)") {
		t.Errorf("progress notifications = %q", progress)
	}

	got := mustCall[struct {
		Task   api.Task    `json:"task"`
		Events []api.Event `json:"events"`
	}](t, c, "get_task", map[string]any{"id": hook.ID})
	if got.Task.State != "completed" || len(got.Events) == 0 || got.Events[len(got.Events)-1].Type != "completed" {
		t.Errorf("get_task = %+v", got)
	}
	if l := mustCall[api.TaskList](t, c, "list_tasks", map[string]any{"kind": "http", "states": []string{"completed"}}); !slices.ContainsFunc(l.Tasks, func(tk api.Task) bool { return tk.ID == hook.ID }) {
		t.Errorf("list_tasks lacks %s: %+v", hook.ID, l)
	}
	if q := mustCall[api.QueueList](t, c, "queue_stats", map[string]any{}); len(q.Queues) == 0 || q.Queues[0].Counts["completed"] == 0 {
		t.Errorf("queue_stats = %+v", q)
	}

	later := mustCall[api.Enqueued](t, c, "enqueue_task", map[string]any{"kind": "later", "delay": "1h"})
	if tk := mustCall[api.Task](t, c, "cancel_task", map[string]any{"id": later.ID}); tk.State != "cancelled" {
		t.Errorf("cancel_task = %+v", tk)
	}
	if tk := mustCall[api.Task](t, c, "retry_task", map[string]any{"id": later.ID}); tk.State != "pending" {
		t.Errorf("retry_task = %+v", tk)
	}
	text, isErr = c.call(t, "retry_task", map[string]any{"id": later.ID}, nil)
	var e api.Error
	if !isErr || json.Unmarshal([]byte(text), &e) != nil || e.Error.Code != api.CodeConflict {
		t.Errorf("retrying a pending task: %s", text)
	}

	res, err := c.cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "weft://tasks/" + hook.ID})
	if err != nil || !strings.Contains(res.Contents[0].Text, `"state":"completed"`) {
		t.Errorf("resource: %v %+v", err, res)
	}
}

// TestMCPBinary drives the real binary over MCP: `weft mcp` on stdio
// against a server and straight on its database, and the server's own
// /mcp over streamable HTTP.
func TestMCPBinary(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "weft.db")
	s := startServer(t, []string{"WEFT_API_TOKEN=s3cret"}, "--database", db)
	hook := webhookTarget(t)
	stdio := func(args ...string) mcp.Transport {
		cmd := exec.Command(weftBin, append([]string{"mcp"}, args...)...)
		cmd.Env = append(os.Environ(), "WEFT_API_TOKEN=s3cret")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("weft mcp %v stderr:\n%s", args, stderr.String())
			}
		})
		return &mcp.CommandTransport{Command: cmd}
	}
	transports := []struct {
		name string
		tr   func() mcp.Transport
	}{
		{"stdio-server", func() mcp.Transport { return stdio("--server", s.URL) }},
		// Another process on the server's SQLite file: the server runs the
		// task, and this one sees it finish.
		{"stdio-database", func() mcp.Transport { return stdio("--database", db) }},
		{"http", func() mcp.Transport {
			return &mcp.StreamableClientTransport{Endpoint: s.URL + "/mcp", HTTPClient: &http.Client{Transport: bearerTransport{"s3cret"}}, DisableStandaloneSSE: true}
		}},
	}
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			exerciseMCP(t, connectMCP(t, tc.tr()), hook.URL)
		})
	}
	// /mcp is behind the token like every other route.
	resp, err := http.Post(s.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/mcp without the token: %d", resp.StatusCode)
	}
}
