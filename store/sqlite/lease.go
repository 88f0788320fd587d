package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// ExtendLeases implements store.Store.
func (s *Store) ExtendLeases(ctx context.Context, owner string, ttl time.Duration) ([]store.Lease, error) {
	expires := micros(s.now().Add(ttl))
	var leases []store.Lease
	err := s.writer.doLight(ctx, func(q *execer) error {
		leases = leases[:0]
		rows, err := q.query(`UPDATE weft_tasks SET lease_expires_at = ?
			WHERE lease_owner = +? AND state = 'running' RETURNING id, lease_epoch, cancel_requested`, expires, owner)
		if err != nil {
			return fmt.Errorf("renew leases: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var l store.Lease
			if err := rows.Scan(&l.TaskID, &l.Epoch, &l.CancelRequested); err != nil {
				return fmt.Errorf("renew leases: %w", err)
			}
			leases = append(leases, l)
		}
		return rows.Err()
	})
	return leases, err
}

// ExtendLease implements store.Store.
func (s *Store) ExtendLease(ctx context.Context, taskID string, epoch int64, ttl time.Duration) (bool, error) {
	expires := micros(s.now().Add(ttl))
	var cancel bool
	err := s.writer.doLight(ctx, func(q *execer) error {
		err := q.queryRow(`UPDATE weft_tasks SET lease_expires_at = ?
			WHERE id = +? AND lease_epoch = +? AND state = 'running' RETURNING cancel_requested`,
			expires, taskID, epoch).Scan(&cancel)
		if errors.Is(err, sql.ErrNoRows) {
			return leaseLostOrMissing(q.conn, taskID, epoch)
		}
		return err
	})
	return cancel, err
}

// leaseLostOrMissing tells a stale epoch from an unknown task, inside the
// writer's transaction.
func leaseLostOrMissing(db dbtx, taskID string, epoch int64) error {
	return sqlbackend.LeaseLostOrMissing(db.QueryRowContext(context.Background(), "SELECT 1 FROM weft_tasks WHERE id = +?", taskID), taskID, epoch)
}

// Progress implements store.Store.
func (s *Store) Progress(ctx context.Context, taskID string, epoch int64, data json.RawMessage) error {
	if err := store.CheckProgress(data, s.opts.Limits); err != nil {
		return err
	}
	nowUS := micros(s.now())
	return s.writer.do(ctx, func(q *execer) error {
		var attempt int
		err := q.queryRow("SELECT attempt FROM weft_tasks WHERE id = +? AND lease_epoch = +? AND state = 'running'", taskID, epoch).Scan(&attempt)
		if errors.Is(err, sql.ErrNoRows) {
			return leaseLostOrMissing(q.conn, taskID, epoch)
		}
		if err != nil {
			return fmt.Errorf("progress: %w", err)
		}
		return insertEvents(q, []store.EventRecord{{TaskID: taskID, Type: store.EventProgress, Attempt: attempt, Data: data}}, nowUS)
	})
}

// Cancel implements store.Store.
func (s *Store) Cancel(ctx context.Context, taskID string) (*store.Task, error) {
	nowUS := micros(s.now())
	var t *store.Task
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		t, err = scanTask(q.queryRow("SELECT "+taskColumns+" FROM weft_tasks WHERE id = +?", taskID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
		from := t.State
		action, ch, err := store.PlanCancel(t, fromMicros(nowUS))
		if err != nil {
			return err
		}
		switch action {
		case store.CancelNow:
			_, err = q.exec("UPDATE weft_tasks SET state = ?, finalized_at = ? WHERE id = +?", string(t.State), nowUS, taskID)
		case store.CancelRequest:
			_, err = q.exec("UPDATE weft_tasks SET cancel_requested = 1 WHERE id = +?", taskID)
		}
		if err != nil {
			return fmt.Errorf("cancel: %w", err)
		}
		if err := applyChange(q, ch, nowUS); err != nil {
			return err
		}
		if action == store.CancelNow && t.FlowID != "" {
			return resolveFinished(q, []sqlbackend.Finished{{TaskID: t.ID, FlowID: t.FlowID, From: from, State: t.State}}, nowUS)
		}
		return nil
	})
	if err == nil && t.State.Terminal() {
		s.followers.Notify(taskID)
	}
	return store.TaskResult(t, err, store.ErrAlreadyFinished)
}

// Retry implements store.Store. The writer holds the file's write lock for
// the whole check-and-update, so no other connection can take the task's
// unique key between the check and the update.
func (s *Store) Retry(ctx context.Context, taskID string) (*store.Task, error) {
	nowUS := micros(s.now())
	var t *store.Task
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		t, err = scanTask(q.queryRow("SELECT "+taskColumns+" FROM weft_tasks WHERE id = +?", taskID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("retry: task %s: %w", taskID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("retry: %w", err)
		}
		if t.FlowID != "" {
			// A member is retried with what its failure skipped or
			// cancelled downstream.
			ch, err := flows().Reopen(context.Background(), sqlbackend.StdTx(q.conn), t.FlowID, []string{t.ID}, fromMicros(nowUS))
			if err != nil {
				return err
			}
			if err := applyChange(q, ch, nowUS); err != nil {
				return err
			}
			t, err = scanTask(q.queryRow("SELECT "+taskColumns+" FROM weft_tasks WHERE id = +?", taskID))
			if err != nil {
				return fmt.Errorf("retry: %w", err)
			}
			return nil
		}
		var holder string
		if t.UniqueKey != "" {
			err := q.queryRow("SELECT id FROM weft_tasks WHERE unique_key = +? AND "+uniqueHeld, t.UniqueKey).Scan(&holder)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("retry: check unique key: %w", err)
			}
		}
		ch, err := store.PlanRetry(t, holder)
		if err != nil {
			return err
		}
		store.RetryRow(t, fromMicros(nowUS))
		if _, err := q.exec(`UPDATE weft_tasks SET state = ?, run_at = ?, finalized_at = NULL, parked_on = NULL, blocked_reason = NULL,
			cancel_requested = 0, lease_owner = NULL, lease_expires_at = NULL, lease_epoch = ?, max_attempts = ?
			WHERE id = +?`, string(t.State), nowUS, t.LeaseEpoch, t.MaxAttempts, taskID); err != nil {
			return fmt.Errorf("retry: %w", err)
		}
		return applyChange(q, ch, nowUS)
	})
	return store.TaskResult(t, err, store.ErrConflict)
}

// Rescue implements store.Store.
func (s *Store) Rescue(ctx context.Context, p store.RescueParams) (int, error) {
	now := s.now()
	nowUS := micros(now)
	limit, deadBefore := sqlbackend.RescueBounds(p, now)
	at, _ := json.Marshal(now.UTC())
	n := 0
	var ended []string
	err := s.writer.do(ctx, func(q *execer) error {
		n, ended = 0, ended[:0]
		var ch store.Change
		var finished []sqlbackend.Finished
		var limited []string
		// SET sees the row as it was: the reason is decided from the old
		// lease, and RETURNING reads it back from the error it wrote.
		err := q.rawQuery(`UPDATE weft_tasks SET
			state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
				WHEN attempt >= max_attempts OR resumable = 0 THEN 'failed' ELSE 'pending' END,
			lease_epoch = lease_epoch + 1,
			lease_expires_at = NULL,
			lease_owner = NULL,
			run_at = ?1,
			errors = json_insert(coalesce(errors, '[]'), '$[#]',
				json_object('attempt', attempt, 'at', json(?2), 'error', CASE
					WHEN resumable = 0 THEN 'owner died: the task may not be resumed'
					WHEN lease_expires_at < ?1 THEN 'lease expired: the worker stopped renewing it'
					ELSE 'owner died: node ' || lease_owner || ' stopped sending heartbeats' END)),
			finalized_at = CASE WHEN cancel_requested = 1 OR attempt >= max_attempts OR resumable = 0 THEN ?1 END
			WHERE rowid IN (SELECT rowid FROM weft_tasks WHERE state = 'running' AND (lease_expires_at < +?1
				OR lease_owner IN (SELECT id FROM weft_nodes WHERE heartbeat_at < +?3)) LIMIT `+strconv.Itoa(limit)+`)
			RETURNING id, state, attempt, json_extract(errors, '$[#-1].error'), queue, flow_id, limited`,
			args{{Ordinal: 1, Value: nowUS}, {Ordinal: 2, Value: string(at)}, {Ordinal: 3, Value: deadBefore}},
			func(v []driver.Value) error {
				to := store.State(asString(v[1]))
				ch.Rescued(asString(v[0]), asString(v[4]), to, int(asInt64(v[2])), asString(v[3]))
				if to.Terminal() {
					ended = append(ended, asString(v[0]))
				}
				if asInt64(v[6]) != 0 {
					limited = append(limited, asString(v[0]))
				}
				if flowID := asString(v[5]); flowID != "" && to.Terminal() {
					finished = append(finished, sqlbackend.Finished{TaskID: asString(v[0]), FlowID: flowID, From: store.StateRunning, State: to})
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("rescue: %w", err)
		}
		n = len(ch.Events)
		if p.DeadAfter > 0 {
			if _, err := q.exec(`DELETE FROM weft_nodes WHERE heartbeat_at < +?
				AND id NOT IN (SELECT lease_owner FROM weft_tasks WHERE state = 'running')`, deadBefore); err != nil {
				return fmt.Errorf("rescue: remove dead nodes: %w", err)
			}
		}
		if len(limited) > 0 {
			woke, err := flows().Release(context.Background(), sqlbackend.StdTx(q.conn), limited, nil, nowUS)
			if err != nil {
				return err
			}
			ch.Wake = ch.Wake || woke
		}
		if err := applyChange(q, ch, nowUS); err != nil {
			return err
		}
		return resolveFinished(q, finished, nowUS)
	})
	if err == nil {
		s.followers.Notify(ended...)
	}
	return n, err
}
