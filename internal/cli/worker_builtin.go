package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/webhook"
)

// builtinConfig configures the built-in kinds of `weft worker`.
type builtinConfig struct {
	// DenyPrivate is webhook.Config.DenyPrivate.
	DenyPrivate bool
	Log         *slog.Logger
}

// builtinRunners returns the runners of the built-in kinds, by kind.
func builtinRunners(cfg builtinConfig) map[string]runner {
	return map[string]runner{
		webhook.Kind: runHTTPTask(webhook.New(webhook.Config{DenyPrivate: cfg.DenyPrivate, Logger: cfg.Log})),
	}
}

// runHTTPTask runs the webhook package's worker on a claimed task outside
// a weft.Client, by handing it a weft.Task built from the claim.
//
// LIMITATION: weft.Task keeps what the worker passes to SetResult in an
// unexported field, so the webhook's Result (status, content type, body)
// cannot be read back here and completed tasks carry no result. It needs
// either an accessor in package weft,
//
//	func (t *Task[T]) Result() json.RawMessage { return t.result }
//
// or an exported webhook function that returns the *webhook.Result of one
// request. The task's outcome (complete, retry after Retry-After, fail
// permanently) is unaffected: it comes from the returned error.
func runHTTPTask(w weft.Worker[webhook.Args]) runner {
	return func(ctx context.Context, ct api.ClaimedTask) (json.RawMessage, error) {
		t := &weft.Task[webhook.Args]{
			ID: ct.ID, Kind: ct.Kind, Queue: ct.Queue, Priority: ct.Priority,
			Attempt: ct.Attempt, MaxAttempts: ct.MaxAttempts, Metadata: ct.Metadata,
			CreatedAt: ct.CreatedAt, Errors: make([]weft.AttemptError, len(ct.Errors)),
		}
		for i, e := range ct.Errors {
			t.Errors[i] = store.AttemptError{Attempt: e.Attempt, At: e.At, Error: e.Error, Stack: e.Stack}
		}
		if err := json.Unmarshal(ct.Args, &t.Args); err != nil {
			return nil, weft.Permanent(fmt.Errorf("decode args of kind %q: %w", ct.Kind, err))
		}
		if err := w.Work(ctx, t); err != nil {
			return nil, err
		}
		return nil, nil
	}
}
