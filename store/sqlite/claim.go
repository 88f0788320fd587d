package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// Claim implements store.Store. One UPDATE claims across every requested
// queue: each queue contributes its own index-ordered, limited subquery,
// empty while the queue is paused.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Task, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if err := store.CheckLabels(req.Labels); err != nil {
		return nil, err
	}
	gated, err := s.gated.Of(ctx, flows(), sqlbackend.StdDB(s.rdb), req.Queues)
	if err != nil {
		return nil, err
	}
	plain, gatedQueues := sqlbackend.SplitGated(req.Queues, gated)
	var (
		parts   []string
		anyArgs []driver.Value
	)
	now := s.now()
	nowUS := micros(now)
	expires := fromMicros(micros(now.Add(req.LeaseTTL)))
	var attemptedAt driver.Value = nowUS
	if req.StartLater {
		attemptedAt = nil
	}
	anyArgs = append(anyArgs, req.Owner, micros(expires), attemptedAt)
	kindFilter := kindIn(len(req.Kinds))
	for _, qc := range plain {
		if qc.Limit <= 0 {
			continue
		}
		// The limit is written into the statement: with a bound LIMIT,
		// SQLite evaluates the IN subquery far more slowly (measured 5x for
		// a one-row claim).
		//
		// The pause check refers to no row of weft_tasks: SQLite evaluates
		// it once, before the scan, and skips a paused queue's scan.
		parts = append(parts, `SELECT rowid FROM (SELECT rowid FROM weft_tasks
			WHERE state = 'pending' AND gate IS NULL AND queue = +? AND run_at <= +?`+kindFilter+`
			AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = +? AND paused = 1)
			ORDER BY priority DESC, run_at, rowid LIMIT `+strconv.Itoa(qc.Limit)+`)`)
		anyArgs = append(anyArgs, qc.Queue, nowUS)
		for _, k := range req.Kinds {
			anyArgs = append(anyArgs, k)
		}
		anyArgs = append(anyArgs, qc.Queue)
	}
	attempted := fromMicros(nowUS)
	if req.StartLater {
		attempted = time.Time{}
	}
	var claimed []*store.Task
	if len(parts) > 0 {
		a := make(args, 0, len(anyArgs))
		a.add(anyArgs...)
		err := s.writer.doLight(ctx, func(q *execer) error {
			var err error
			claimed, err = claimRows(q, strings.Join(parts, " UNION ALL "), a, req, attempted, expires, false)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if len(gatedQueues) > 0 {
		more, err := s.claimGated(ctx, req, gatedQueues, nowUS, attempted, expires)
		if err != nil {
			return nil, err
		}
		claimed = append(claimed, more...)
	}
	store.SortClaimed(claimed)
	return claimed, nil
}

// claimGated claims from queues that hold gated tasks: first the tasks
// set aside for keys that have room again are made claimable, then the
// claim admits what the limits allow (sqlbackend.FlowStore.ClaimGated).
func (s *Store) claimGated(ctx context.Context, req store.ClaimRequest, queues []store.QueueClaim, nowUS int64, attempted, expires time.Time) ([]*store.Task, error) {
	err := s.writer.do(ctx, func(q *execer) error {
		_, err := flows().Unpark(context.Background(), sqlbackend.StdTx(q.conn), nowUS)
		return err
	})
	if err != nil {
		return nil, err
	}
	var claimed []*store.Task
	err = s.writer.do(ctx, func(q *execer) error {
		var err error
		claimed, err = flows().ClaimGated(context.Background(), sqlbackend.StdTx(q.conn), req, queues, nowUS, func(ids []string) ([]*store.Task, error) {
			b, _ := json.Marshal(ids)
			var a args
			a.add(req.Owner, micros(expires), nullTime(attempted), string(b))
			return claimRows(q, `SELECT rowid FROM weft_tasks WHERE id IN (SELECT value FROM json_each(?4))`, a, req, attempted, expires, true)
		})
		return err
	})
	return claimed, err
}

func nullTime(t time.Time) driver.Value {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

// claimRows claims the pending tasks whose rowids rowids selects: it
// leases them, moves their counts and writes their started events. a
// holds the owner, the lease's expiry and the attempt time as ?1 to ?3,
// then rowids' own arguments. withGate reads the tasks' gates too.
func claimRows(q *execer, rowids string, a args, req store.ClaimRequest, attempted, expires time.Time, withGate bool) ([]*store.Task, error) {
	resumable := "1"
	if len(req.NotResumable) > 0 {
		quoted := make([]string, len(req.NotResumable))
		for i, k := range req.NotResumable {
			// Valid names hold no quote, so they are safe as literals.
			quoted[i] = "'" + k + "'"
		}
		resumable = "kind NOT IN (" + strings.Join(quoted, ",") + ")"
	}
	columns := claimColumns
	if withGate {
		columns += ", gate"
	}
	query := `UPDATE weft_tasks SET state = 'running', attempt = attempt + 1, lease_epoch = lease_epoch + 1,
		lease_owner = ?, lease_expires_at = ?, attempted_at = ?, resumable = ` + resumable + `
		WHERE rowid IN (` + rowids + `) RETURNING ` + columns
	var claimed []*store.Task
	// The started events are copied from the claimed rows in SQL; only
	// their rowids, as one JSON array, cross from Go.
	ids := []byte{'['}
	err := q.rawQuery(query, a, func(v []driver.Value) error {
		t, err := claimedTask(v, req.Owner, expires, attempted)
		if err != nil {
			return err
		}
		if withGate {
			if err := sqlbackend.ScanGate(sql.NullString{String: asString(v[16]), Valid: v[16] != nil}, t); err != nil {
				return err
			}
		}
		if len(claimed) > 0 {
			ids = append(ids, ',')
		}
		ids = strconv.AppendInt(ids, asInt64(v[0]), 10)
		claimed = append(claimed, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if len(claimed) == 0 {
		return nil, nil
	}
	moved := store.CountMoves{}
	for _, t := range claimed {
		moved.Move(t.Queue, store.StatePending, store.StateRunning, 1)
	}
	if err := applyCounts(context.Background(), q.conn, moved); err != nil {
		return nil, err
	}
	if req.StartLater {
		return claimed, nil
	}
	var ev args
	ev.add(string(append(ids, ']')))
	if err := q.rawExec(`INSERT INTO weft_events (task_id, type, attempt, at)
		SELECT id, 'started', attempt, attempted_at FROM weft_tasks
		WHERE rowid IN (SELECT value FROM json_each(?))`, ev); err != nil {
		return nil, fmt.Errorf("claim: insert started events: %w", err)
	}
	return claimed, nil
}
