package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// InvalidTokenMessage is the one answer to a waitpoint token that does not
// lead to a waitpoint, whatever the reason, so that tokens cannot be
// probed.
const InvalidTokenMessage = "no waitpoint for this token: it is malformed, forged, expired or signed with a key this server does not have, or its waitpoint no longer exists"

// Waits delivers signals and reads waitpoints, for the API and the CLI's
// direct mode alike, through a client: its key ring verifies the tokens
// signals come with and signs the tokens waitpoints are shown with.
type Waits struct {
	c *weft.Client
}

// NewWaits returns the waits service of c.
func NewWaits(c *weft.Client) *Waits { return &Waits{c: c} }

// Signal delivers a signal with a waitpoint's token. A bad token and one
// whose waitpoint does not exist are both weft.ErrInvalidToken.
func (w *Waits) Signal(ctx context.Context, in api.SignalRequest) (api.SignalReceipt, error) {
	if in.Token == "" {
		return api.SignalReceipt{}, &api.FieldError{Status: http.StatusBadRequest, Field: "token", Message: "must be given: the token of the waitpoint to signal"}
	}
	p, err := signalParams(in.Name, in.Payload, in.IdempotencyKey, in.Source)
	if err != nil {
		return api.SignalReceipt{}, err
	}
	rec, err := w.c.Signal(ctx, in.Token, p)
	if err != nil {
		return api.SignalReceipt{}, err
	}
	return api.FromReceipt(rec), nil
}

// SignalTask delivers a signal to the waitpoint of task taskID named in
// in.Waitpoint: the way of callers with API access, who need no token.
func (w *Waits) SignalTask(ctx context.Context, taskID string, in api.TaskSignalRequest) (api.SignalReceipt, error) {
	if in.Waitpoint == "" {
		return api.SignalReceipt{}, &api.FieldError{Status: http.StatusBadRequest, Field: "waitpoint", Message: "must be given: the name of one of the task's waitpoints"}
	}
	p, err := signalParams(in.Name, in.Payload, in.IdempotencyKey, in.Source)
	if err != nil {
		return api.SignalReceipt{}, err
	}
	rec, err := w.c.SignalTask(ctx, taskID, in.Waitpoint, p)
	if errors.Is(err, store.ErrNotFound) {
		return api.SignalReceipt{}, fmt.Errorf("task %s has no waitpoint named %q: %w", taskID, in.Waitpoint, store.ErrNotFound)
	}
	if err != nil {
		return api.SignalReceipt{}, err
	}
	return api.FromReceipt(rec), nil
}

// signalParams checks what every signal needs before anything is read.
func signalParams(name string, payload json.RawMessage, key, source string) (weft.SignalParams, error) {
	if key == "" {
		return weft.SignalParams{}, &api.FieldError{Status: http.StatusBadRequest, Field: "idempotency_key",
			Message: "must be given: a repeat with the same key is answered with the first receipt, so a retried request delivers the signal once"}
	}
	p := weft.SignalParams{Name: name, Key: key, Source: source}
	if len(payload) > 0 {
		p.Payload = payload
	}
	return p, nil
}

// Waitpoints lists a task's waitpoints with their tokens and signals;
// store.ErrNotFound when there is no such task.
func (w *Waits) Waitpoints(ctx context.Context, taskID string) (api.WaitpointList, error) {
	st := w.c.Store()
	wps, err := st.Waitpoints(ctx, taskID)
	if err != nil {
		return api.WaitpointList{}, err
	}
	out := api.WaitpointList{Waitpoints: make([]api.Waitpoint, len(wps))}
	if len(wps) == 0 {
		// No waitpoints, or no task at all?
		if _, err := st.Get(ctx, taskID); err != nil {
			return api.WaitpointList{}, err
		}
		return out, nil
	}
	for i, wp := range wps {
		tok, err := w.c.WaitpointToken(ctx, wp)
		if err != nil {
			return api.WaitpointList{}, err
		}
		out.Waitpoints[i] = api.FromWaitpoint(wp, tok)
	}
	return out, nil
}
