package engine

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/weftworks/weft/store"
)

// Execution is one attempt of a task, handed to its handler.
type Execution struct {
	// Task is the task as claimed: its Attempt and LeaseEpoch are this
	// attempt's.
	Task *store.Task
	src  Source
}

// Progress appends a progress event to the task's log under this attempt's
// lease. It fails with store.ErrLeaseLost once the lease is gone.
func (x *Execution) Progress(ctx context.Context, data json.RawMessage) error {
	return x.src.Progress(ctx, x.Task.ID, x.Task.LeaseEpoch, data)
}

// Backoff bounds for DefaultBackoff.
const (
	backoffBase = time.Second
	backoffMax  = time.Hour
)

// DefaultBackoff is exponential with full jitter in its upper half: about
// 1s, 2s, 4s ... after attempts 1, 2, 3, capped at one hour, each scaled by a
// random factor in [0.5, 1) so that tasks failing together do not retry
// together.
func DefaultBackoff(attempt int) time.Duration {
	d := backoffMax
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 20 {
		d = min(backoffBase<<(attempt-1), backoffMax)
	}
	return d/2 + rand.N(d/2)
}
