package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// toolbox holds what every tool needs.
type toolbox struct {
	b       Backend
	log     *slog.Logger
	explain bool
}

// tools lists every tool the server offers.
func (tb *toolbox) tools() []registrar {
	return []registrar{
		tb.enqueueTask(),
		tb.getTask(),
		tb.listTasks(),
		tb.cancelTask(),
		tb.retryTask(),
		tb.queueStats(),
		tb.waitForTask(),
		tb.enqueueFlow(),
		tb.getFlow(),
		tb.signalWaitpoint(),
	}
}

// registrar is a tool ready to be added to a server.
type registrar interface {
	register(srv *mcp.Server, tb *toolbox)
}

// tool is one tool: what a model reads about it, and what it does.
type tool[In, Out any] struct {
	name, title, description string
	// params describes every property of In's schema for the model;
	// registration panics when one lacks a description or a description
	// names no property.
	params map[string]string
	// schema, when set, refines In's schema further (enums, bounds).
	schema func(*jsonschema.Schema)
	// readOnly: the tool changes nothing. idempotent: calling it again
	// with the same arguments changes nothing more. destructive: it ends
	// or undoes work.
	readOnly, idempotent, destructive bool
	run                               func(ctx context.Context, req *mcp.CallToolRequest, in In) (Out, error)
}

func (t tool[In, Out]) register(srv *mcp.Server, tb *toolbox) {
	in := schemaFor[In]()
	for name, p := range in.Properties {
		d, ok := t.params[name]
		if !ok {
			panic(fmt.Sprintf("mcpserver: tool %s: parameter %q has no description", t.name, name))
		}
		p.Description = d
	}
	for name := range t.params {
		if in.Properties[name] == nil {
			panic(fmt.Sprintf("mcpserver: tool %s: described parameter %q does not exist", t.name, name))
		}
	}
	if t.schema != nil {
		t.schema(in)
	}
	closed := false
	mcp.AddTool(srv, &mcp.Tool{
		Name:         t.name,
		Title:        t.title,
		Description:  t.description,
		InputSchema:  in,
		OutputSchema: schemaFor[Out](),
		Annotations: &mcp.ToolAnnotations{
			Title: t.title, ReadOnlyHint: t.readOnly, IdempotentHint: t.idempotent,
			DestructiveHint: &t.destructive, OpenWorldHint: &closed,
		},
	}, func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		out, err := t.run(ctx, req, in)
		if err != nil {
			var zero Out
			return nil, zero, tb.toolError(err)
		}
		return nil, out, nil
	})
}

// schemaFor infers T's JSON schema. Raw JSON (args, results, metadata,
// event data) may be any JSON value, not the array of bytes its Go type
// would suggest.
func schemaFor[T any]() *jsonschema.Schema {
	s, err := jsonschema.For[T](&jsonschema.ForOptions{TypeSchemas: map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[json.RawMessage](): {},
	}})
	if err != nil {
		panic(fmt.Sprintf("mcpserver: schema of %T: %v", *new(T), err))
	}
	return s
}

// idParam describes a task id parameter.
const idParam = "the task's id (a UUID, as enqueue_task or list_tasks returned it)"

func (tb *toolbox) enqueueTask() registrar {
	return tool[api.TaskInput, api.Enqueued]{
		name:  "enqueue_task",
		title: "Enqueue a task",
		description: `Store one task durably for a worker to run, and return its id. The task runs
once a worker of its kind is free (the server runs the built-in kind "http",
which delivers a webhook: args {"url": ..., "method": ..., "headers": ...,
"body": ...}); a failed attempt is retried with exponential backoff until
max_attempts. With unique_key, enqueueing again while a task with that key is
pending, running or completed returns the existing task's id with
duplicate=true instead of a new task.`,
		params: map[string]string{
			"kind":         "the task kind, which names the worker that runs it: a letter, then letters, digits, '_', '-', '.', ':' (at most 128)",
			"args":         "the task's arguments, any JSON value the worker of the kind understands; default {}",
			"queue":        `the queue to put the task in; default "default"`,
			"priority":     "higher runs first within the queue; default 0",
			"delay":        `run the task this long from now, as a Go duration ("30s", "5m", "1h30m"); not together with run_at`,
			"run_at":       "run the task at this time (RFC 3339); not together with delay",
			"max_attempts": "attempts before the task fails for good, 1 to 10000; default 25",
			"timeout":      `bound on each attempt, as a Go duration ("2m"); default none`,
			"unique_key":   "makes the enqueue idempotent while a task with the same key is pending, running or completed",
			"metadata":     "a JSON object stored with the task, for your own bookkeeping",
			"limits":       `the limits the task draws on, each with its key: limit name → key, as {"per-customer": "acme"}; the limits must exist`,
			"cost":         "the units the task takes from its limits' rates; default 1",
			"requires":     `the worker labels a worker needs to claim the task: label → "value" (equal), ">=n" or "<=n", as {"gpu": "true", "mem": ">=64"}`,
			"fairness_key": "the key (a tenant) that shares the queue fairly with the others, by the queue's weights",
		},
		schema: func(s *jsonschema.Schema) { s.Properties["metadata"].Type = "object" },
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in api.TaskInput) (api.Enqueued, error) {
			return tb.b.Enqueue(ctx, in)
		},
	}
}

// defaultEvents and maxEvents bound get_task's recent events.
const (
	defaultEvents = 20
	maxEvents     = 200
)

type getInput struct {
	ID     string `json:"id"`
	Events int    `json:"events,omitempty"`
}

// taskWithEvents is a task and its latest events.
type taskWithEvents struct {
	Task   api.Task    `json:"task"`
	Events []api.Event `json:"events"`
}

func (tb *toolbox) getTask() registrar {
	return tool[getInput, taskWithEvents]{
		name:  "get_task",
		title: "Get a task",
		description: `Read one task: its state (pending, running, completed, failed, cancelled,
...), arguments, attempts, result, the errors of failed attempts, and its most
recent events (created, started, progress, retry_scheduled, completed, ...),
oldest first.`,
		params: map[string]string{
			"id":     idParam,
			"events": fmt.Sprintf("how many of the latest events to include, 0 to %d; default %d", maxEvents, defaultEvents),
		},
		schema: func(s *jsonschema.Schema) {
			s.Properties["events"].Minimum = jsonschema.Ptr(0.0)
			s.Properties["events"].Maximum = jsonschema.Ptr(float64(maxEvents))
		},
		readOnly: true, idempotent: true,
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in getInput) (taskWithEvents, error) {
			t, err := tb.b.Get(ctx, in.ID)
			if err != nil {
				return taskWithEvents{}, err
			}
			n := in.Events
			if n == 0 {
				n = defaultEvents
			}
			// The log is read from its start: the last n are kept.
			recent := make([]api.Event, 0, n)
			for ev, err := range tb.b.Events(ctx, in.ID, 0, false) {
				if err != nil {
					return taskWithEvents{}, err
				}
				if len(recent) == n {
					recent = append(recent[:0], recent[1:]...)
				}
				recent = append(recent, ev)
			}
			return taskWithEvents{Task: t, Events: recent}, nil
		},
	}
}

type listInput struct {
	Queue  string   `json:"queue,omitempty"`
	Kind   string   `json:"kind,omitempty"`
	States []string `json:"states,omitempty"`
	Limit  int      `json:"limit,omitempty"`
	Cursor string   `json:"cursor,omitempty"`
}

func (tb *toolbox) listTasks() registrar {
	return tool[listInput, api.TaskList]{
		name:  "list_tasks",
		title: "List tasks",
		description: `List tasks in creation order, oldest first, filtered by queue, kind and
states. A full page comes with next_cursor: pass it as cursor for the next
page.`,
		params: map[string]string{
			"queue":  "only tasks of this queue",
			"kind":   "only tasks of this kind",
			"states": "only tasks in one of these states",
			"limit":  fmt.Sprintf("page size, 1 to %d; default %d", ops.MaxPage, ops.DefaultPage),
			"cursor": "next_cursor of the previous page",
		},
		schema: func(s *jsonschema.Schema) {
			var states []any
			for _, st := range store.States() {
				states = append(states, string(st))
			}
			s.Properties["states"].Items.Enum = states
		},
		readOnly: true, idempotent: true,
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in listInput) (api.TaskList, error) {
			return tb.b.List(ctx, api.ListParams{Queue: in.Queue, Kind: in.Kind, States: in.States, Limit: in.Limit, Cursor: in.Cursor})
		},
	}
}

type idInput struct {
	ID string `json:"id"`
}

func (tb *toolbox) cancelTask() registrar {
	return tool[idInput, api.Task]{
		name:  "cancel_task",
		title: "Cancel a task",
		description: `Cancel a task: a pending one is cancelled at once; a running one is asked to
stop (cancel_requested becomes true) and ends cancelled unless its worker
completes it first. A task that already finished is a conflict.`,
		params:      map[string]string{"id": idParam},
		destructive: true, idempotent: true,
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in idInput) (api.Task, error) {
			return tb.b.Cancel(ctx, in.ID)
		},
	}
}

func (tb *toolbox) retryTask() registrar {
	return tool[idInput, api.Task]{
		name:  "retry_task",
		title: "Retry a task",
		description: `Make a failed or cancelled task pending again, ready now, with at least one
more attempt; its error history is kept. A task in any other state, or whose
unique key another task now holds, is a conflict.`,
		params: map[string]string{"id": idParam},
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in idInput) (api.Task, error) {
			return tb.b.Retry(ctx, in.ID)
		},
	}
}

func (tb *toolbox) queueStats() registrar {
	return tool[struct{}, api.QueueList]{
		name:  "queue_stats",
		title: "Queue statistics",
		description: `List every queue that holds a task or is paused, with its number of tasks in
each state, whether it is paused, and when its oldest ready task became ready
(a queue whose oldest_ready_at is long past is falling behind).`,
		readOnly: true, idempotent: true,
		run: func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (api.QueueList, error) {
			return tb.b.Queues(ctx)
		},
	}
}

// wait_for_task's timeouts.
const (
	defaultWait = time.Minute
	maxWait     = 10 * time.Minute
)

// errWaitOver ends a wait whose timeout passed.
var errWaitOver = errors.New("the wait is over")

type waitInput struct {
	ID      string `json:"id"`
	Timeout string `json:"timeout,omitempty"`
}

// waitOutput is a task as a wait left it.
type waitOutput struct {
	Task api.Task `json:"task"`
	// Finished is whether the task reached a terminal state.
	Finished bool `json:"finished"`
}

func (tb *toolbox) waitForTask() registrar {
	return tool[waitInput, waitOutput]{
		name:  "wait_for_task",
		title: "Wait for a task",
		description: `Wait until a task finishes (completed, failed, cancelled or skipped) or the
timeout passes, then return it with finished true or false. While it waits,
each event of the task (started, progress, retry_scheduled, ...) is sent as a
progress notification when the request has a progress token. After a timeout,
call it again to keep waiting.`,
		params: map[string]string{
			"id":      idParam,
			"timeout": fmt.Sprintf(`how long to wait, as a Go duration ("30s", "5m"), at most %s; default %s`, maxWait, defaultWait),
		},
		readOnly: true, idempotent: true,
		run: func(ctx context.Context, req *mcp.CallToolRequest, in waitInput) (waitOutput, error) {
			wait := defaultWait
			if in.Timeout != "" {
				d, err := time.ParseDuration(in.Timeout)
				if err != nil || d <= 0 || d > maxWait {
					return waitOutput{}, &api.FieldError{Status: http.StatusUnprocessableEntity, Field: "timeout",
						Message: fmt.Sprintf("%q is not a duration from 1ms to %s", in.Timeout, maxWait)}
				}
				wait = d
			}
			wctx, cancel := context.WithTimeoutCause(ctx, wait, errWaitOver)
			defer cancel()
			token := req.Params.GetProgressToken()
			seen := 0
			for ev, err := range tb.b.Events(wctx, in.ID, 0, true) {
				if err != nil {
					if ctx.Err() == nil && errors.Is(context.Cause(wctx), errWaitOver) {
						break
					}
					return waitOutput{}, err
				}
				seen++
				if token == nil {
					continue
				}
				err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: float64(seen), Message: describeEvent(ev),
				})
				if err != nil {
					tb.log.Debug("weft: MCP progress notification not sent", "task", in.ID, "err", err)
				}
			}
			t, err := tb.b.Get(ctx, in.ID)
			if err != nil {
				return waitOutput{}, err
			}
			return waitOutput{Task: t, Finished: store.State(t.State).Terminal()}, nil
		},
	}
}

// maxEventData bounds the event data quoted in a progress message.
const maxEventData = 300

// describeEvent is a one-line account of an event for a progress
// message: "progress (attempt 1): {"done":3}".
func describeEvent(ev api.Event) string {
	s := fmt.Sprintf("%s (attempt %d)", ev.Type, ev.Attempt)
	if len(ev.Data) == 0 {
		return s
	}
	data := string(ev.Data)
	if n := maxEventData; len(data) > n {
		for !utf8.RuneStart(data[n]) {
			n--
		}
		data = data[:n] + "..."
	}
	return s + ": " + data
}
