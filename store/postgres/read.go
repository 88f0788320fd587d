package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
)

// MaxListLimit bounds one page of List.
const MaxListLimit = 1000

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, taskID string) (*store.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx, "SELECT "+taskColumns+" FROM weft_tasks WHERE id = $1", taskID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", taskID, err)
	}
	return t, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, p store.ListParams) ([]*store.Task, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if p.Queue != "" {
		add("queue = ?", p.Queue)
	}
	if p.Kind != "" {
		add("kind = ?", p.Kind)
	}
	if len(p.States) > 0 {
		states := make([]string, len(p.States))
		for i, st := range p.States {
			if !st.Valid() {
				return nil, &store.ValidationError{Index: -1, Field: "state", Message: fmt.Sprintf("%q is not a state", st)}
			}
			states[i] = string(st)
		}
		add("state = ANY(?::text[])", states)
	}
	if p.After != "" {
		add("id > ?", p.After)
	}
	limit := p.Limit
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	query := "SELECT " + taskColumns + " FROM weft_tasks"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id LIMIT " + strconv.Itoa(limit)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	var out []*store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, taskID string, after int64, limit int) ([]store.Event, error) {
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, type, attempt, at, data FROM weft_events
		WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, taskID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			e    store.Event
			typ  string
			at   int64
			data []byte
		)
		if err := rows.Scan(&e.Seq, &typ, &e.Attempt, &at, &data); err != nil {
			return nil, fmt.Errorf("read events of %s: %w", taskID, err)
		}
		e.TaskID, e.Type, e.At = taskID, store.EventType(typ), fromMicros(at)
		if len(data) > 0 {
			e.Data = data
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// NextRunAt implements store.Store, stepping through distinct priorities
// with one index seek each. A paused queue finds no row at the first step:
// an engine must not wake for work it may not claim.
func (s *Store) NextRunAt(ctx context.Context, queues, kinds []string) (time.Time, bool, error) {
	var (
		best  int64
		found bool
	)
	kindFilter := ""
	if len(kinds) > 0 {
		kindFilter = " AND kind = ANY($3::text[])"
	}
	for _, q := range queues {
		below := int64(math.MaxInt32) + 1
		for {
			args := []any{q, below}
			if len(kinds) > 0 {
				args = append(args, kinds)
			}
			var prio, runAt int64
			err := s.pool.QueryRow(ctx, `SELECT priority, run_at FROM weft_tasks
				WHERE state = 'pending' AND queue = $1 AND priority < $2::bigint`+kindFilter+`
				AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = $1 AND paused)
				ORDER BY priority DESC, run_at LIMIT 1`, args...).Scan(&prio, &runAt)
			if errors.Is(err, pgx.ErrNoRows) {
				break
			}
			if err != nil {
				return time.Time{}, false, fmt.Errorf("next run_at: %w", err)
			}
			if !found || runAt < best {
				best, found = runAt, true
			}
			below = prio
		}
	}
	if !found {
		return time.Time{}, false, nil
	}
	return fromMicros(best), true, nil
}

// Stats implements store.Store. Paused queues are read in the same
// statement, as rows without a state, so that one ORDER BY (in the
// database's collation) interleaves them with the counts.
func (s *Store) Stats(ctx context.Context) ([]store.QueueStats, error) {
	rows, err := s.pool.Query(ctx, `SELECT queue, state, sum(n)::bigint FROM (
			SELECT queue, state, n FROM weft_counts UNION ALL SELECT queue, state, n FROM weft_count_deltas) c
		GROUP BY queue, state HAVING sum(n) != 0
		UNION ALL SELECT name, NULL, 0 FROM weft_queues WHERE paused
		ORDER BY queue, state`)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	var out []store.QueueStats
	for rows.Next() {
		var (
			queue string
			state *string
			n     int64
		)
		if err := rows.Scan(&queue, &state, &n); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		if state == nil {
			out = store.AddPaused(out, queue)
			continue
		}
		out = store.AddCount(out, queue, store.State(*state), n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	now := micros(s.now())
	for i := range out {
		if out[i].Counts[store.StatePending] == 0 {
			continue
		}
		below := int64(math.MaxInt32) + 1
		for {
			var prio *int64
			if err := s.pool.QueryRow(ctx, `SELECT max(priority)::bigint FROM weft_tasks
				WHERE state = 'pending' AND queue = $1 AND priority < $2::bigint`, out[i].Queue, below).Scan(&prio); err != nil {
				return nil, fmt.Errorf("stats: %w", err)
			}
			if prio == nil {
				break
			}
			var runAt *int64
			if err := s.pool.QueryRow(ctx, `SELECT min(run_at) FROM weft_tasks
				WHERE state = 'pending' AND queue = $1 AND priority = $2::bigint`, out[i].Queue, *prio).Scan(&runAt); err != nil {
				return nil, fmt.Errorf("stats: %w", err)
			}
			if runAt != nil && *runAt <= now && (out[i].OldestReadyAt.IsZero() || fromMicros(*runAt).Before(out[i].OldestReadyAt)) {
				out[i].OldestReadyAt = fromMicros(*runAt)
			}
			below = *prio
		}
	}
	return out, nil
}
