package mcpserver

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/weftworks/weft/internal/api"
)

// signalInput delivers a signal to a waitpoint named by its token, or by
// its task's id and its name.
type signalInput struct {
	Token          string          `json:"token,omitempty"`
	TaskID         string          `json:"task_id,omitempty"`
	Waitpoint      string          `json:"waitpoint,omitempty"`
	Name           string          `json:"name"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Source         string          `json:"source,omitempty"`
}

func (tb *toolbox) signalWaitpoint() registrar {
	return tool[signalInput, api.SignalReceipt]{
		name:  "signal_waitpoint",
		title: "Signal a waitpoint",
		description: `Deliver a signal to a waitpoint of a waiting task: the answer a task suspended
for (an approval, a review, another system's reply). A task's handler creates a
waitpoint and hands out its token, a string starting "wp1." that names the
waitpoint and is the credential to signal it; then the task waits, holding no
worker, until its waitpoints' signals satisfy its wait, and becomes pending
again with the signals for its handler to read. Name the waitpoint by token,
or, to answer a task you can see (list_tasks with states ["waiting"]), by
task_id and the waitpoint's name. The signal's name must be one the waitpoint
allows. Without idempotency_key, one is made: the receipt's
signal.idempotency_key is the key, to pass again when retrying a call that may
have failed, so that the signal is delivered once (a repeat answers the first
receipt with duplicate=true). The receipt says whether the signal resumed the
task (resumed=true) or was stored while the wait needs more. A token that
leads to no waitpoint (malformed, forged, expired) is not_found; a waitpoint
whose wait already ended is waitpoint_closed.`,
		params: map[string]string{
			"token":           `the waitpoint's token ("wp1...."), as the task handed it out; not together with task_id and waitpoint`,
			"task_id":         "the waiting task's id, to name the waitpoint by task and name instead of by token (with waitpoint)",
			"waitpoint":       "the name of the task's waitpoint (with task_id)",
			"name":            "the signal's name, one the waitpoint allows (for example approve or reject)",
			"payload":         "the signal's value, any JSON value the task's handler understands; default null",
			"idempotency_key": "a repeat with the same key delivers nothing more and answers the first receipt; default a new random key, returned in the receipt",
			"source":          "who sends it, to tell senders apart for a wait on a count of distinct sources; default the idempotency key",
		},
		run: func(ctx context.Context, _ *mcp.CallToolRequest, in signalInput) (api.SignalReceipt, error) {
			byTask := in.TaskID != "" || in.Waitpoint != ""
			switch {
			case in.Token != "" && byTask:
				return api.SignalReceipt{}, &api.FieldError{Status: http.StatusBadRequest, Field: "token",
					Message: "a token names the waitpoint already: give either token, or task_id and waitpoint"}
			case byTask && in.TaskID == "":
				return api.SignalReceipt{}, &api.FieldError{Status: http.StatusBadRequest, Field: "task_id",
					Message: "must be given with waitpoint: the id of the task whose waitpoint to signal"}
			}
			key := in.IdempotencyKey
			if key == "" {
				key = uuid.NewString()
			}
			if byTask {
				return tb.b.SignalTask(ctx, in.TaskID, api.TaskSignalRequest{
					Waitpoint: in.Waitpoint, Name: in.Name, Payload: in.Payload, IdempotencyKey: key, Source: in.Source,
				})
			}
			return tb.b.Signal(ctx, api.SignalRequest{Token: in.Token, Name: in.Name, Payload: in.Payload, IdempotencyKey: key, Source: in.Source})
		},
	}
}
