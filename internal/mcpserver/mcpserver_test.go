package mcpserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/internal/mcpserver"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// allTools are the tools the server offers, by name.
var allTools = []string{"cancel_task", "enqueue_flow", "enqueue_task", "get_flow", "get_task", "list_tasks", "queue_stats", "retry_task", "signal_waitpoint", "wait_for_task"}

// connect serves b in process and returns a client session on it.
func connect(t *testing.T, b mcpserver.Backend, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx := context.Background()
	srv := mcpserver.New(mcpserver.Config{Backend: b, Version: "test", Logger: testenv.Logger()})
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		_ = ss.Wait()
	})
	return cs
}

// serviceBackend is the operator service on a fresh SQLite file.
func serviceBackend(t *testing.T) (mcpserver.Backend, store.Store) {
	t.Helper()
	_, st := testenv.SQLite(t)
	return service(testenv.Client(t, st)), st
}

// service is the operator service on client's store, signals verified
// with client's keys.
func service(client *weft.Client) mcpserver.Backend {
	return mcpserver.Service(ops.New(client.Store(), ops.Config{Poll: 10 * time.Millisecond}), ops.NewWaits(client))
}

// call calls a tool and returns its result, failing the test on a
// protocol error (a tool error is a result).
func call(t *testing.T, cs *mcp.ClientSession, name string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// text is the text of a result's one content block.
func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("result has %d content blocks, want 1", len(res.Content))
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content is %T, want text", res.Content[0])
	}
	return tc.Text
}

// ok calls a tool that must succeed and decodes its output.
func ok[T any](t *testing.T, cs *mcp.ClientSession, name string, args any) T {
	t.Helper()
	res := call(t, cs, name, args)
	if res.IsError {
		t.Fatalf("%s(%v) failed: %s", name, args, text(t, res))
	}
	var out T
	if err := json.Unmarshal([]byte(text(t, res)), &out); err != nil {
		t.Fatalf("%s: decode %q: %v", name, text(t, res), err)
	}
	return out
}

// toolError calls a tool that must fail and returns its error body.
func toolError(t *testing.T, cs *mcp.ClientSession, name string, args any) api.ErrorBody {
	t.Helper()
	res := call(t, cs, name, args)
	if !res.IsError {
		t.Fatalf("%s(%v) succeeded: %s", name, args, text(t, res))
	}
	var e api.Error
	if err := json.Unmarshal([]byte(text(t, res)), &e); err != nil || e.Error.Code == "" {
		t.Fatalf("%s: tool error %q is not the API's error body: %v", name, text(t, res), err)
	}
	return e.Error
}

type getOutput struct {
	Task   api.Task    `json:"task"`
	Events []api.Event `json:"events"`
}

type waitOutput struct {
	Task     api.Task `json:"task"`
	Finished bool     `json:"finished"`
}

func TestMCPListTools(t *testing.T) {
	b, _ := serviceBackend(t)
	cs := connect(t, b, nil)
	var names []string
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
		if tool.Description == "" || tool.OutputSchema == nil {
			t.Errorf("%s has no description or no output schema", tool.Name)
		}
		// Every parameter is explained to the model.
		schema := tool.InputSchema.(map[string]any)
		props, _ := schema["properties"].(map[string]any)
		for name, p := range props {
			if d, _ := p.(map[string]any)["description"].(string); d == "" {
				t.Errorf("%s: parameter %s has no description", tool.Name, name)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, allTools) {
		t.Errorf("tools = %v, want %v", names, allTools)
	}
	var templates []string
	for rt, err := range cs.ResourceTemplates(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, rt.URITemplate)
	}
	if !slices.Equal(templates, []string{"weft://tasks/{id}"}) {
		t.Errorf("resource templates = %v", templates)
	}
}

func TestMCPTaskTools(t *testing.T) {
	b, _ := serviceBackend(t)
	cs := connect(t, b, nil)
	in := map[string]any{"kind": "email", "args": map[string]any{"to": "ada"}, "queue": "mail", "unique_key": "welcome-ada", "delay": "1h", "metadata": map[string]any{"by": "agent"}}
	enq := ok[api.Enqueued](t, cs, "enqueue_task", in)
	if enq.ID == "" || enq.Duplicate {
		t.Fatalf("enqueued = %+v", enq)
	}
	if dup := ok[api.Enqueued](t, cs, "enqueue_task", in); dup.ID != enq.ID || !dup.Duplicate {
		t.Errorf("second enqueue = %+v, want a duplicate of %s", dup, enq.ID)
	}

	got := ok[getOutput](t, cs, "get_task", map[string]any{"id": enq.ID})
	if got.Task.ID != enq.ID || got.Task.State != "pending" || got.Task.Queue != "mail" || string(got.Task.Args) != `{"to":"ada"}` || string(got.Task.Metadata) != `{"by":"agent"}` {
		t.Errorf("get_task = %+v", got.Task)
	}
	if len(got.Events) != 1 || got.Events[0].Type != "created" {
		t.Errorf("events = %+v, want [created]", got.Events)
	}

	list := ok[api.TaskList](t, cs, "list_tasks", map[string]any{"queue": "mail", "states": []string{"pending"}, "kind": "email"})
	if len(list.Tasks) != 1 || list.Tasks[0].ID != enq.ID {
		t.Errorf("list_tasks = %+v", list)
	}
	if l := ok[api.TaskList](t, cs, "list_tasks", map[string]any{"states": []string{"failed"}}); len(l.Tasks) != 0 {
		t.Errorf("failed tasks = %+v", l)
	}
	queues := ok[api.QueueList](t, cs, "queue_stats", map[string]any{})
	if len(queues.Queues) != 1 || queues.Queues[0].Name != "mail" || queues.Queues[0].Counts["pending"] != 1 {
		t.Errorf("queue_stats = %+v", queues)
	}

	if c := ok[api.Task](t, cs, "cancel_task", map[string]any{"id": enq.ID}); c.State != "cancelled" {
		t.Errorf("cancel_task = %+v", c)
	}
	if e := toolError(t, cs, "cancel_task", map[string]any{"id": enq.ID}); e.Code != api.CodeConflict || !strings.Contains(e.Message, "already cancelled") {
		t.Errorf("second cancel = %+v", e)
	}
	if r := ok[api.Task](t, cs, "retry_task", map[string]any{"id": enq.ID}); r.State != "pending" {
		t.Errorf("retry_task = %+v", r)
	}
	// Only the latest events, oldest first.
	got = ok[getOutput](t, cs, "get_task", map[string]any{"id": enq.ID, "events": 2})
	if len(got.Events) != 2 || got.Events[0].Type != "cancelled" || got.Events[1].Type != "retried" {
		t.Errorf("latest 2 events = %+v", got.Events)
	}

	// Nothing runs kind email here: the wait ends with the timeout.
	w := ok[waitOutput](t, cs, "wait_for_task", map[string]any{"id": enq.ID, "timeout": "30ms"})
	if w.Finished || w.Task.State != "pending" {
		t.Errorf("wait_for_task = %+v", w)
	}

	flow := ok[api.FlowEnqueued](t, cs, "enqueue_flow", map[string]any{"name": "report", "tasks": []map[string]any{
		{"key": "fetch", "kind": "fetch", "queue": "mail"},
		{"key": "send", "kind": "send", "queue": "mail", "depends_on": []string{"fetch"}},
	}})
	if len(flow.Tasks) != 2 {
		t.Errorf("enqueue_flow = %+v", flow)
	}
	if f := ok[api.Flow](t, cs, "get_flow", map[string]any{"id": flow.ID, "members": true}); f.State != "running" || len(f.Members) != 2 || f.Members[1].State != "blocked" {
		t.Errorf("get_flow = %+v", f)
	}
	if e := toolError(t, cs, "enqueue_flow", map[string]any{"tasks": []map[string]any{{"key": "a", "kind": "k", "depends_on": []string{"a"}}}}); e.Code != api.CodeInvalid || e.Field != "tasks[0].depends_on[0]" {
		t.Errorf("a flow depending on itself = %+v", e)
	}

	res, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "weft://tasks/" + enq.ID})
	if err != nil {
		t.Fatal(err)
	}
	var rt api.Task
	if len(res.Contents) != 1 || res.Contents[0].MIMEType != "application/json" || json.Unmarshal([]byte(res.Contents[0].Text), &rt) != nil || rt.ID != enq.ID {
		t.Errorf("resource = %+v", res.Contents)
	}
	_, err = cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "weft://tasks/0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown task's resource: %v", err)
	}
}

// apiServer is the real HTTP API, /mcp included, on a SQLite file.
func apiServer(t *testing.T, client *weft.Client, token string) *httptest.Server {
	t.Helper()
	h, err := httpapi.New(httpapi.Config{Client: client, Token: token, Logger: testenv.Logger(), EventPoll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}

// httpError sends a request to the API and returns its error body.
func httpError(t *testing.T, url, method, path, body string) api.ErrorBody {
	t.Helper()
	req, err := http.NewRequest(method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.Error
	if resp.StatusCode < 400 || json.Unmarshal(b, &e) != nil {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return e.Error
}

// Tool errors are the HTTP API's answers to the same requests, whether
// the tools run on the service (weft serve, weft mcp --database) or on a
// server's API (weft mcp --server).
func TestMCPErrorsAsHTTP(t *testing.T) {
	_, st := testenv.SQLite(t)
	hs := apiServer(t, testenv.Client(t, st), "")
	finished := enqueueOne(t, st)
	if _, err := st.Cancel(context.Background(), finished); err != nil {
		t.Fatal(err)
	}
	unknown := "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"
	cases := []struct {
		tool                string
		args                any
		method, path, body  string
		wantCode, wantField string
	}{
		{"get_task", map[string]any{"id": unknown}, "GET", "/v1/tasks/" + unknown, "", api.CodeNotFound, ""},
		{"enqueue_task", map[string]any{"kind": "9lives"}, "POST", "/v1/tasks", `{"kind":"9lives"}`, api.CodeInvalid, "kind"},
		{"enqueue_task", map[string]any{"kind": "k", "delay": "-1s"}, "POST", "/v1/tasks", `{"kind":"k","delay":"-1s"}`, api.CodeInvalid, "delay"},
		{"cancel_task", map[string]any{"id": finished}, "POST", "/v1/tasks/" + finished + "/cancel", "", api.CodeConflict, ""},
		{"retry_task", map[string]any{"id": unknown}, "POST", "/v1/tasks/" + unknown + "/retry", "", api.CodeNotFound, ""},
		{"list_tasks", map[string]any{"cursor": "not-a-cursor"}, "GET", "/v1/tasks?cursor=not-a-cursor", "", api.CodeBadRequest, "cursor"},
		{"list_tasks", map[string]any{"limit": 5000}, "GET", "/v1/tasks?limit=5000", "", api.CodeBadRequest, "limit"},
		{"signal_waitpoint", map[string]any{"token": "wp1.forged", "name": "approve", "idempotency_key": "k"},
			"POST", "/v1/signals", `{"token":"wp1.forged","name":"approve","idempotency_key":"k"}`, api.CodeNotFound, "token"},
		{"signal_waitpoint", map[string]any{"name": "approve", "idempotency_key": "k"},
			"POST", "/v1/signals", `{"name":"approve","idempotency_key":"k"}`, api.CodeBadRequest, "token"},
		{"signal_waitpoint", map[string]any{"task_id": unknown, "waitpoint": "approval", "name": "approve", "idempotency_key": "k"},
			"POST", "/v1/tasks/" + unknown + "/signals", `{"waitpoint":"approval","name":"approve","idempotency_key":"k"}`, api.CodeNotFound, ""},
		{"signal_waitpoint", map[string]any{"task_id": finished, "name": "approve", "idempotency_key": "k"},
			"POST", "/v1/tasks/" + finished + "/signals", `{"name":"approve","idempotency_key":"k"}`, api.CodeBadRequest, "waitpoint"},
	}
	backends := map[string]mcpserver.Backend{
		"service": service(testenv.Client(t, st)),
		"api":     apiclient.New(hs.URL, "", nil),
	}
	for name, b := range backends {
		cs := connect(t, b, nil)
		for _, c := range cases {
			got := toolError(t, cs, c.tool, c.args)
			want := httpError(t, hs.URL, c.method, c.path, c.body)
			if got != want || got.Code != c.wantCode || got.Field != c.wantField {
				t.Errorf("%s: %s(%v) = %+v; HTTP answers %+v (want code %s, field %q)", name, c.tool, c.args, got, want, c.wantCode, c.wantField)
			}
		}
		// A bad argument of a tool's own is answered in the same form.
		if e := toolError(t, cs, "wait_for_task", map[string]any{"id": finished, "timeout": "forever"}); e.Code != api.CodeInvalid || e.Field != "timeout" {
			t.Errorf("%s: bad timeout = %+v", name, e)
		}
	}
}

// enqueueOne stores a task of kind k and returns its id.
func enqueueOne(t *testing.T, st store.Store) string {
	t.Helper()
	res, err := st.Enqueue(context.Background(), []store.NewTask{{Kind: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].ID
}

type stepsArgs struct{}

func (stepsArgs) Kind() string { return "steps" }

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// The wait tool over the server's /mcp: each event of the running task is
// a progress notification, streamed while the call is under way (the
// handler waits for the one about its progress before it completes).
func TestMCPOverHTTPWaitProgress(t *testing.T) {
	_, st := testenv.SQLite(t)
	release := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[stepsArgs]) error {
		if err := task.Progress(ctx, map[string]int{"step": 1}); err != nil {
			return err
		}
		select {
		case <-release:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		return task.SetResult(map[string]string{"done": "yes"})
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: ws, Logger: testenv.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	hs := apiServer(t, client, "s3cret")

	// Without the token there is no session.
	_, err = mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: hs.URL + "/mcp", DisableStandaloneSSE: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("connect without the token: %v", err)
	}

	// The client handles notifications concurrently: each says where it
	// stands (its progress count), and the one about the handler's
	// progress lets the handler finish.
	notes := make(chan *mcp.ProgressNotificationParams, 16)
	var releaseOnce sync.Once
	opts := &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		if req.Params.ProgressToken == "wait-1" && strings.HasPrefix(req.Params.Message, "progress ") {
			releaseOnce.Do(func() { close(release) })
		}
		notes <- req.Params
	}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, opts).Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint:             hs.URL + "/mcp",
		HTTPClient:           &http.Client{Transport: bearer{"s3cret", http.DefaultTransport}},
		DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })

	enq := ok[api.Enqueued](t, cs, "enqueue_task", map[string]any{"kind": "steps"})
	if err := client.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Stop(context.Background()) })
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{
		Name: "wait_for_task", Arguments: map[string]any{"id": enq.ID, "timeout": "1m"}, Meta: mcp.Meta{"progressToken": "wait-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var w waitOutput
	if res.IsError || json.Unmarshal([]byte(text(t, res)), &w) != nil {
		t.Fatalf("wait_for_task: %s", text(t, res))
	}
	if !w.Finished || w.Task.State != "completed" || string(w.Task.Result) != `{"done":"yes"}` {
		t.Errorf("wait_for_task = %+v", w)
	}
	// Every event, in the order of the log: the start of a short attempt
	// may be logged after its progress (with the outcome).
	byCount := map[float64]string{}
	for len(byCount) < 4 {
		select {
		case n := <-notes:
			byCount[n.Progress] = n.Message
		case <-time.After(10 * time.Second):
			t.Fatalf("progress notifications: %v, want 4", byCount)
		}
	}
	started := byCount[2] + byCount[3]
	if byCount[1] != "created (attempt 0)" || byCount[4] != "completed (attempt 1)" ||
		!strings.Contains(started, "started (attempt 1)") || !strings.Contains(started, `progress (attempt 1): {"step":1}`) {
		t.Errorf("progress notifications = %v", byCount)
	}
}

// An unreachable server is explained when the caller is the operator (weft
// mcp), and not by a server reachable over the network.
func TestMCPInternalErrors(t *testing.T) {
	c := apiclient.New(closedURL(t), "", nil)
	for _, explain := range []bool{true, false} {
		srv := mcpserver.New(mcpserver.Config{Backend: c, Logger: testenv.Logger(), ExplainInternal: explain})
		st, ct := mcp.NewInMemoryTransports()
		ss, err := srv.Connect(context.Background(), st, nil)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).Connect(context.Background(), ct, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := toolError(t, cs, "queue_stats", map[string]any{})
		explained := strings.Contains(e.Message, "cannot reach the Weft server")
		if e.Code != api.CodeInternal || explained != explain {
			t.Errorf("explain %v: %+v", explain, e)
		}
		_ = cs.Close()
		_ = ss.Wait()
	}
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close()
	return url
}
