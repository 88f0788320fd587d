package sqlite

import (
	"context"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// RollupCursor implements store.Rollups.
func (s *Store) RollupCursor(ctx context.Context) (int64, error) {
	return flows().RollupCursor(ctx, sqlbackend.StdDB(s.rdb))
}

// AddRollups implements store.Rollups, in the writer's transaction.
func (s *Store) AddRollups(ctx context.Context, from, to int64, rows []store.Rollup) (bool, error) {
	var moved bool
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		moved, err = flows().AddRollups(context.Background(), sqlbackend.StdTx(q.conn), from, to, rows)
		return err
	})
	return moved, err
}

// ReadRollups implements store.Rollups.
func (s *Store) ReadRollups(ctx context.Context, since time.Time) ([]store.Rollup, error) {
	return flows().ReadRollups(ctx, sqlbackend.StdDB(s.rdb), since)
}

// PurgeRollups implements store.Rollups.
func (s *Store) PurgeRollups(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		n, err = flows().PurgeRollups(context.Background(), sqlbackend.StdTx(q.conn), before)
		return err
	})
	return n, err
}
