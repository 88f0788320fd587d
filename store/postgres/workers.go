package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// TouchWorker implements store.Store.
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
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO weft_workers (id, host, queues, kinds, labels, first_seen_at, last_seen_at)
			VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6, $6)
			ON CONFLICT (id) DO UPDATE SET host = excluded.host, queues = excluded.queues, kinds = excluded.kinds,
				labels = excluded.labels, last_seen_at = excluded.last_seen_at`,
			w.ID, w.Host, sqlbackend.NamesJSON(w.Queues), sqlbackend.NamesJSON(w.Kinds), labels, nowUS); err != nil {
			return false, fmt.Errorf("record worker %s: %w", w.ID, err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM weft_workers WHERE last_seen_at < $1", micros(now.Add(-store.ForgetWorkersAfter))); err != nil {
			return false, fmt.Errorf("forget silent workers: %w", err)
		}
		return false, nil
	})
}
