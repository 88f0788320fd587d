package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
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

// runHTTPTask delivers a claimed task's webhook; the response summary is
// the task's result.
func runHTTPTask(w *webhook.Sender) runner {
	return func(ctx context.Context, ct api.ClaimedTask) (json.RawMessage, error) {
		var args webhook.Args
		if err := json.Unmarshal(ct.Args, &args); err != nil {
			return nil, weft.Permanent(fmt.Errorf("decode args of kind %q: %w", ct.Kind, err))
		}
		res, err := w.Send(ctx, ct.ID, ct.Attempt, args)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return nil, fmt.Errorf("encode the result: %w", err)
		}
		return b, nil
	}
}
