package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// streams are the shared stream statements in PostgreSQL's dialect. An
// append reads the task's row FOR UPDATE: a final transition running at
// the same time either waits for the append to commit, or commits first
// and the append, reading the row again, finds it no longer running.
func streams() sqlbackend.StreamStore {
	return sqlbackend.NewStreamStore(&sqlbackend.Dialect{
		Bind:       bind,
		JSON:       "?::jsonb",
		Lock:       "FOR UPDATE",
		InsertRows: insertRows,
	})
}

// AppendFrames implements store.Store. The transaction sends a NOTIFY on
// the stream channel with the task's id, which every store on the
// database (every node) turns into a signal for the task's followers;
// this store signals its own at once.
func (s *Store) AppendFrames(ctx context.Context, taskID string, epoch int64, frames []store.NewFrame) ([]store.Frame, error) {
	if err := store.CheckFrames(frames); err != nil {
		return nil, err
	}
	now := s.now()
	var out []store.Frame
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		if out, err = streams().Append(ctx, pgxTx{tx}, taskID, epoch, frames, now); err != nil {
			return false, err
		}
		if !s.opts.PollOnly {
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", s.frameChannel, taskID); err != nil {
				return false, err
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	s.followers.Notify(taskID)
	return out, nil
}

// Frames implements store.Store.
func (s *Store) Frames(ctx context.Context, taskID string, after int64, limit int) ([]store.Frame, *store.FrameEnd, error) {
	return streams().Read(ctx, s.readPool(), taskID, after, limit)
}

// WatchFrames implements store.Store. Appends are signalled on every
// node, by NOTIFY (unless PollOnly); a task's final transition is
// signalled at once on the node that made it, and found by the follower's
// own timer on the others: the finish path sends no NOTIFY for it, so
// tasks that never stream pay nothing.
func (s *Store) WatchFrames(taskID string) (<-chan struct{}, func()) {
	return s.followers.Subscribe(taskID)
}
