package sqlbackend

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weftworks/weft/internal/wake"
	"github.com/weftworks/weft/store"
)

// Streams are written once, here, for both backends, as flows are: plain
// SQL in the backend's Dialect, run in its own transaction through a Tx.
//
// weft_frames holds the frames, keyed (task_id, seq); weft_streams one row
// per task that has frames — its head (store.StreamHead) — which an append
// reads and rewrites under the task's row lock, so appends to one task are
// serialized and a task that never streamed has no row anywhere. The end
// of a stream is not stored: Read derives it from the task's state, read
// by the same statement as the frames (see store.FrameEnd).

// StreamStore runs the stream statements in a dialect.
type StreamStore struct {
	d *Dialect
}

// NewStreamStore returns the stream statements in dialect d.
func NewStreamStore(d *Dialect) StreamStore { return StreamStore{d: d} }

// frameColumns are the columns of weft_frames, in insert order.
var frameColumns = []string{"task_id", "seq", "attempt", "at", "kind", "data"}

// Append appends checked frames (store.CheckFrames) to task taskID's
// stream in tx, under its lease epoch, at now. The task's row is read
// under the dialect's lock: the final transition of the task either waits
// for this transaction or makes it fail with store.ErrLeaseLost, so no
// frame commits after the task became final.
func (s StreamStore) Append(ctx context.Context, tx Tx, taskID string, epoch int64, frames []store.NewFrame, now time.Time) ([]store.Frame, error) {
	var attempt int
	a := s.d.taskArg()
	err := tx.QueryRow(ctx, s.d.Bind("SELECT attempt FROM weft_tasks WHERE id = "+a+" AND lease_epoch = "+a+" AND state = 'running'"+s.lock()), taskID, epoch).Scan(&attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, LeaseLostOrMissing(tx.QueryRow(ctx, s.d.Bind("SELECT 1 FROM weft_tasks WHERE id = ?"), taskID), taskID, epoch)
	}
	if err != nil {
		return nil, fmt.Errorf("append frames: %w", err)
	}
	var h store.StreamHead
	err = tx.QueryRow(ctx, s.d.Bind("SELECT seq, bytes, epoch, base FROM weft_streams WHERE task_id = ?"+s.lock()), taskID).Scan(&h.Seq, &h.Bytes, &h.Epoch, &h.Base)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("append frames: read the stream's head: %w", err)
	}
	plan, err := store.PlanAppend(h, epoch, frames)
	if err != nil {
		return nil, err
	}
	out := make([]store.Frame, 0, len(frames))
	if plan.Replays > 0 {
		stored, err := s.read(ctx, tx, "SELECT seq, attempt, at, kind, data FROM weft_frames WHERE task_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
			taskID, plan.FirstReplay, plan.FirstReplay+int64(plan.Replays))
		if err != nil {
			return nil, fmt.Errorf("append frames: read the frames given again: %w", err)
		}
		if len(stored) != plan.Replays {
			return nil, fmt.Errorf("append frames: %d of the %d frames given again are stored", len(stored), plan.Replays)
		}
		for i, f := range stored {
			if err := store.CheckReplay(f, frames[i]); err != nil {
				return nil, err
			}
		}
		out = append(out, stored...)
	}
	fresh := frames[plan.Replays:]
	if len(fresh) == 0 {
		return out, nil
	}
	at := FromMicros(Micros(now))
	rows := make([][]any, len(fresh))
	for i, f := range fresh {
		seq := plan.FirstNew + int64(i)
		rows[i] = []any{taskID, seq, attempt, Micros(at), string(f.Kind), f.Data}
		out = append(out, store.Frame{Seq: seq, Attempt: attempt, At: at, Kind: f.Kind, Data: f.Data})
	}
	if err := s.d.InsertRows(ctx, tx, "weft_frames", frameColumns, rows); err != nil {
		return nil, fmt.Errorf("append frames: %w", err)
	}
	if _, err := tx.Exec(ctx, s.d.Bind(`INSERT INTO weft_streams (task_id, seq, bytes, epoch, base) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (task_id) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes, epoch = excluded.epoch, base = excluded.base`),
		taskID, plan.Head.Seq, plan.Head.Bytes, plan.Head.Epoch, plan.Head.Base); err != nil {
		return nil, fmt.Errorf("append frames: write the stream's head: %w", err)
	}
	return out, nil
}

func (s StreamStore) lock() string {
	if s.d.Lock == "" {
		return ""
	}
	return " " + s.d.Lock
}

// Read reads at most limit (PageLimit) frames of task taskID after the
// Seq after, and whether the stream ended, with one statement on db: the
// frames and the task's state are one snapshot on both backends.
func (s StreamStore) Read(ctx context.Context, db Querier, taskID string, after int64, limit int) ([]store.Frame, *store.FrameEnd, error) {
	limit = PageLimit(limit)
	// One more frame than asked tells whether any is left. The task's
	// row comes with seq 0, which no frame has.
	rows, err := db.Query(ctx, s.d.Bind(fmt.Sprintf(`SELECT seq, attempt, at, kind, data FROM
		(SELECT seq, attempt, at, kind, data FROM weft_frames WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT %d) f
		UNION ALL SELECT 0, 0, coalesce(finalized_at, 0), state, NULL FROM weft_tasks WHERE id = %s`, limit+1, s.d.taskArg())), taskID, after, taskID)
	if err != nil {
		return nil, nil, fmt.Errorf("read frames of %s: %w", taskID, err)
	}
	var (
		frames      []store.Frame
		state       store.State
		finalizedAt time.Time
		found       bool
	)
	for rows.Next() {
		f, err := scanFrame(rows)
		if err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("read frames of %s: %w", taskID, err)
		}
		if f.Seq == 0 {
			found, state, finalizedAt = true, store.State(f.Kind), f.At
			continue
		}
		frames = append(frames, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read frames of %s: %w", taskID, err)
	}
	if !found {
		return nil, nil, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	slices.SortFunc(frames, func(a, b store.Frame) int { return cmp.Compare(a.Seq, b.Seq) })
	more := len(frames) > limit
	if more {
		frames = frames[:limit]
	}
	return frames, store.StreamEnd(state, finalizedAt, more), nil
}

// read collects the frames a query selects (seq, attempt, at, kind, data).
func (s StreamStore) read(ctx context.Context, db Querier, query string, args ...any) ([]store.Frame, error) {
	return collect(ctx, db, "read frames", s.d.Bind(query), args, scanFrame)
}

func scanFrame(r Rows) (store.Frame, error) {
	var (
		f    store.Frame
		at   int64
		kind string
	)
	if err := r.Scan(&f.Seq, &f.Attempt, &at, &kind, &f.Data); err != nil {
		return store.Frame{}, err
	}
	f.At, f.Kind = FromMicros(at), store.FrameKind(kind)
	return f, nil
}

// PurgeFrames deletes, in tx, the streams of the tasks whose ids a
// subquery of the backend's selects (with args): the tasks a purge
// deletes.
func (s StreamStore) PurgeFrames(ctx context.Context, tx Tx, ids string, args ...any) error {
	for _, table := range []string{"weft_frames", "weft_streams"} {
		if _, err := tx.Exec(ctx, s.d.Bind("DELETE FROM "+table+" WHERE task_id IN ("+ids+")"), args...); err != nil {
			return fmt.Errorf("purge %s: %w", table, err)
		}
	}
	return nil
}

// NotifyEnded signals the followers of the tasks whose outcomes made them
// final (res are Finish's results for outcomes): their streams have ended.
// While nobody follows a stream it costs one atomic load, so Finish calls
// it on every batch.
func NotifyEnded(followers *wake.Keyed, outcomes []store.Outcome, res []store.FinishResult) {
	if !followers.Active() {
		return
	}
	for i, r := range res {
		if r.Err == nil && r.State.Terminal() {
			followers.Notify(outcomes[i].TaskID)
		}
	}
}
