package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
)

// RollupCursor implements store.Rollups.
func (s *Store) RollupCursor(ctx context.Context) (int64, error) {
	return flows().RollupCursor(ctx, s.readPool())
}

// AddRollups implements store.Rollups. The cursor's row lock orders two
// writers; the second finds the cursor moved and writes nothing.
func (s *Store) AddRollups(ctx context.Context, from, to int64, rows []store.Rollup) (bool, error) {
	var moved bool
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		moved, err = flows().AddRollups(ctx, pgxTx{tx}, from, to, rows)
		return false, err
	})
	return moved, err
}

// ReadRollups implements store.Rollups.
func (s *Store) ReadRollups(ctx context.Context, since time.Time) ([]store.Rollup, error) {
	return flows().ReadRollups(ctx, s.readPool(), since)
}

// PurgeRollups implements store.Rollups.
func (s *Store) PurgeRollups(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		n, err = flows().PurgeRollups(ctx, pgxTx{tx}, before)
		return false, err
	})
	return n, err
}
