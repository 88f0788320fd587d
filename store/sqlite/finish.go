package sqlite

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"

	"github.com/weftworks/weft/store"
)

// finishSQL records a batch of outcomes, each under its epoch, in one
// statement; the VALUES rows are (id, epoch, state, result, error, run_at,
// refund). A pending outcome of a task whose cancellation was requested
// becomes cancelled instead: the request wins over a retry.
const finishSQL = `UPDATE weft_tasks SET
	state = CASE WHEN v.column3 = 'pending' AND cancel_requested = 1 THEN 'cancelled' ELSE v.column3 END,
	result = coalesce(v.column4, result),
	errors = CASE WHEN v.column5 IS NULL THEN errors ELSE json_insert(coalesce(errors, '[]'), '$[#]', json(v.column5)) END,
	run_at = coalesce(v.column6, run_at),
	attempt = attempt - v.column7,
	lease_expires_at = NULL,
	lease_owner = CASE WHEN v.column3 = 'pending' THEN NULL ELSE lease_owner END,
	finalized_at = CASE WHEN v.column3 = 'pending' AND cancel_requested = 0 THEN NULL ELSE ?1 END
	FROM (VALUES %s) AS v
	WHERE weft_tasks.id = v.column1 AND weft_tasks.lease_epoch = v.column2 AND weft_tasks.state = 'running'
	RETURNING weft_tasks.id, weft_tasks.lease_epoch, weft_tasks.state, weft_tasks.attempt, weft_tasks.queue`

// completeSQL is finishSQL for the common case, completions, whose VALUES
// rows are only (id, epoch, result): a third of the arguments and no
// conditional columns.
const completeSQL = `UPDATE weft_tasks SET
	state = 'completed', result = v.column3, lease_expires_at = NULL, finalized_at = ?1
	FROM (VALUES %s) AS v
	WHERE weft_tasks.id = v.column1 AND weft_tasks.lease_epoch = v.column2 AND weft_tasks.state = 'running'
	RETURNING weft_tasks.id, weft_tasks.lease_epoch, weft_tasks.state, weft_tasks.attempt, weft_tasks.queue`

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
func (s *Store) Finish(ctx context.Context, outcomes []store.Outcome) ([]error, error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	// The statements are built here, before the write is queued, so the
	// writer's critical section only executes them.
	nowUS := micros(s.now())
	refunds := make([]int, len(outcomes))
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
		var result driver.Value
		if len(o.Result) > 0 {
			result = []byte(o.Result)
		}
		switch o.State {
		case store.StateCompleted:
			if completed == nil {
				completed = &finishStmt{a: args{{Ordinal: 1, Value: nowUS}}}
			}
			completed.a.add(o.TaskID, o.Epoch, result)
			completed.idx = append(completed.idx, i)
			if len(completed.idx) == finishChunk {
				flush(&completed, completeSQL, 3)
			}
			continue
		case store.StateFailed, store.StateCancelled, store.StatePending:
		default:
			return nil, &store.ValidationError{Index: i, Field: "state", Message: fmt.Sprintf("%q is not an outcome state", o.State)}
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
		if o.Refund {
			refunds[i] = 1
		}
		if other == nil {
			other = &finishStmt{a: args{{Ordinal: 1, Value: nowUS}}}
		}
		other.a.add(o.TaskID, o.Epoch, string(o.State), result, errJSON, runAt, int64(refunds[i]))
		other.idx = append(other.idx, i)
		if len(other.idx) == finishChunk {
			flush(&other, finishSQL, 7)
		}
	}
	flush(&completed, completeSQL, 3)
	flush(&other, finishSQL, 7)
	results := make([]error, len(outcomes))
	err := s.writer.do(ctx, func(q *execer) error {
		events := make([]event, 0, len(outcomes))
		moved := counts{}
		for _, st := range stmts {
			applied, err := finishRows(q, st.query, len(st.idx), st.a)
			if err != nil {
				return err
			}
			for _, i := range st.idx {
				o := outcomes[i]
				key := leaseKey{o.TaskID, o.Epoch}
				res, ok := applied[key]
				if !ok {
					results[i] = fmt.Errorf("task %s epoch %d: %w", o.TaskID, o.Epoch, store.ErrLeaseLost)
					continue
				}
				// A duplicate outcome in the batch was not applied twice.
				delete(applied, key)
				results[i] = nil
				typ, data := o.Event, o.EventData
				if res.state != o.State {
					typ, data = store.EventCancelled, nil
				}
				if res.state == store.StatePending {
					q.wake = true
				}
				events = append(events, event{taskID: o.TaskID, typ: typ, attempt: res.attempt + refunds[i], data: data})
				moved.move(res.queue, store.StateRunning, res.state, 1)
			}
		}
		if err := moved.apply(context.Background(), q.conn); err != nil {
			return err
		}
		return insertEvents(q, events, nowUS)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

type finished struct {
	state   store.State
	attempt int
	queue   string
}

type leaseKey struct {
	id    string
	epoch int64
}

func finishRows(q *execer, query string, n int, a args) (map[leaseKey]finished, error) {
	applied := make(map[leaseKey]finished, n)
	err := q.rawQuery(query, a, func(v []driver.Value) error {
		applied[leaseKey{asString(v[0]), asInt64(v[1])}] = finished{state: store.State(asString(v[2])), attempt: int(asInt64(v[3])), queue: asString(v[4])}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finish: %w", err)
	}
	return applied, nil
}
