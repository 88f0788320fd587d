package cli

import (
	"log/slog"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/webhook"
)

// builtinConfig configures the built-in kinds of `weft worker`.
type builtinConfig struct {
	// DenyPrivate is webhook.Config.DenyPrivate.
	DenyPrivate bool
	Log         *slog.Logger
}

// builtinKinds returns the built-in kinds, registered as `weft serve`
// registers them, so that their errors decide outcomes as they do there.
func builtinKinds(cfg builtinConfig) map[string]engine.Kind {
	ws := weft.NewWorkers()
	webhook.Register(ws, webhook.Config{DenyPrivate: cfg.DenyPrivate, Logger: cfg.Log})
	return ws.EngineKinds()
}
