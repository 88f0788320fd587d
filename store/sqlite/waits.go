package sqlite

import (
	"context"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// CreateWaitpoint implements store.Store.
func (s *Store) CreateWaitpoint(ctx context.Context, taskID string, epoch int64, wp store.NewWaitpoint) (store.Waitpoint, error) {
	now := s.now()
	var out store.Waitpoint
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		out, err = flows().CreateWaitpoint(context.Background(), sqlbackend.StdTx(q.conn), taskID, epoch, wp, now)
		return err
	})
	return out, err
}

// Waitpoints implements store.Store.
func (s *Store) Waitpoints(ctx context.Context, taskID string) ([]store.Waitpoint, error) {
	return flows().Waitpoints(ctx, sqlbackend.StdDB(s.rdb), taskID)
}

// WaitpointsOf implements store.Store.
func (s *Store) WaitpointsOf(ctx context.Context, taskIDs []string) (map[string][]store.Waitpoint, error) {
	return flows().WaitpointsOf(ctx, sqlbackend.StdDB(s.rdb), taskIDs)
}

// Waitpoint implements store.Store.
func (s *Store) Waitpoint(ctx context.Context, id string) (store.Waitpoint, error) {
	return flows().Waitpoint(ctx, sqlbackend.StdDB(s.rdb), id)
}

// Signal implements store.Store.
func (s *Store) Signal(ctx context.Context, r store.SignalRequest) (store.SignalReceipt, error) {
	now := s.now()
	var rec store.SignalReceipt
	err := s.writer.do(ctx, func(q *execer) error {
		var (
			ch  store.Change
			err error
		)
		rec, ch, err = flows().Signal(context.Background(), sqlbackend.StdTx(q.conn), r, s.opts.Limits, now)
		if err != nil {
			return err
		}
		return applyChange(q, ch, micros(now))
	})
	return rec, err
}

// ExpireWaits implements store.Store.
func (s *Store) ExpireWaits(ctx context.Context, limit int) (int, time.Time, error) {
	now := s.now()
	var (
		n    int
		next time.Time
	)
	err := s.writer.do(ctx, func(q *execer) error {
		var (
			ch       store.Change
			finished []sqlbackend.Finished
			err      error
		)
		n, next, ch, finished, err = flows().ExpireWaits(context.Background(), sqlbackend.StdTx(q.conn), limit, now)
		if err != nil {
			return err
		}
		if err := applyChange(q, ch, micros(now)); err != nil {
			return err
		}
		return resolveFinished(q, finished, micros(now))
	})
	return n, next, err
}

// SigningKey implements store.Store.
func (s *Store) SigningKey(ctx context.Context) (string, []byte, error) {
	var (
		kid    string
		secret []byte
	)
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		kid, secret, err = flows().SigningKey(context.Background(), sqlbackend.StdTx(q.conn), s.now())
		return err
	})
	return kid, secret, err
}

// suspend applies waiting outcomes in the writer's transaction.
func suspend(q *execer, outcomes []store.Outcome, nowUS int64) ([]store.FinishResult, error) {
	res, ch, finished, err := flows().Suspend(context.Background(), sqlbackend.StdTx(q.conn), outcomes, fromMicros(nowUS))
	if err != nil {
		return nil, err
	}
	if err := applyChange(q, ch, nowUS); err != nil {
		return nil, err
	}
	return res, resolveFinished(q, finished, nowUS)
}
