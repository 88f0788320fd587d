package sqlbackend

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// flowColumns are what a flow read selects, in scanFlow's order.
const flowColumns = `id, name, metadata, created_at, finalized_at, ` + flowRowColumns

func scanFlow(r Row, now time.Time) (*store.Flow, error) {
	var (
		fl          store.Flow
		md          []byte
		createdAt   int64
		finalizedAt sql.NullInt64
	)
	fr, err := scanFlowRow(r, &fl.ID, &fl.Name, &md, &createdAt, &finalizedAt)
	if err != nil {
		return nil, err
	}
	fl.State, fl.Counts, fl.CancelRequested = fr.state, fr.counts, fr.cancelRequested
	if len(md) > 0 {
		fl.Metadata = json.RawMessage(md)
	}
	fl.CreatedAt = FromMicros(createdAt)
	if finalizedAt.Valid {
		fl.FinalizedAt = FromMicros(finalizedAt.Int64)
	}
	fr.rate.Estimate(&fl, now)
	return &fl, nil
}

// Flow reads one flow.
func (f FlowStore) Flow(ctx context.Context, db Querier, id string, now time.Time) (*store.Flow, error) {
	fl, err := scanFlow(f.queryRow(ctx, db, `SELECT `+flowColumns+` FROM weft_flows WHERE id = ?`, id), now)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("flow %s: %w", id, store.ErrFlowNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get flow %s: %w", id, err)
	}
	return fl, nil
}

// ListFlows lists flows in id order.
func (f FlowStore) ListFlows(ctx context.Context, db Querier, p store.FlowListParams, now time.Time) ([]*store.Flow, error) {
	query := `SELECT ` + flowColumns + ` FROM weft_flows WHERE id > ?`
	args := []any{p.After}
	if len(p.States) > 0 {
		query += ` AND state IN ` + in(len(p.States))
		for _, s := range p.States {
			args = append(args, string(s))
		}
	}
	query += fmt.Sprintf(` ORDER BY id LIMIT %d`, PageLimit(p.Limit))
	return collect(ctx, db, "list flows", f.d.Bind(query), args, func(r Rows) (*store.Flow, error) { return scanFlow(r, now) })
}

// FlowMembers lists a flow's members in the order they were added.
func (f FlowStore) FlowMembers(ctx context.Context, db Querier, id string) ([]store.FlowMember, error) {
	if _, err := f.Flow(ctx, db, id, time.Time{}); err != nil {
		return nil, err
	}
	members, err := collect(ctx, db, "list flow members", f.d.Bind(`SELECT t.flow_key, t.id, t.kind, t.queue, t.state,
		coalesce(m.join_kind, ''), m.quorum, m.let_run, coalesce(m.added_by, ''), coalesce(m.reason, ''), coalesce(m.reason_key, '')
		FROM weft_flow_members m JOIN weft_tasks t ON t.id = m.task_id WHERE m.flow_id = ? ORDER BY m.seq`), []any{id},
		func(r Rows) (store.FlowMember, error) {
			var m store.FlowMember
			var state, join string
			err := r.Scan(&m.Key, &m.TaskID, &m.Kind, &m.Queue, &state, &join, &m.Quorum, &m.LetRun, &m.AddedBy, &m.Reason, &m.ReasonKey)
			m.State, m.Join = store.State(state), store.Join(join)
			return m, err
		})
	if err != nil {
		return nil, err
	}
	byID := make(map[string]int, len(members))
	for i, m := range members {
		byID[m.TaskID] = i
	}
	type edge struct{ child, parentKey string }
	edges, err := collect(ctx, db, "list flow members", f.d.Bind(`SELECT e.child_id, p.flow_key FROM weft_flow_edges e
		JOIN weft_flow_members m ON m.task_id = e.child_id JOIN weft_tasks p ON p.id = e.parent_id
		WHERE m.flow_id = ? ORDER BY e.child_id, p.flow_key`), []any{id},
		func(r Rows) (edge, error) {
			var e edge
			return e, r.Scan(&e.child, &e.parentKey)
		})
	if err != nil {
		return nil, err
	}
	for _, e := range edges {
		if i, ok := byID[e.child]; ok {
			members[i].DependsOn = append(members[i].DependsOn, e.parentKey)
		}
	}
	return members, nil
}

// FlowEvents reads the events of a flow's members with a seq above after,
// oldest first.
func (f FlowStore) FlowEvents(ctx context.Context, db Querier, id string, after int64, limit int) ([]store.Event, error) {
	if _, err := f.Flow(ctx, db, id, time.Time{}); err != nil {
		return nil, err
	}
	return collect(ctx, db, "flow events", f.d.Bind(`SELECT e.task_id, e.`+EventColumns+` FROM weft_events e
		WHERE e.task_id IN (SELECT id FROM weft_tasks WHERE flow_id = ?) AND e.seq > ?
		ORDER BY e.seq LIMIT `+fmt.Sprint(PageLimit(limit))), []any{id, after},
		func(r Rows) (store.Event, error) {
			var (
				e    store.Event
				typ  string
				at   int64
				data []byte
			)
			err := r.Scan(&e.TaskID, &e.Seq, &typ, &e.Attempt, &at, &data)
			e.Type, e.At = store.EventType(typ), FromMicros(at)
			if len(data) > 0 {
				e.Data = json.RawMessage(data)
			}
			return e, err
		})
}

// Parents reads the outcomes of a member's parents, by key.
func (f FlowStore) Parents(ctx context.Context, db Querier, taskID string) ([]store.ParentOutcome, error) {
	return collect(ctx, db, "read parents", f.d.Bind(`SELECT p.flow_key, p.id, p.state, p.result, p.errors
		FROM weft_flow_edges e JOIN weft_tasks p ON p.id = e.parent_id WHERE e.child_id = ? ORDER BY p.flow_key`), []any{taskID},
		func(r Rows) (store.ParentOutcome, error) {
			var (
				p            store.ParentOutcome
				state        string
				result, errs []byte
			)
			if err := r.Scan(&p.Key, &p.TaskID, &state, &result, &errs); err != nil {
				return p, err
			}
			p.State = store.State(state)
			if len(result) > 0 {
				p.Result = json.RawMessage(result)
			}
			if len(errs) > 0 {
				if err := json.Unmarshal(errs, &p.Errors); err != nil {
					return p, fmt.Errorf("task %s: decode error history: %w", p.TaskID, err)
				}
			}
			return p, nil
		})
}

// flowPurgeStates maps each final flow state to the member state whose
// retention cutoff applies to the flow and all its members.
func flowPurgeStates() map[store.FlowState]store.State {
	return map[store.FlowState]store.State{
		store.FlowSucceeded: store.StateCompleted,
		store.FlowFailed:    store.StateFailed,
		store.FlowCancelled: store.StateCancelled,
	}
}

// FlowPurgeBatch bounds the flows one Purge call deletes: each may hold
// thousands of members.
const FlowPurgeBatch = 10

// PurgeFlows deletes, in tx, at most limit finished flows older than their
// state's cutoff in plan, with their members, the members' events, output
// streams and edges. removed receives the members' counter moves.
func (f FlowStore) PurgeFlows(ctx context.Context, tx Tx, plan store.PurgePlan, limit int, removed store.CountMoves) (int, error) {
	var conds []string
	var args []any
	for fs, ts := range flowPurgeStates() {
		for _, c := range plan.Cutoffs {
			if c.State == ts {
				conds = append(conds, "(state = ? AND finalized_at < ?)")
				args = append(args, string(fs), Micros(c.Before))
			}
		}
	}
	if len(conds) == 0 {
		return 0, nil
	}
	ids, err := collect(ctx, tx, "purge flows", f.d.Bind(`SELECT id FROM weft_flows WHERE (`+strings.Join(conds, " OR ")+`)`+
		fmt.Sprintf(` ORDER BY id LIMIT %d`, limit)), args, func(r Rows) (string, error) {
		var id string
		return id, r.Scan(&id)
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, id := range ids {
		counts, err := collect(ctx, tx, "purge flows", f.d.Bind(`SELECT queue, state, count(*) FROM weft_tasks WHERE flow_id = ? GROUP BY queue, state`),
			[]any{id}, func(r Rows) (CountRow, error) {
				var c CountRow
				var st string
				err := r.Scan(&c.Queue, &st, &c.N)
				c.State = store.State(st)
				return c, err
			})
		if err != nil {
			return deleted, err
		}
		for _, c := range counts {
			removed.Move(c.Queue, c.State, "", c.N)
		}
		for _, stmt := range []string{
			`DELETE FROM weft_events WHERE task_id IN (SELECT id FROM weft_tasks WHERE flow_id = ?)`,
			`DELETE FROM weft_signals WHERE task_id IN (SELECT id FROM weft_tasks WHERE flow_id = ?)`,
			`DELETE FROM weft_waitpoints WHERE task_id IN (SELECT id FROM weft_tasks WHERE flow_id = ?)`,
			`DELETE FROM weft_frames WHERE task_id IN (SELECT id FROM weft_tasks WHERE flow_id = ?)`,
			`DELETE FROM weft_streams WHERE task_id IN (SELECT id FROM weft_tasks WHERE flow_id = ?)`,
			`DELETE FROM weft_flow_edges WHERE child_id IN (SELECT task_id FROM weft_flow_members WHERE flow_id = ?)`,
			`DELETE FROM weft_flow_members WHERE flow_id = ?`,
			`DELETE FROM weft_tasks WHERE flow_id = ?`,
			`DELETE FROM weft_flows WHERE id = ?`,
		} {
			if _, err := f.exec(ctx, tx, stmt, id); err != nil {
				return deleted, fmt.Errorf("purge flow %s: %w", id, err)
			}
		}
		deleted++
	}
	return deleted, nil
}

// CountRow is a number of tasks in one queue and state.
type CountRow struct {
	Queue string
	State store.State
	N     int64
}
