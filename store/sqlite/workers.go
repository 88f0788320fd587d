package sqlite

import (
	"context"
	"fmt"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// TouchWorker implements store.Store. Like a node's heartbeat, the write
// is light (not synced on its own): a lost one is made again by the
// worker's next claim.
func (s *Store) TouchWorker(ctx context.Context, w store.RemoteWorker) error {
	if err := sqlbackend.CheckWorker(w); err != nil {
		return err
	}
	labels, err := sqlbackend.LabelsJSON(w.Labels)
	if err != nil {
		return err
	}
	now := s.now()
	nowUS := micros(now)
	return s.writer.doLight(ctx, func(q *execer) error {
		if _, err := q.exec(`INSERT INTO weft_workers (id, host, queues, kinds, labels, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET host = excluded.host, queues = excluded.queues, kinds = excluded.kinds,
				labels = excluded.labels, last_seen_at = excluded.last_seen_at`,
			w.ID, w.Host, sqlbackend.NamesJSON(w.Queues), sqlbackend.NamesJSON(w.Kinds), labels, nowUS, nowUS); err != nil {
			return fmt.Errorf("record worker %s: %w", w.ID, err)
		}
		if _, err := q.exec("DELETE FROM weft_workers WHERE last_seen_at < ?", micros(now.Add(-store.ForgetWorkersAfter))); err != nil {
			return fmt.Errorf("forget silent workers: %w", err)
		}
		return nil
	})
}
