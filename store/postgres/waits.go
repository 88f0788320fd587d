package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// CreateWaitpoint implements store.Store.
func (s *Store) CreateWaitpoint(ctx context.Context, taskID string, epoch int64, wp store.NewWaitpoint) (store.Waitpoint, error) {
	now := s.now()
	var out store.Waitpoint
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		out, err = flows().CreateWaitpoint(ctx, pgxTx{tx}, taskID, epoch, wp, now)
		return false, err
	})
	if isUniqueViolation(err) {
		// Two attempts made the same name at once: the other's stands.
		return s.waitpointByName(ctx, taskID, wp.Name)
	}
	return out, err
}

func (s *Store) waitpointByName(ctx context.Context, taskID, name string) (store.Waitpoint, error) {
	wps, err := s.Waitpoints(ctx, taskID)
	if err != nil {
		return store.Waitpoint{}, err
	}
	for _, wp := range wps {
		if wp.Name == name {
			return wp, nil
		}
	}
	return store.Waitpoint{}, store.ErrNotFound
}

// Waitpoints implements store.Store.
func (s *Store) Waitpoints(ctx context.Context, taskID string) ([]store.Waitpoint, error) {
	return flows().Waitpoints(ctx, s.readPool(), taskID)
}

// WaitpointsOf implements store.Store.
func (s *Store) WaitpointsOf(ctx context.Context, taskIDs []string) (map[string][]store.Waitpoint, error) {
	return flows().WaitpointsOf(ctx, s.readPool(), taskIDs)
}

// Waitpoint implements store.Store.
func (s *Store) Waitpoint(ctx context.Context, id string) (store.Waitpoint, error) {
	return flows().Waitpoint(ctx, s.readPool(), id)
}

// Signal implements store.Store. Concurrent signals to one waitpoint
// queue on its row lock, so exactly one of them completes the wait.
func (s *Store) Signal(ctx context.Context, r store.SignalRequest) (store.SignalReceipt, error) {
	now := s.now()
	var rec store.SignalReceipt
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var (
			ch  store.Change
			err error
		)
		rec, ch, err = flows().Signal(ctx, pgxTx{tx}, r, s.opts.Limits, now)
		if err != nil {
			return false, err
		}
		return applyChange(ctx, tx, ch, micros(now))
	})
	if isUniqueViolation(err) {
		// The same key raced in from another connection: answer with the
		// receipt it made.
		return s.Signal(ctx, r)
	}
	return rec, err
}

// ExpireWaits implements store.Store.
func (s *Store) ExpireWaits(ctx context.Context, limit int) (int, time.Time, error) {
	now := s.now()
	var (
		n    int
		next time.Time
	)
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var (
			ch       store.Change
			finished []sqlbackend.Finished
			err      error
		)
		n, next, ch, finished, err = flows().ExpireWaits(ctx, pgxTx{tx}, limit, now)
		if err != nil {
			return false, err
		}
		notify, err := applyChange(ctx, tx, ch, micros(now))
		if err != nil {
			return false, err
		}
		woke, err := resolveFinished(ctx, tx, finished, micros(now))
		return notify || woke, err
	})
	return n, next, err
}

// SigningKey implements store.Store.
func (s *Store) SigningKey(ctx context.Context) (string, []byte, error) {
	var (
		kid    string
		secret []byte
	)
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		kid, secret, err = flows().SigningKey(ctx, pgxTx{tx}, s.now())
		return false, err
	})
	return kid, secret, err
}

// suspend applies waiting outcomes in a transaction of their own.
func (s *Store) suspend(ctx context.Context, outcomes []store.Outcome, nowUS int64) ([]store.FinishResult, error) {
	var res []store.FinishResult
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var (
			ch       store.Change
			finished []sqlbackend.Finished
			err      error
		)
		res, ch, finished, err = flows().Suspend(ctx, pgxTx{tx}, outcomes, fromMicros(nowUS))
		if err != nil {
			return false, err
		}
		notify, err := applyChange(ctx, tx, ch, nowUS)
		if err != nil {
			return false, err
		}
		woke, err := resolveFinished(ctx, tx, finished, nowUS)
		return notify || woke, err
	})
	return res, err
}
