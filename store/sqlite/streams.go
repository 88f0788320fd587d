package sqlite

import (
	"context"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// streams are the shared stream statements in SQLite's dialect: its one
// writer serializes appends with the task's final transition, so no row
// lock is needed.
func streams() sqlbackend.StreamStore {
	return sqlbackend.NewStreamStore(&sqlbackend.Dialect{
		Bind:       func(q string) string { return q },
		JSON:       "?",
		InsertRows: insertRows,
		TaskArg:    "+?",
	})
}

// AppendFrames implements store.Store. Followers through this store are
// woken once the append commits.
func (s *Store) AppendFrames(ctx context.Context, taskID string, epoch int64, frames []store.NewFrame) ([]store.Frame, error) {
	if err := store.CheckFrames(frames); err != nil {
		return nil, err
	}
	now := s.now()
	var out []store.Frame
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		out, err = streams().Append(context.Background(), sqlbackend.StdTx(q.conn), taskID, epoch, frames, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.followers.Notify(taskID)
	return out, nil
}

// Frames implements store.Store, on the read pool.
func (s *Store) Frames(ctx context.Context, taskID string, after int64, limit int) ([]store.Frame, *store.FrameEnd, error) {
	return streams().Read(ctx, sqlbackend.StdDB(s.rdb), taskID, after, limit)
}

// WatchFrames implements store.Store. Appends and final transitions
// through this store signal at once; a commit by another connection or
// process signals every follower when the writer's change watch notices
// it (within WatchIdleInterval, or a file notification).
func (s *Store) WatchFrames(taskID string) (<-chan struct{}, func()) {
	return s.followers.Subscribe(taskID)
}
