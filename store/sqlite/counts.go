package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/weftworks/weft/store"
)

// applyCounts writes the accumulated counter changes in one statement.
func applyCounts(ctx context.Context, db dbtx, c store.CountMoves) error {
	queues, states, deltas := c.Rows()
	if len(deltas) == 0 {
		return nil
	}
	a := make([]any, 0, 3*len(deltas))
	for i := range deltas {
		a = append(a, queues[i], states[i], deltas[i])
	}
	_, err := db.ExecContext(ctx, `INSERT INTO weft_counts (queue, state, n) VALUES `+placeholders(len(deltas), 3)+`
		ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`, a...)
	if err != nil {
		return fmt.Errorf("update counts: %w", err)
	}
	return nil
}

// applyChange writes a transition's side effects in the writer's
// transaction: counters, events, and the wakeup after commit.
func applyChange(q *execer, ch store.Change, nowUS int64) error {
	if err := applyCounts(context.Background(), q.conn, ch.Counts); err != nil {
		return err
	}
	if ch.Wake {
		q.wake = true
	}
	return insertEvents(q, ch.Events, nowUS)
}

// Maintain implements store.Store: SQLite's counters are kept in place
// (one writer, no lock contention), so there is nothing to fold.
func (s *Store) Maintain(context.Context) error { return nil }

// Stats implements store.Store: counts come from weft_counts, the oldest
// ready task from the claim index (one seek per distinct priority). Paused
// queues are read in the same statement, as rows without a state, so that
// one ORDER BY interleaves them with the counts.
func (s *Store) Stats(ctx context.Context) ([]store.QueueStats, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT queue, state, n FROM weft_counts WHERE n != 0
		UNION ALL SELECT name, NULL, 0 FROM weft_queues WHERE paused = 1
		ORDER BY queue`)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	var out []store.QueueStats
	for rows.Next() {
		var (
			queue string
			state sql.NullString
			n     int64
		)
		if err := rows.Scan(&queue, &state, &n); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		if !state.Valid {
			out = store.AddPaused(out, queue)
			continue
		}
		out = store.AddCount(out, queue, store.State(state.String), n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	now := s.now()
	for i := range out {
		if out[i].Counts[store.StatePending] == 0 {
			continue
		}
		oldest, ok, err := s.oldestReady(ctx, out[i].Queue, now)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i].OldestReadyAt = oldest
		}
	}
	return out, nil
}

// oldestReady is the earliest run_at among the queue's ready tasks,
// stepping through the distinct priorities with one index seek each.
func (s *Store) oldestReady(ctx context.Context, queue string, now time.Time) (time.Time, bool, error) {
	var (
		best  int64
		found bool
	)
	below := int64(math.MaxInt64)
	for {
		var prio sql.NullInt64
		if err := s.rdb.QueryRowContext(ctx, `SELECT max(priority) FROM weft_tasks
			WHERE state = 'pending' AND queue = +? AND priority < +?`, queue, below).Scan(&prio); err != nil {
			return time.Time{}, false, fmt.Errorf("stats: %w", err)
		}
		if !prio.Valid {
			break
		}
		var runAt sql.NullInt64
		if err := s.rdb.QueryRowContext(ctx, `SELECT min(run_at) FROM weft_tasks
			WHERE state = 'pending' AND queue = +? AND priority = +?`, queue, prio.Int64).Scan(&runAt); err != nil {
			return time.Time{}, false, fmt.Errorf("stats: %w", err)
		}
		if runAt.Valid && runAt.Int64 <= micros(now) && (!found || runAt.Int64 < best) {
			best, found = runAt.Int64, true
		}
		below = prio.Int64
	}
	if !found {
		return time.Time{}, false, nil
	}
	return fromMicros(best), true, nil
}
