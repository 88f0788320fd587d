package sqlite

import (
	"context"
	"fmt"

	"github.com/weftworks/weft/store"
)

// applyCounts writes the accumulated counter changes in one statement.
func applyCounts(ctx context.Context, db dbtx, c store.CountMoves) error {
	queues, states, deltas := c.Rows()
	if len(deltas) == 0 {
		return nil
	}
	a := make([]any, 0, 3*len(deltas))
	for i := range deltas {
		a = append(a, queues[i], states[i], deltas[i])
	}
	_, err := db.ExecContext(ctx, `INSERT INTO weft_counts (queue, state, n) VALUES `+placeholders(len(deltas), 3)+`
		ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`, a...)
	if err != nil {
		return fmt.Errorf("update counts: %w", err)
	}
	return nil
}

// applyChange writes a transition's side effects in the writer's
// transaction: counters, events, and the wakeup after commit.
func applyChange(q *execer, ch store.Change, nowUS int64) error {
	if err := applyCounts(context.Background(), q.conn, ch.Counts); err != nil {
		return err
	}
	if ch.Wake {
		q.wake = true
	}
	return insertEvents(q, ch.Events, nowUS)
}

// Maintain implements store.Store: SQLite's counters are kept in place
// (one writer, no lock contention), so there is nothing to fold.
func (s *Store) Maintain(context.Context) error { return nil }
