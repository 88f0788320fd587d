package sqlite

import (
	"context"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// SetLimit implements store.Limiter.
func (s *Store) SetLimit(ctx context.Context, l store.Limit) (store.Limit, error) {
	var out store.Limit
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		out, err = flows().SetLimit(context.Background(), sqlbackend.StdTx(q.conn), l, s.now())
		// Claimers reconsider the keys' set-aside tasks.
		q.wake = err == nil
		return err
	})
	return out, err
}

// GetLimit implements store.Limiter.
func (s *Store) GetLimit(ctx context.Context, name string) (store.LimitInfo, error) {
	return flows().GetLimit(ctx, sqlbackend.StdDB(s.rdb), name)
}

// ListLimits implements store.Limiter.
func (s *Store) ListLimits(ctx context.Context) ([]store.LimitInfo, error) {
	return flows().ListLimits(ctx, sqlbackend.StdDB(s.rdb))
}

// LimitKeyStates implements store.Limiter.
func (s *Store) LimitKeyStates(ctx context.Context, name, cursor string, limit int) ([]store.LimitKeyState, string, error) {
	return flows().LimitKeyStates(ctx, sqlbackend.StdDB(s.rdb), name, cursor, limit, s.now())
}

// DeleteLimit implements store.Limiter.
func (s *Store) DeleteLimit(ctx context.Context, name string) error {
	return s.writer.do(ctx, func(q *execer) error {
		err := flows().DeleteLimit(context.Background(), sqlbackend.StdTx(q.conn), name)
		q.wake = err == nil
		return err
	})
}

// SetFairness implements store.Limiter.
func (s *Store) SetFairness(ctx context.Context, queue string, weights map[string]int) error {
	return s.writer.do(ctx, func(q *execer) error {
		return flows().SetFairness(context.Background(), sqlbackend.StdTx(q.conn), queue, weights)
	})
}

// Fairness implements store.Limiter.
func (s *Store) Fairness(ctx context.Context, queue string) (map[string]int, error) {
	return flows().Fairness(ctx, sqlbackend.StdDB(s.rdb), queue)
}

// ReconcileLimits implements store.Limiter.
func (s *Store) ReconcileLimits(ctx context.Context) (store.LimitDrift, error) {
	var d store.LimitDrift
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		d, err = flows().ReconcileLimits(context.Background(), sqlbackend.StdTx(q.conn), s.now())
		return err
	})
	return d, err
}
