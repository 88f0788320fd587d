package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// finishSQL records a batch of outcomes, each under its epoch, in one
// statement; the VALUES rows are (id, epoch, state, result, error, run_at,
// refund, started_at), started_at being set when the attempt's start is
// recorded with its outcome. A pending outcome of a task whose cancellation was requested
// becomes cancelled instead: the request wins over a retry.
const finishSQL = `UPDATE weft_tasks SET
	state = CASE WHEN v.column3 = 'pending' AND cancel_requested = 1 THEN 'cancelled' ELSE v.column3 END,
	result = coalesce(v.column4, result),
	errors = CASE WHEN v.column5 IS NULL THEN errors ELSE json_insert(coalesce(errors, '[]'), '$[#]', json(v.column5)) END,
	run_at = coalesce(v.column6, run_at),
	attempt = attempt - v.column7,
	attempted_at = coalesce(v.column8, attempted_at),
	lease_expires_at = NULL,
	lease_owner = CASE WHEN v.column3 = 'pending' THEN NULL ELSE lease_owner END,
	finalized_at = CASE WHEN v.column3 = 'pending' AND cancel_requested = 0 THEN NULL ELSE ?1 END
	FROM (VALUES %s) AS v
	WHERE weft_tasks.id = v.column1 AND weft_tasks.lease_epoch = v.column2 AND weft_tasks.state = 'running'
	RETURNING weft_tasks.id, weft_tasks.lease_epoch, weft_tasks.state, weft_tasks.attempt, weft_tasks.queue, weft_tasks.flow_id, weft_tasks.limited`

// completeSQL is finishSQL for the common case, completions, whose VALUES
// rows are only (id, epoch, result, started_at): half the arguments and no
// conditional state.
const completeSQL = `UPDATE weft_tasks SET
	state = 'completed', result = v.column3, attempted_at = coalesce(v.column4, attempted_at),
	lease_expires_at = NULL, finalized_at = ?1
	FROM (VALUES %s) AS v
	WHERE weft_tasks.id = v.column1 AND weft_tasks.lease_epoch = v.column2 AND weft_tasks.state = 'running'
	RETURNING weft_tasks.id, weft_tasks.lease_epoch, weft_tasks.state, weft_tasks.attempt, weft_tasks.queue, weft_tasks.flow_id, weft_tasks.limited`

// finishChunk bounds the outcomes of one finish statement.
const finishChunk = 128

// finishStmt is one finish statement: its arguments, and for each VALUES
// row the index of its outcome.
type finishStmt struct {
	query string
	a     args
	idx   []int
}

// Finish implements store.Store.
func (s *Store) Finish(ctx context.Context, outcomes []store.Outcome) ([]store.FinishResult, error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	if err := store.CheckOutcomes(outcomes); err != nil {
		return nil, err
	}
	// all keeps the batch whole, for the followers of those that ended.
	all := outcomes
	outcomes, waits, waitIdx := store.SplitWaits(outcomes)
	// The statements are built here, before the write is queued, so the
	// writer's critical section only executes them.
	nowUS := micros(s.now())
	var stmts []finishStmt
	var completed, other *finishStmt
	flush := func(st **finishStmt, tmpl string, width int) {
		if *st != nil {
			(*st).query = fmt.Sprintf(tmpl, placeholders(len((*st).idx), width))
			stmts = append(stmts, **st)
			*st = nil
		}
	}
	for i, o := range outcomes {
		var result, startedAt driver.Value
		if len(o.Result) > 0 {
			result = []byte(o.Result)
		}
		if !o.StartedAt.IsZero() {
			startedAt = micros(o.StartedAt)
		}
		switch o.State {
		case store.StateCompleted:
			if completed == nil {
				completed = &finishStmt{a: args{{Ordinal: 1, Value: nowUS}}}
			}
			completed.a.add(o.TaskID, o.Epoch, result, startedAt)
			completed.idx = append(completed.idx, i)
			if len(completed.idx) == finishChunk {
				flush(&completed, completeSQL, 4)
			}
			continue
		}
		var errJSON, runAt driver.Value
		if o.Error != nil {
			b, err := json.Marshal(o.Error)
			if err != nil {
				return nil, fmt.Errorf("encode attempt error: %w", err)
			}
			errJSON = string(b)
		}
		if o.State == store.StatePending {
			runAt = micros(o.RunAt)
		}
		refund := int64(0)
		if o.Refund {
			refund = 1
		}
		if other == nil {
			other = &finishStmt{a: args{{Ordinal: 1, Value: nowUS}}}
		}
		other.a.add(o.TaskID, o.Epoch, string(o.State), result, errJSON, runAt, refund, startedAt)
		other.idx = append(other.idx, i)
		if len(other.idx) == finishChunk {
			flush(&other, finishSQL, 8)
		}
	}
	flush(&completed, completeSQL, 4)
	flush(&other, finishSQL, 8)
	var results, waitResults []store.FinishResult
	err := s.writer.do(ctx, func(q *execer) error {
		if len(waits) > 0 {
			var err error
			if waitResults, err = suspend(q, waits, nowUS); err != nil {
				return err
			}
		}
		applied := make(map[store.LeaseKey]store.FinishedRow, len(outcomes))
		for _, st := range stmts {
			if err := finishRows(q, st.query, st.a, applied); err != nil {
				return err
			}
		}
		missing, err := missingTasks(q, store.Unapplied(outcomes, applied))
		if err != nil {
			return err
		}
		finished := sqlbackend.FinishedMembers(applied)
		// Read before ReconcileFinish, which takes from applied.
		released, held := sqlbackend.LimitedFinished(outcomes, applied)
		var ch store.Change
		results, ch = store.ReconcileFinish(outcomes, applied, missing)
		if len(released) > 0 {
			woke, err := flows().Release(context.Background(), sqlbackend.StdTx(q.conn), released, held, nowUS)
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
	if err != nil {
		return nil, err
	}
	results = store.JoinWaits(results, waitResults, waitIdx)
	sqlbackend.NotifyEnded(&s.followers, all, results)
	return results, nil
}

func finishRows(q *execer, query string, a args, applied map[store.LeaseKey]store.FinishedRow) error {
	err := q.rawQuery(query, a, func(v []driver.Value) error {
		applied[store.LeaseKey{TaskID: asString(v[0]), Epoch: asInt64(v[1])}] = store.FinishedRow{
			State: store.State(asString(v[2])), Attempt: int(asInt64(v[3])), Queue: asString(v[4]), FlowID: asString(v[5]),
			Limited: asInt64(v[6]) != 0}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	return nil
}

// missingTasks says which of ids name no task: refused outcomes are rare,
// so this costs nothing on the common path.
func missingTasks(q *execer, ids []string) (map[string]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	missing := make(map[string]bool, len(ids))
	for _, id := range ids {
		var one int
		err := q.queryRow("SELECT 1 FROM weft_tasks WHERE id = +?", id).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			missing[id] = true
		case err != nil:
			return nil, fmt.Errorf("finish: %w", err)
		}
	}
	return missing, nil
}
