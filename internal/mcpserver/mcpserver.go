// Package mcpserver serves Weft to AI agents over the Model Context
// Protocol: tools to enqueue, read, list, cancel, retry and wait for
// tasks, to enqueue and read flows, to signal waitpoints and to read queue
// statistics, and every task as a resource (weft://tasks/{id}).
//
// The tools call a Backend in the API's wire types (internal/api): the
// operator service internal/ops in `weft serve` (mounted at /mcp) and in
// `weft mcp --database`, or a server's HTTP API (internal/apiclient) in
// `weft mcp --server`. A failed call is a tool error whose text is the
// HTTP API's error body, {"error": {"code", "message", "field"}}, with the
// code and message the API would have answered (ops.ProblemOf).
//
// Each tool is one method of toolbox returning its spec (tools.go); adding
// a tool is writing that method and listing it in toolbox.tools.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/ops"
)

// Backend is what the tools act on. *apiclient.Client implements it, and
// Service adapts the operator service.
type Backend interface {
	Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error)
	Get(ctx context.Context, id string) (api.Task, error)
	List(ctx context.Context, p api.ListParams) (api.TaskList, error)
	Cancel(ctx context.Context, id string) (api.Task, error)
	Retry(ctx context.Context, id string) (api.Task, error)
	// Events yields a task's events after the cursor after; with follow,
	// it waits for more until the task is terminal and its terminal event
	// was yielded. A failure is the last element.
	Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error]
	Queues(ctx context.Context) (api.QueueList, error)
	SubmitFlow(ctx context.Context, in api.FlowInput) (api.FlowEnqueued, error)
	Flow(ctx context.Context, id string, members bool) (api.Flow, error)
	// Signal delivers a signal with a waitpoint's token; SignalTask to a
	// task's waitpoint by name.
	Signal(ctx context.Context, req api.SignalRequest) (api.SignalReceipt, error)
	SignalTask(ctx context.Context, id string, req api.TaskSignalRequest) (api.SignalReceipt, error)
}

// Config configures a server.
type Config struct {
	// Backend is what the tools act on.
	Backend Backend
	// Version is reported to clients as the server's version.
	Version string
	// Logger receives the errors that tool results do not explain.
	// Default slog.Default().
	Logger *slog.Logger
	// ExplainInternal puts the text of an error the HTTP API would not
	// explain (a database failure, an unreachable server) into the tool
	// error, as the CLI prints it to the person who ran it. A server
	// reachable over the network leaves it false: the text may carry
	// database details, so the tool error says only that it happened, and
	// the error goes to Logger.
	ExplainInternal bool
}

// instructions tell a model what the server is for.
const instructions = `Weft is a durable task engine: work is enqueued as tasks of a kind (which
names the worker that runs them) with JSON arguments, stored durably, run by
workers, retried with backoff when it fails, and logged as events. Use
enqueue_task to hand work over, get_task and list_tasks to see where it is,
wait_for_task to follow a task until it finishes, cancel_task and retry_task to
steer it, and queue_stats for an overview. enqueue_flow stores tasks that
depend on each other, and get_flow follows them. A task may wait for an answer
(state waiting) on a waitpoint: signal_waitpoint delivers it, with the token
the task handed out or by the task's id and the waitpoint's name. A task is
also the resource weft://tasks/{id}. Errors carry the HTTP API's codes:
not_found, conflict (the task's state forbids the action), invalid and
bad_request (the field names what to fix), unavailable (try again later).`

// New returns the MCP server of cfg's backend.
func New(cfg Config) *mcp.Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "weft", Title: "Weft", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: instructions,
	})
	tb := &toolbox{b: cfg.Backend, log: cfg.Logger, explain: cfg.ExplainInternal}
	for _, t := range tb.tools() {
		t.register(srv, tb)
	}
	tb.addTaskResource(srv)
	return srv
}

// Handler serves srv over MCP's streamable HTTP transport, statelessly:
// each request stands alone, with no session to keep or lose, so any of
// several servers behind a load balancer can answer it. A tool call's
// progress notifications are streamed in its own response.
//
// Unless authenticated (a bearer token guards the handler), a request
// that reached a loopback address under another Host name is refused, so
// that a web page cannot drive a local server through DNS rebinding. With
// a token no page can, and a reverse proxy on the same machine may pass
// its own Host along.
func Handler(srv *mcp.Server, authenticated bool) http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless:                  true,
		DisableLocalhostProtection: authenticated,
	})
}

// Service adapts the operator service, and its waits service for
// signals, to a Backend.
func Service(svc *ops.Service, waits *ops.Waits) Backend { return service{svc, waits} }

// service is the operator service with its event stream as an iterator,
// and the waits service.
type service struct {
	*ops.Service
	*ops.Waits
}

func (s service) Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		stream, err := s.Service.Events(ctx, id, after, follow)
		if err != nil {
			yield(api.Event{}, err)
			return
		}
		for ev, err := range stream.All(ctx) {
			if !yield(ev, err) {
				return
			}
		}
	}
}

// ToolError is a failed tool call, as the HTTP API would have answered
// the same request. Its text is the API's error body.
type ToolError struct {
	Body api.ErrorBody
}

// Error is the JSON error body of the HTTP API:
// {"error":{"code":"not_found","message":"..."}}.
func (e *ToolError) Error() string {
	b, err := json.Marshal(api.Error{Error: e.Body})
	if err != nil {
		return e.Body.Code + ": " + e.Body.Message
	}
	return string(b)
}

// toolError turns err into the answer the HTTP API gives it: the server's
// own answer when the backend is a server, ops.ProblemOf's otherwise.
func (tb *toolbox) toolError(err error) *ToolError {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return &ToolError{Body: api.ErrorBody{Code: ae.Code, Message: ae.Message, Field: ae.Field}}
	}
	p := ops.ProblemOf(err)
	if p.Internal {
		tb.log.Error("weft: MCP tool failed", "err", err)
		if tb.explain {
			p.Body.Message = err.Error()
		}
	}
	return &ToolError{Body: p.Body}
}
