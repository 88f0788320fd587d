package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// ExtendLeases implements store.Store.
func (s *Store) ExtendLeases(ctx context.Context, owner string, ttl time.Duration) ([]store.Lease, error) {
	// Rows are locked in id order, as Finish locks them, so a renewal and a
	// batch of outcomes of one node never deadlock.
	rows, err := s.pool.Query(ctx, `WITH held AS (SELECT id FROM weft_tasks
			WHERE lease_owner = $2 AND state = 'running' ORDER BY id FOR UPDATE)
		UPDATE weft_tasks t SET lease_expires_at = $1 FROM held
		WHERE t.id = held.id AND t.state = 'running' RETURNING t.id, t.lease_epoch, t.cancel_requested`,
		micros(s.now().Add(ttl)), owner)
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	leases, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Lease, error) {
		var l store.Lease
		err := r.Scan(&l.TaskID, &l.Epoch, &l.CancelRequested)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return leases, nil
}

// ExtendLease implements store.Store.
func (s *Store) ExtendLease(ctx context.Context, taskID string, epoch int64, ttl time.Duration) (bool, error) {
	var cancel bool
	err := s.pool.QueryRow(ctx, `UPDATE weft_tasks SET lease_expires_at = $1
		WHERE id = $2 AND lease_epoch = $3 AND state = 'running' RETURNING cancel_requested`,
		micros(s.now().Add(ttl)), taskID, epoch).Scan(&cancel)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, s.leaseLostOrMissing(ctx, taskID, epoch)
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat: %w", err)
	}
	return cancel, nil
}

// leaseLostOrMissing tells a stale epoch from an unknown task.
func (s *Store) leaseLostOrMissing(ctx context.Context, taskID string, epoch int64) error {
	return sqlbackend.LeaseLostOrMissing(s.pool.QueryRow(ctx, "SELECT 1 FROM weft_tasks WHERE id = $1", taskID), taskID, epoch)
}

// Progress implements store.Store.
func (s *Store) Progress(ctx context.Context, taskID string, epoch int64, data json.RawMessage) error {
	if err := store.CheckProgress(data, s.opts.Limits); err != nil {
		return err
	}
	nowUS := micros(s.now())
	// The insert is the transaction's only write: pg_current_xact_id
	// gives it its id before the row takes a seq, which EventsAfter's
	// horizon relies on (see events.go).
	tag, err := s.pool.Exec(ctx, `INSERT INTO weft_events (task_id, type, attempt, at, data)
		SELECT id, 'progress', attempt, $3, $4::jsonb FROM weft_tasks
		WHERE id = $1 AND lease_epoch = $2 AND state = 'running' AND pg_current_xact_id() IS NOT NULL`, taskID, epoch, nowUS, nullText(data))
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return s.leaseLostOrMissing(ctx, taskID, epoch)
	}
	return nil
}

// Cancel implements store.Store.
func (s *Store) Cancel(ctx context.Context, taskID string) (*store.Task, error) {
	nowUS := micros(s.now())
	var t *store.Task
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		t, err = scanTask(tx.QueryRow(ctx, "SELECT "+taskColumns+" FROM weft_tasks WHERE id = $1 FOR UPDATE", taskID))
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
		}
		if err != nil {
			return false, fmt.Errorf("cancel: %w", err)
		}
		from := t.State
		action, ch, err := store.PlanCancel(t, fromMicros(nowUS))
		if err != nil {
			return false, err
		}
		switch action {
		case store.CancelNow:
			_, err = tx.Exec(ctx, "UPDATE weft_tasks SET state = $1, finalized_at = $2 WHERE id = $3", string(t.State), nowUS, taskID)
		case store.CancelRequest:
			// The owner learns of it from the notification.
			ch.Wake = true
			_, err = tx.Exec(ctx, "UPDATE weft_tasks SET cancel_requested = true WHERE id = $1", taskID)
		}
		if err != nil {
			return false, fmt.Errorf("cancel: %w", err)
		}
		notify, err := applyChange(ctx, tx, ch, nowUS)
		if err != nil || action != store.CancelNow || t.FlowID == "" {
			return notify, err
		}
		woke, err := resolveFinished(ctx, tx, []sqlbackend.Finished{{TaskID: t.ID, FlowID: t.FlowID, From: from, State: t.State}}, nowUS)
		return notify || woke, err
	})
	if err == nil && t.State.Terminal() {
		s.followers.Notify(taskID)
	}
	return store.TaskResult(t, err, store.ErrAlreadyFinished)
}

// Retry implements store.Store. The task's row is locked first, so that no
// concurrent Retry, Cancel or Finish changes it in between. Another task
// may still take its unique key at the same moment: the unique index is
// the judge, and a violation rolls the whole retry back.
func (s *Store) Retry(ctx context.Context, taskID string) (*store.Task, error) {
	nowUS := micros(s.now())
	var t *store.Task
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		t, err = scanTask(tx.QueryRow(ctx, "SELECT "+taskColumns+" FROM weft_tasks WHERE id = $1 FOR UPDATE", taskID))
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("retry: task %s: %w", taskID, store.ErrNotFound)
		}
		if err != nil {
			return false, fmt.Errorf("retry: %w", err)
		}
		if t.FlowID != "" {
			// A member is retried with what its failure skipped or
			// cancelled downstream.
			ch, err := flows().Reopen(ctx, pgxTx{tx}, t.FlowID, []string{t.ID}, fromMicros(nowUS))
			if err != nil {
				return false, err
			}
			notify, err := applyChange(ctx, tx, ch, nowUS)
			if err != nil {
				return false, err
			}
			t, err = scanTask(tx.QueryRow(ctx, "SELECT "+taskColumns+" FROM weft_tasks WHERE id = $1", taskID))
			if err != nil {
				return false, fmt.Errorf("retry: %w", err)
			}
			return notify, nil
		}
		// The unique index is the judge of a held key: the update below
		// fails on a violation.
		ch, err := store.PlanRetry(t, "")
		if err != nil {
			return false, err
		}
		retried := *t
		store.RetryRow(&retried, fromMicros(nowUS))
		_, err = tx.Exec(ctx, `UPDATE weft_tasks SET state = $2, run_at = $3, finalized_at = NULL, parked_on = NULL, blocked_reason = NULL,
			cancel_requested = false, lease_owner = NULL, lease_expires_at = NULL, lease_epoch = $4, max_attempts = $5
			WHERE id = $1`, taskID, string(retried.State), nowUS, retried.LeaseEpoch, retried.MaxAttempts)
		if isUniqueViolation(err) {
			return false, fmt.Errorf("retry: task %s: its unique key %q is now held by another task: %w", taskID, t.UniqueKey, store.ErrConflict)
		}
		if err != nil {
			return false, fmt.Errorf("retry: %w", err)
		}
		t = &retried
		return applyChange(ctx, tx, ch, nowUS)
	})
	return store.TaskResult(t, err, store.ErrConflict)
}

// CancelRequests implements store.Store.
func (s *Store) CancelRequests(ctx context.Context, owner string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM weft_tasks
		WHERE lease_owner = $1 AND state = 'running' AND cancel_requested`, owner)
	if err != nil {
		return nil, fmt.Errorf("cancel requests: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("cancel requests: %w", err)
	}
	return ids, nil
}

// Rescue implements store.Store.
func (s *Store) Rescue(ctx context.Context, p store.RescueParams) (int, error) {
	now := s.now()
	nowUS := micros(now)
	limit, deadBefore := sqlbackend.RescueBounds(p, now)
	n := 0
	var ended []string
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		ended = ended[:0]
		rows, err := tx.Query(ctx, `UPDATE weft_tasks SET
			state = CASE WHEN cancel_requested THEN 'cancelled'
				WHEN attempt >= max_attempts OR NOT resumable THEN 'failed' ELSE 'pending' END,
			lease_epoch = lease_epoch + 1,
			lease_expires_at = NULL,
			lease_owner = NULL,
			run_at = $1,
			errors = coalesce(errors, '[]'::jsonb) || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $2::text,
				'error', CASE WHEN NOT resumable THEN 'owner died: the task may not be resumed'
					WHEN lease_expires_at < $1 THEN 'lease expired: the worker stopped renewing it'
					ELSE 'owner died: node ' || lease_owner || ' stopped sending heartbeats' END)),
			finalized_at = CASE WHEN cancel_requested OR attempt >= max_attempts OR NOT resumable THEN $1::bigint END
			WHERE id IN (SELECT id FROM weft_tasks WHERE state = 'running' AND (lease_expires_at < $1
				OR lease_owner IN (SELECT id FROM weft_nodes WHERE heartbeat_at < $3)) LIMIT $4 FOR UPDATE SKIP LOCKED)
			RETURNING id, state, attempt, errors->-1->>'error', queue, flow_id, limited`,
			nowUS, now.UTC().Format(time.RFC3339Nano), deadBefore, limit)
		if err != nil {
			return false, fmt.Errorf("rescue: %w", err)
		}
		var ch store.Change
		var finished []sqlbackend.Finished
		var limitedIDs []string
		for rows.Next() {
			var (
				id, state, cause, queue string
				attempt                 int
				flowID                  *string
				limited                 bool
			)
			if err := rows.Scan(&id, &state, &attempt, &cause, &queue, &flowID, &limited); err != nil {
				rows.Close()
				return false, fmt.Errorf("rescue: %w", err)
			}
			if limited {
				limitedIDs = append(limitedIDs, id)
			}
			ch.Rescued(id, queue, store.State(state), attempt, cause)
			if to := store.State(state); to.Terminal() {
				ended = append(ended, id)
				if flowID != nil {
					finished = append(finished, sqlbackend.Finished{TaskID: id, FlowID: *flowID, From: store.StateRunning, State: to})
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("rescue: %w", err)
		}
		n = len(ch.Events)
		if p.DeadAfter > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM weft_nodes WHERE heartbeat_at < $1
				AND id NOT IN (SELECT lease_owner FROM weft_tasks WHERE state = 'running' AND lease_owner IS NOT NULL)`, deadBefore); err != nil {
				return false, fmt.Errorf("rescue: remove dead nodes: %w", err)
			}
		}
		notify, err := applyChange(ctx, tx, ch, nowUS)
		if err != nil {
			return false, err
		}
		if len(limitedIDs) > 0 {
			woke, err := flows().Release(ctx, pgxTx{tx}, limitedIDs, nil, nowUS)
			if err != nil {
				return false, err
			}
			notify = notify || woke
		}
		woke, err := resolveFinished(ctx, tx, finished, nowUS)
		return notify || woke, err
	})
	if err == nil {
		s.followers.Notify(ended...)
	}
	return n, err
}
