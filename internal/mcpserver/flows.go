package mcpserver

import (
	"context"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/api"
)

// flowInput reads one flow.
type flowInput struct {
	ID      string `json:"id"`
	Members bool   `json:"members,omitempty"`
}

func (tb *toolbox) enqueueFlow() registrar {
	return tool[api.FlowInput, api.FlowEnqueued]{
		name:  "enqueue_flow",
		title: "Enqueue a flow of dependent tasks",
		description: `Store a set of tasks with dependencies between them — a flow — all of them or
none, and return the flow's id and each task's id by key. A task runs once the
tasks it depends on have finished and its join condition holds; until then it
is blocked, and it is skipped when the condition can no longer hold (say, a
dependency failed). Use it for pipelines (fetch, then transform, then
publish), fan-out and fan-in (many tasks after one, one after many),
finalizers that run whatever happened (join all_done) and compensation that
runs only when its dependencies failed (join none_succeeded). Follow it with
get_flow.`,
		params: map[string]string{
			"name":     "a name for people to recognise the flow by",
			"metadata": "a JSON object stored with the flow",
			"tasks": `the tasks, each with every field of enqueue_task plus: "key" (required,
unique in the flow: a letter, then letters, digits, '_', '-', '.', ':'),
"depends_on" (keys of tasks it runs after; "key/*" also waits for the tasks
that key adds while it runs; "*" alone waits for every other task), "join"
(all_succeeded by default; any_succeeded; quorum with "quorum": k; all_done;
none_succeeded) and "let_run" (keep the other dependencies running once an
any_succeeded or quorum join is met). At most 10000 tasks.`,
		},
		schema: func(s *jsonschema.Schema) { s.Properties["metadata"].Type = "object" },
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in api.FlowInput) (api.FlowEnqueued, error) {
			return tb.b.SubmitFlow(ctx, in)
		},
	}
}

func (tb *toolbox) getFlow() registrar {
	return tool[flowInput, api.Flow]{
		name:  "get_flow",
		title: "Get a flow",
		description: `Read one flow: its state (running until every task is final, then succeeded,
failed or cancelled), its counts of tasks by state, its progress (the share
of tasks that are final), the recent rate and an ETA, and with members=true
each task: key, id, state, what it depends on, and why it was skipped.`,
		params: map[string]string{
			"id":      "the flow's id, as enqueue_flow returned it",
			"members": "include each task of the flow; default false",
		},
		readOnly: true, idempotent: true,
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in flowInput) (api.Flow, error) {
			return tb.b.Flow(ctx, in.ID, in.Members)
		},
	}
}
