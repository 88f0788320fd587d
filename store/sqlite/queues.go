package sqlite

import (
	"context"
	"fmt"

	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// PauseQueue implements store.Store. Claims read weft_queues inside the
// writer's transaction, so once this commits no claim by any process on the
// file takes a task of the queue.
func (s *Store) PauseQueue(ctx context.Context, queue string, paused bool) error {
	if err := sqlbackend.CheckQueueName(queue); err != nil {
		return err
	}
	return s.writer.do(ctx, func(q *execer) error {
		if paused {
			if _, err := q.exec(`INSERT INTO weft_queues (name, paused) VALUES (?, 1)
				ON CONFLICT (name) DO UPDATE SET paused = 1`, queue); err != nil {
				return fmt.Errorf("pause queue %s: %w", queue, err)
			}
			return nil
		}
		r, err := q.exec("UPDATE weft_queues SET paused = 0 WHERE name = ? AND paused = 1", queue)
		if err != nil {
			return fmt.Errorf("resume queue %s: %w", queue, err)
		}
		// Only a queue that was paused can have ready work nobody claimed.
		n, err := r.RowsAffected()
		if err != nil {
			return fmt.Errorf("resume queue %s: %w", queue, err)
		}
		q.wake = n > 0
		return nil
	})
}
