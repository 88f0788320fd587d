package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// TouchNode implements store.Store.
func (s *Store) TouchNode(ctx context.Context, n store.Node) error {
	started, nowUS, err := sqlbackend.NodeTimes(n, s.now())
	if err != nil {
		return err
	}
	labels, err := sqlbackend.LabelsJSON(n.Labels)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO weft_nodes (id, host, pid, started_at, heartbeat_at, queues, kinds, labels)
		VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, queues = excluded.queues, kinds = excluded.kinds, labels = excluded.labels`,
		n.ID, n.Host, n.PID, started, nowUS, sqlbackend.NamesJSON(n.Queues), sqlbackend.NamesJSON(n.Kinds), labels)
	if err != nil {
		return fmt.Errorf("node heartbeat: %w", err)
	}
	return nil
}

// RemoveNode implements store.Store.
func (s *Store) RemoveNode(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM weft_nodes WHERE id = $1", id); err != nil {
		return fmt.Errorf("remove node: %w", err)
	}
	return nil
}

// Purge implements store.Store: tasks go with their events and output
// streams.
func (s *Store) Purge(ctx context.Context, p store.PurgeParams) (store.PurgeResult, error) {
	plan, err := p.Plan()
	if err != nil {
		return store.PurgeResult{}, err
	}
	if len(plan.Cutoffs) == 0 {
		return store.PurgeResult{Done: true}, nil
	}
	// One (state, cutoff) pair per element: the statement is the same
	// whatever the states purged.
	states := make([]string, len(plan.Cutoffs))
	cutoffs := make([]int64, len(plan.Cutoffs))
	for i, c := range plan.Cutoffs {
		states[i], cutoffs[i] = string(c.State), micros(c.Before)
	}
	var res store.PurgeResult
	err = s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var end *string
		err := tx.QueryRow(ctx, "SELECT id FROM weft_tasks WHERE id > $1 ORDER BY id OFFSET $2 LIMIT 1", p.After, plan.Window-1).Scan(&end)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("purge: %w", err)
		}
		rows, err := tx.Query(ctx, `DELETE FROM weft_tasks WHERE id IN (SELECT id FROM weft_tasks
			WHERE id > $1 AND ($2::text IS NULL OR id <= $2) AND flow_id IS NULL
			AND EXISTS (SELECT 1 FROM unnest($3::text[], $4::bigint[]) AS c(state, before)
				WHERE weft_tasks.state = c.state AND weft_tasks.finalized_at < c.before)
			LIMIT $5) RETURNING id, queue, state`,
			p.After, end, states, cutoffs, plan.Limit)
		if err != nil {
			return false, fmt.Errorf("purge: %w", err)
		}
		var ids []string
		removed := store.CountMoves{}
		for rows.Next() {
			var id, queue, state string
			if err := rows.Scan(&id, &queue, &state); err != nil {
				rows.Close()
				return false, fmt.Errorf("purge: %w", err)
			}
			ids = append(ids, id)
			removed.Move(queue, store.State(state), "", 1)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("purge: %w", err)
		}
		if len(ids) > 0 {
			for _, table := range []string{"weft_events", "weft_signals", "weft_waitpoints"} {
				if _, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE task_id = ANY($1::text[])", ids); err != nil {
					return false, fmt.Errorf("purge %s: %w", table, err)
				}
			}
			if err := streams().PurgeFrames(ctx, pgxTx{tx}, "SELECT unnest(?::text[])", ids); err != nil {
				return false, fmt.Errorf("purge: %w", err)
			}
		}
		// Flows go whole, members and all, once the flow is final and
		// older than its cutoff; a few per call, as each may be large.
		flowsDeleted, err := flows().PurgeFlows(ctx, pgxTx{tx}, plan, sqlbackend.FlowPurgeBatch, removed)
		if err != nil {
			return false, fmt.Errorf("purge: %w", err)
		}
		if err := applyCounts(ctx, tx, removed); err != nil {
			return false, err
		}
		last := ""
		if end != nil {
			last = *end
		}
		res = plan.Result(p.After, len(ids), last)
		if flowsDeleted == sqlbackend.FlowPurgeBatch {
			res.Done = false
		}
		return false, nil
	})
	if err != nil {
		return store.PurgeResult{}, err
	}
	return res, nil
}

// Lead implements store.Store.
func (s *Store) Lead(ctx context.Context, role, holder string, ttl time.Duration) (int64, bool, error) {
	if err := sqlbackend.CheckLead(role, holder, ttl); err != nil {
		return 0, false, err
	}
	now := s.now()
	var (
		who  string
		term int64
	)
	err := s.pool.QueryRow(ctx, `INSERT INTO weft_leaders (name, holder, term, expires_at) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO UPDATE SET
			term = CASE WHEN weft_leaders.holder = excluded.holder THEN weft_leaders.term ELSE weft_leaders.term + 1 END,
			holder = excluded.holder,
			expires_at = excluded.expires_at
		WHERE weft_leaders.holder = excluded.holder OR weft_leaders.expires_at < $4
		RETURNING holder, term`, role, holder, micros(now.Add(ttl)), micros(now)).Scan(&who, &term)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := s.pool.QueryRow(ctx, "SELECT term FROM weft_leaders WHERE name = $1", role).Scan(&term); err != nil {
			return 0, false, fmt.Errorf("lead %s: %w", role, err)
		}
		return term, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("lead %s: %w", role, err)
	}
	return term, who == holder, nil
}

// Resign implements store.Store.
func (s *Store) Resign(ctx context.Context, role, holder string) error {
	if _, err := s.pool.Exec(ctx, "UPDATE weft_leaders SET expires_at = 0 WHERE name = $1 AND holder = $2", role, holder); err != nil {
		return fmt.Errorf("resign %s: %w", role, err)
	}
	return nil
}

// PutSchedule implements store.Store.
func (s *Store) PutSchedule(ctx context.Context, sc store.Schedule) error {
	nowUS := micros(s.now())
	_, err := s.pool.Exec(ctx, `INSERT INTO weft_schedules (`+sqlbackend.ScheduleColumns+`)
		VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9, $10, $11, $12, $12)
		ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, kind = excluded.kind, queue = excluded.queue,
			args = excluded.args, priority = excluded.priority, max_attempts = excluded.max_attempts,
			metadata = excluded.metadata, missed = excluded.missed, paused = excluded.paused,
			next_at = excluded.next_at, updated_at = excluded.updated_at`,
		sc.Name, sc.Spec, sc.Kind, sc.Queue, string(sc.Args), sc.Priority, sc.MaxAttempts,
		nullText(sc.Metadata), string(sc.Missed), sc.Paused, micros(sc.NextAt), nowUS)
	if err != nil {
		return fmt.Errorf("put schedule %s: %w", sc.Name, err)
	}
	return nil
}

// PauseSchedule implements store.Store.
func (s *Store) PauseSchedule(ctx context.Context, name string, paused bool) error {
	tag, err := s.pool.Exec(ctx, "UPDATE weft_schedules SET paused = $1, updated_at = $2 WHERE name = $3", paused, micros(s.now()), name)
	return scheduleResult(name, tag.RowsAffected(), err)
}

// DeleteSchedule implements store.Store.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM weft_schedules WHERE name = $1", name)
	return scheduleResult(name, tag.RowsAffected(), err)
}

func scheduleResult(name string, n int64, err error) error {
	if err != nil {
		return fmt.Errorf("schedule %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
	}
	return nil
}

// AdvanceSchedule implements store.Store.
func (s *Store) AdvanceSchedule(ctx context.Context, name string, from, to time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, "UPDATE weft_schedules SET next_at = $1 WHERE name = $2 AND next_at = $3", micros(to), name, micros(from))
	if err != nil {
		return false, fmt.Errorf("advance schedule %s: %w", name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Maintain implements store.Store: it folds the count deltas into
// weft_counts, in one transaction, so that Stats reads few rows.
func (s *Store) Maintain(ctx context.Context) error {
	return s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		_, err := tx.Exec(ctx, `WITH folded AS (DELETE FROM weft_count_deltas RETURNING queue, state, n)
			INSERT INTO weft_counts (queue, state, n)
			SELECT queue, state, sum(n) FROM folded GROUP BY queue, state ORDER BY queue, state
			ON CONFLICT (queue, state) DO UPDATE SET n = weft_counts.n + excluded.n`)
		if err != nil {
			return false, fmt.Errorf("fold counts: %w", err)
		}
		return false, nil
	})
}
