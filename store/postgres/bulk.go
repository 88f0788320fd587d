package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// Bulk implements store.Store. A batch's rows are locked in id order (as
// renewals and finishes lock theirs, so they never deadlock), planned, and
// written in one transaction; a dry run selects without locking. A retry
// skips the tasks whose unique key another task holds; should another
// transaction take one of the batch's keys after that check, the unique
// index refuses the batch whole (ErrConflict) and nothing of it is
// written.
func (s *Store) Bulk(ctx context.Context, p store.BulkParams) (store.BulkResult, error) {
	now := s.now()
	bq, err := p.Query(now)
	if err != nil {
		return store.BulkResult{}, err
	}
	w := taskWhere(bq.Filter)
	if bq.After != "" {
		w.add("id > ?", bq.After)
	}
	if !bq.ScheduledAfter.IsZero() {
		w.add("run_at > ?", micros(bq.ScheduledAfter))
	}
	from := " FROM weft_tasks" + w.clause() + " ORDER BY id LIMIT " + strconv.Itoa(bq.Limit)
	if bq.DryRun {
		rows, err := s.pool.Query(ctx, "SELECT id"+from, w.args...)
		if err != nil {
			return store.BulkResult{}, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return store.BulkResult{}, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		return bq.Result(len(ids), 0, last(ids)), nil
	}
	nowUS := micros(now)
	var res store.BulkResult
	err = s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		rows, err := tx.Query(ctx, "SELECT "+taskColumns+from+" FOR UPDATE", w.args...)
		if err != nil {
			return false, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		var (
			tasks []*store.Task
			ids   []string
		)
		for rows.Next() {
			t, err := scanTask(rows)
			if err != nil {
				rows.Close()
				return false, fmt.Errorf("bulk %s: %w", bq.Action, err)
			}
			tasks, ids = append(tasks, t), append(ids, t.ID)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		holders, err := keyHolders(ctx, tx, bq.Action, tasks)
		if err != nil {
			return false, err
		}
		plan := store.PlanBulk(bq.Action, tasks, holders, now)
		if err := applyBulk(ctx, tx, plan, nowUS); err != nil {
			if isUniqueViolation(err) {
				return false, fmt.Errorf("bulk retry: another task took the unique key of a task of the batch meanwhile; nothing of the batch was retried: %w", store.ErrConflict)
			}
			return false, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		res = bq.Result(len(tasks), plan.Changed(), last(ids))
		notify, err := applyChange(ctx, tx, plan.Change, nowUS)
		if err != nil {
			return false, err
		}
		woke, err := resolveFinished(ctx, tx, sqlbackend.Moved(plan.FlowCancels), nowUS)
		return notify || woke, err
	})
	if err != nil {
		return store.BulkResult{}, err
	}
	return res, nil
}

// last is the last of ids, or "".
func last(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[len(ids)-1]
}

// keyHolders finds, for a retry, which task holds each unique key of the
// batch now.
func keyHolders(ctx context.Context, tx pgx.Tx, a store.BulkAction, tasks []*store.Task) (map[string]string, error) {
	holders := map[string]string{}
	if a != store.BulkRetry {
		return holders, nil
	}
	var keys []string
	for _, t := range tasks {
		if t.UniqueKey != "" {
			keys = append(keys, t.UniqueKey)
		}
	}
	if len(keys) == 0 {
		return holders, nil
	}
	rows, err := tx.Query(ctx, "SELECT unique_key, id FROM weft_tasks WHERE unique_key = ANY($1::text[]) AND state IN "+uniqueHeld, keys)
	if err != nil {
		return nil, fmt.Errorf("bulk retry: check unique keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, id string
		if err := rows.Scan(&key, &id); err != nil {
			return nil, fmt.Errorf("bulk retry: check unique keys: %w", err)
		}
		holders[key] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bulk retry: check unique keys: %w", err)
	}
	return holders, nil
}

// applyBulk writes a plan's rows, one statement per group.
func applyBulk(ctx context.Context, tx pgx.Tx, p store.BulkPlan, nowUS int64) error {
	exec := func(ids []string, query string, a ...any) error {
		if len(ids) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, query, append(a, ids)...)
		return err
	}
	if err := exec(p.Cancel, "UPDATE weft_tasks SET state = $1, finalized_at = $2 WHERE id = ANY($3::text[])", string(store.StateCancelled), nowUS); err != nil {
		return err
	}
	if err := exec(p.Request, "UPDATE weft_tasks SET cancel_requested = true WHERE id = ANY($1::text[])"); err != nil {
		return err
	}
	if err := exec(p.RunNow, "UPDATE weft_tasks SET run_at = $1 WHERE id = ANY($2::text[])", nowUS); err != nil {
		return err
	}
	if n := len(p.Retry); n > 0 {
		// Each row as RetryRow left it: the epoch and attempts differ by
		// task, the rest is the same for all.
		ids, epochs, maxes := make([]string, n), make([]int64, n), make([]int32, n)
		for i, t := range p.Retry {
			ids[i], epochs[i], maxes[i] = t.ID, t.LeaseEpoch, int32(t.MaxAttempts)
		}
		if _, err := tx.Exec(ctx, `UPDATE weft_tasks SET state = $1, run_at = $2, finalized_at = NULL, parked_on = NULL, blocked_reason = NULL, cancel_requested = false,
			lease_owner = NULL, lease_expires_at = NULL, lease_epoch = r.epoch, max_attempts = r.max_attempts
			FROM unnest($3::text[], $4::bigint[], $5::int[]) AS r(id, epoch, max_attempts)
			WHERE weft_tasks.id = r.id`, string(store.StatePending), nowUS, ids, epochs, maxes); err != nil {
			return err
		}
	}
	if err := exec(p.Delete, "DELETE FROM weft_tasks WHERE id = ANY($1::text[])"); err != nil {
		return err
	}
	return exec(p.Delete, "DELETE FROM weft_events WHERE task_id = ANY($1::text[])")
}
