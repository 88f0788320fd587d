package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
)

// SetLimit implements store.Limiter.
func (s *Store) SetLimit(ctx context.Context, l store.Limit) (store.Limit, error) {
	var out store.Limit
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		out, err = flows().SetLimit(ctx, pgxTx{tx}, l, s.now())
		// The nodes' claims reconsider the keys' set-aside tasks.
		return err == nil, err
	})
	return out, err
}

// GetLimit implements store.Limiter.
func (s *Store) GetLimit(ctx context.Context, name string) (store.LimitInfo, error) {
	return flows().GetLimit(ctx, s.readPool(), name)
}

// ListLimits implements store.Limiter.
func (s *Store) ListLimits(ctx context.Context) ([]store.LimitInfo, error) {
	return flows().ListLimits(ctx, s.readPool())
}

// LimitKeyStates implements store.Limiter.
func (s *Store) LimitKeyStates(ctx context.Context, name, cursor string, limit int) ([]store.LimitKeyState, string, error) {
	return flows().LimitKeyStates(ctx, s.readPool(), name, cursor, limit, s.now())
}

// DeleteLimit implements store.Limiter.
func (s *Store) DeleteLimit(ctx context.Context, name string) error {
	return s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		err := flows().DeleteLimit(ctx, pgxTx{tx}, name)
		return err == nil, err
	})
}

// SetFairness implements store.Limiter.
func (s *Store) SetFairness(ctx context.Context, queue string, weights map[string]int) error {
	return s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		return false, flows().SetFairness(ctx, pgxTx{tx}, queue, weights)
	})
}

// Fairness implements store.Limiter.
func (s *Store) Fairness(ctx context.Context, queue string) (map[string]int, error) {
	return flows().Fairness(ctx, s.readPool(), queue)
}

// ReconcileLimits implements store.Limiter.
func (s *Store) ReconcileLimits(ctx context.Context) (store.LimitDrift, error) {
	var d store.LimitDrift
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		d, err = flows().ReconcileLimits(ctx, pgxTx{tx}, s.now())
		return err == nil && d.Released > 0, err
	})
	return d, err
}
