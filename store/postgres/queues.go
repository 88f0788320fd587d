package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// PauseQueue implements store.Store. Each claim statement reads weft_queues
// in its own snapshot, so once this commits no claim that starts afterwards,
// on any node, takes a task of the queue.
func (s *Store) PauseQueue(ctx context.Context, queue string, paused bool) error {
	if err := sqlbackend.CheckQueueName(queue); err != nil {
		return err
	}
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		if paused {
			if _, err := tx.Exec(ctx, `INSERT INTO weft_queues (name, paused) VALUES ($1, true)
				ON CONFLICT (name) DO UPDATE SET paused = true`, queue); err != nil {
				return false, fmt.Errorf("pause queue %s: %w", queue, err)
			}
			return false, nil
		}
		tag, err := tx.Exec(ctx, "UPDATE weft_queues SET paused = false WHERE name = $1 AND paused", queue)
		if err != nil {
			return false, fmt.Errorf("resume queue %s: %w", queue, err)
		}
		// Only a queue that was paused can have ready work nobody claimed.
		return tag.RowsAffected() > 0, nil
	})
}
