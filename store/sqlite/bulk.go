package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// Bulk implements store.Store. A batch is selected, planned and written
// in one transaction of the writer, so every task changes as the
// single-task action would change it at that moment; a dry run selects
// from the read pool instead.
func (s *Store) Bulk(ctx context.Context, p store.BulkParams) (store.BulkResult, error) {
	now := s.now()
	bq, err := p.Query(now)
	if err != nil {
		return store.BulkResult{}, err
	}
	query, args := bulkSelect(bq)
	if bq.DryRun {
		rows, err := s.rdb.QueryContext(ctx, "SELECT id"+query, args...)
		if err != nil {
			return store.BulkResult{}, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		defer rows.Close()
		n, last := 0, ""
		for rows.Next() {
			if err := rows.Scan(&last); err != nil {
				return store.BulkResult{}, fmt.Errorf("bulk %s: %w", bq.Action, err)
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return store.BulkResult{}, fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		return bq.Result(n, 0, last), nil
	}
	nowUS := micros(now)
	var res store.BulkResult
	err = s.writer.do(ctx, func(q *execer) error {
		rows, err := q.query("SELECT "+taskColumns+query, args...)
		if err != nil {
			return fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		tasks, err := scanTasks(rows)
		if err != nil {
			return fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		holders, err := keyHolders(q, bq.Action, tasks)
		if err != nil {
			return err
		}
		plan := store.PlanBulk(bq.Action, tasks, holders, now)
		if err := applyBulk(q, plan, nowUS); err != nil {
			return fmt.Errorf("bulk %s: %w", bq.Action, err)
		}
		last := ""
		if len(tasks) > 0 {
			last = tasks[len(tasks)-1].ID
		}
		res = bq.Result(len(tasks), plan.Changed(), last)
		if err := applyChange(q, plan.Change, nowUS); err != nil {
			return err
		}
		return resolveFinished(q, sqlbackend.Moved(plan.FlowCancels), nowUS)
	})
	if err != nil {
		return store.BulkResult{}, err
	}
	return res, nil
}

// bulkSelect is the FROM, WHERE, ORDER BY and LIMIT of a batch's
// selection, with its arguments.
func bulkSelect(bq store.BulkQuery) (string, []any) {
	where, args := taskWhere(bq.Filter)
	if bq.After != "" {
		where, args = append(where, "id > +?"), append(args, bq.After)
	}
	if !bq.ScheduledAfter.IsZero() {
		where, args = append(where, "run_at > +?"), append(args, micros(bq.ScheduledAfter))
	}
	// The filter always has states, so where is never empty.
	return " FROM weft_tasks WHERE " + strings.Join(where, " AND ") + " ORDER BY id LIMIT ?", append(args, bq.Limit)
}

// keyHolders finds, for a retry, which task holds each unique key of the
// batch now, the way Retry checks one key.
func keyHolders(q *execer, a store.BulkAction, tasks []*store.Task) (map[string]string, error) {
	holders := map[string]string{}
	if a != store.BulkRetry {
		return holders, nil
	}
	for _, t := range tasks {
		if t.UniqueKey == "" {
			continue
		}
		if _, seen := holders[t.UniqueKey]; seen {
			continue
		}
		var holder string
		err := q.queryRow("SELECT id FROM weft_tasks WHERE unique_key = +? AND "+uniqueHeld, t.UniqueKey).Scan(&holder)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("bulk retry: check unique key: %w", err)
		}
		if holder != "" {
			holders[t.UniqueKey] = holder
		}
	}
	return holders, nil
}

// applyBulk writes a plan's rows, one statement per group.
func applyBulk(q *execer, p store.BulkPlan, nowUS int64) error {
	byIDs := func(query string, ids []string, a ...any) error {
		if len(ids) == 0 {
			return nil
		}
		_, err := q.exec(query+" WHERE id IN (SELECT value FROM json_each(?))", append(a, jsonStrings(ids))...)
		return err
	}
	if err := byIDs("UPDATE weft_tasks SET state = ?, finalized_at = ?", p.Cancel, string(store.StateCancelled), nowUS); err != nil {
		return err
	}
	if err := byIDs("UPDATE weft_tasks SET cancel_requested = 1", p.Request); err != nil {
		return err
	}
	if err := byIDs("UPDATE weft_tasks SET run_at = ?", p.RunNow, nowUS); err != nil {
		return err
	}
	if len(p.Retry) > 0 {
		// Each row as RetryRow left it: the epoch and attempts differ by
		// task, the rest is the same for all.
		rows := make([][3]any, len(p.Retry))
		for i, t := range p.Retry {
			rows[i] = [3]any{t.ID, t.LeaseEpoch, t.MaxAttempts}
		}
		b, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		if _, err := q.exec(`UPDATE weft_tasks SET state = ?, run_at = ?, finalized_at = NULL, parked_on = NULL, blocked_reason = NULL, cancel_requested = 0,
			lease_owner = NULL, lease_expires_at = NULL, lease_epoch = r.epoch, max_attempts = r.max_attempts
			FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS epoch,
				json_extract(value, '$[2]') AS max_attempts FROM json_each(?)) AS r
			WHERE weft_tasks.id = r.id`, string(store.StatePending), nowUS, string(b)); err != nil {
			return err
		}
	}
	if len(p.Delete) > 0 {
		if err := byIDs("DELETE FROM weft_tasks", p.Delete); err != nil {
			return err
		}
		if _, err := q.exec("DELETE FROM weft_events WHERE task_id IN (SELECT value FROM json_each(?))", jsonStrings(p.Delete)); err != nil {
			return err
		}
	}
	return nil
}

// jsonStrings encodes ids as a JSON array, the shape in which one
// statement takes a list of any length (through json_each).
func jsonStrings(ids []string) string {
	b, _ := json.Marshal(ids) // a []string always encodes
	return string(b)
}
