package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
)

// Started implements store.Store: one statement fences and stamps the
// batch and writes the started events from the rows it changed. Like a
// claim, it does not wait for the WAL flush: a start lost to a crash leaves
// the task leased and unstarted, and its lease expires as the claim's would.
func (s *Store) Started(ctx context.Context, starts []store.Start) error {
	n := len(starts)
	if n == 0 {
		return nil
	}
	ids, epochs, ats := make([]string, n), make([]int64, n), make([]int64, n)
	for i, st := range starts {
		ids[i], epochs[i], ats[i] = st.TaskID, st.Epoch, micros(st.At)
	}
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('synchronous_commit', 'off', true)")
	batch.Queue(`WITH begun AS (UPDATE weft_tasks t SET attempted_at = v.at
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, epoch, at)
			WHERE t.id = v.id AND t.lease_epoch = v.epoch AND t.state = 'running' AND t.attempted_at IS NULL
			RETURNING t.id, t.attempt, v.at)
		INSERT INTO weft_events (task_id, type, attempt, at)
		SELECT id, '`+string(store.EventStarted)+`', attempt, at FROM begun`, ids, epochs, ats)
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return classify(fmt.Errorf("record starts: %w", err))
	}
	return nil
}
