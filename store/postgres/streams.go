package postgres

import (
	"context"
	"slices"
	"strings"
	"sync"

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

// AppendFrames implements store.Store. This store's followers of the task
// are signalled once the append commits; the other nodes' by a NOTIFY on
// the stream channel that the frameNotifier sends after the commit.
func (s *Store) AppendFrames(ctx context.Context, taskID string, epoch int64, frames []store.NewFrame) ([]store.Frame, error) {
	if err := store.CheckFrames(frames); err != nil {
		return nil, err
	}
	now := s.now()
	var out []store.Frame
	err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		out, err = streams().Append(ctx, pgxTx{tx}, taskID, epoch, frames, now)
		return false, err
	})
	if err != nil {
		return nil, err
	}
	s.followers.Notify(taskID)
	s.appended.add(taskID)
	return out, nil
}

// frameNotifier sends the NOTIFYs of stream appends, after their commits
// and off the writers' path, a few task ids (comma-separated) per
// notification. A NOTIFY inside the append's transaction made every
// append's commit, fsync included, wait for PostgreSQL's one lock on the
// notification queue: 633 appends/s with 50 writers. Sent after the commit
// by a transaction that writes nothing, it holds that lock for no fsync;
// one lost to a crash in between leaves the other nodes' followers to
// their own reads, every second.
type frameNotifier struct {
	s *Store
	// done is closed when run returns (at once with PollOnly: no run).
	done chan struct{}

	mu      sync.Mutex
	pending []string
	kick    chan struct{}
}

// maxNotifyPayload bounds one notification's payload, under PostgreSQL's
// 8,000 bytes.
const maxNotifyPayload = 7900

func newFrameNotifier(s *Store) *frameNotifier {
	n := &frameNotifier{s: s, done: make(chan struct{}), kick: make(chan struct{}, 1)}
	if s.opts.PollOnly {
		close(n.done)
	}
	return n
}

// add queues a NOTIFY for taskID.
func (n *frameNotifier) add(taskID string) {
	if n.s.opts.PollOnly {
		return
	}
	n.mu.Lock()
	n.pending = append(n.pending, taskID)
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// run sends what was queued until ctx ends.
func (n *frameNotifier) run(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		}
		n.mu.Lock()
		ids := n.pending
		n.pending = nil
		n.mu.Unlock()
		slices.Sort(ids)
		for _, payload := range notifyPayloads(slices.Compact(ids)) {
			if _, err := n.s.pool.Exec(ctx, "SELECT pg_notify($1, $2)", n.s.frameChannel, payload); err != nil && ctx.Err() == nil {
				n.s.log.Warn("postgres: notifying stream followers", "err", err)
			}
		}
	}
}

// notifyPayloads joins ids with commas into payloads of at most
// maxNotifyPayload bytes.
func notifyPayloads(ids []string) []string {
	var out []string
	var b strings.Builder
	for _, id := range ids {
		if b.Len() > 0 && b.Len()+1+len(id) > maxNotifyPayload {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// Frames implements store.Store.
func (s *Store) Frames(ctx context.Context, taskID string, after int64, limit int) ([]store.Frame, *store.FrameEnd, error) {
	return streams().Read(ctx, s.readPool(), taskID, after, limit)
}

// WatchFrames implements store.Store. Appends are signalled on every
// node, by NOTIFY after their commit (unless PollOnly); a task's final
// transition is signalled at once on the node that made it, and found by
// the follower's own timer on the others: the finish path sends no NOTIFY
// for it, so tasks that never stream pay nothing.
func (s *Store) WatchFrames(taskID string) (<-chan struct{}, func()) {
	return s.followers.Subscribe(taskID)
}
