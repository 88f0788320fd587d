package sqlbackend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

// AddMembers adds members to the flow of the running task taskID, under
// its lease epoch, in tx. insert writes the prepared tasks as the backend
// does (blocked or pending, with their flow id and key) and reports
// duplicates of unique keys. The members that depend on "key/*" of the
// adder (or of a member it added), and those that depend on "*", wait for
// the new members too.
func (f FlowStore) AddMembers(ctx context.Context, tx Tx, taskID string, epoch int64, members []store.NewFlowMember,
	limits store.Limits, now time.Time, insert func(store.Batch) ([]store.EnqueueResult, error)) (store.FlowResult, error) {
	var (
		flowID, adderKey sql.NullString
		state            string
		leaseEpoch       int64
	)
	err := f.queryRow(ctx, tx, `SELECT flow_id, flow_key, state, lease_epoch FROM weft_tasks WHERE id = ?`+f.d.lockSuffix(), taskID).
		Scan(&flowID, &adderKey, &state, &leaseEpoch)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.FlowResult{}, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	case err != nil:
		return store.FlowResult{}, fmt.Errorf("add flow members: %w", err)
	case leaseEpoch != epoch || store.State(state) != store.StateRunning:
		return store.FlowResult{}, fmt.Errorf("task %s epoch %d: %w", taskID, epoch, store.ErrLeaseLost)
	case !flowID.Valid:
		return store.FlowResult{}, fmt.Errorf("task %s is not a member of a flow, so it cannot add members: %w", taskID, store.ErrConflict)
	}
	existing := map[string]bool{}
	ids := map[string]string{}
	rows, err := f.query(ctx, tx, `SELECT flow_key, id, state FROM weft_tasks WHERE flow_id = ?`, flowID.String)
	if err != nil {
		return store.FlowResult{}, fmt.Errorf("add flow members: %w", err)
	}
	for rows.Next() {
		var key, id, st string
		if err := rows.Scan(&key, &id, &st); err != nil {
			rows.Close()
			return store.FlowResult{}, fmt.Errorf("add flow members: %w", err)
		}
		existing[key], ids[key] = store.State(st).Terminal(), id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.FlowResult{}, fmt.Errorf("add flow members: %w", err)
	}
	prep, batch, err := store.PrepareAdded(members, flowID.String, existing, limits, now)
	if err != nil {
		return store.FlowResult{}, err
	}
	// The existing parents are locked, so that none finishes unseen
	// between this check and the commit that adds the edges from it.
	ext := map[string]external{}
	for i, m := range prep {
		for d, key := range m.ExternalParents {
			var st string
			if err := f.queryRow(ctx, tx, `SELECT state FROM weft_tasks WHERE id = ?`+f.d.lockSuffix(), ids[key]).Scan(&st); err != nil {
				return store.FlowResult{}, fmt.Errorf("add flow members: %w", err)
			}
			if store.State(st).Terminal() {
				return store.FlowResult{}, &store.ValidationError{Index: -1, Field: fmt.Sprintf("tasks[%d].depends_on[%d]", i, d),
					Message: fmt.Sprintf("%q is already %s: a task added at run time can depend only on members that are not final (read a final member's outcome from the adder's parents or result instead)", key, st)}
			}
			ext[key] = external{id: ids[key], state: store.State(st)}
		}
	}
	res, err := insert(batch)
	if err != nil {
		return store.FlowResult{}, err
	}
	out := store.FlowResult{ID: flowID.String, Tasks: make(map[string]string, len(prep))}
	blocked := 0
	for i, r := range res {
		if r.Duplicate {
			return store.FlowResult{}, &store.ValidationError{Index: -1, Field: fmt.Sprintf("tasks[%d].unique_key", i),
				Message: fmt.Sprintf("task %s already holds %q", r.ID, batch.Task(i).UniqueKey)}
		}
		out.Tasks[prep[i].Key] = r.ID
		if batch.Blocked(i) {
			blocked++
		}
	}
	if err := f.insertMembers(ctx, tx, flowID.String, len(existing), adderKey.String, prep, batch, ext); err != nil {
		return store.FlowResult{}, err
	}
	if err := f.joinGroups(ctx, tx, flowID.String, taskID, batch); err != nil {
		return store.FlowResult{}, err
	}
	if _, err := f.exec(ctx, tx, `UPDATE weft_flows SET total = total + ?, blocked = blocked + ? WHERE id = ?`,
		len(prep), blocked, flowID.String); err != nil {
		return store.FlowResult{}, fmt.Errorf("add flow members: %w", err)
	}
	return out, nil
}

// joinGroups makes the blocked members that wait for the adder's group,
// or for every member, wait for the added ones as well.
func (f FlowStore) joinGroups(ctx context.Context, tx Tx, flowID, adderID string, added store.Batch) error {
	rows, err := f.query(ctx, tx, `SELECT m.task_id, m.all_members FROM weft_flow_members m JOIN weft_tasks c ON c.id = m.task_id
		WHERE m.flow_id = ? AND CASE WHEN c.state = '`+string(store.StateBlocked)+`' THEN 1 ELSE 0 END = 1
		AND (m.all_members = TRUE OR EXISTS (SELECT 1 FROM weft_flow_edges e WHERE e.parent_id = ? AND e.child_id = m.task_id AND e.grp = TRUE))
		ORDER BY m.task_id`+f.d.lockOf("m"), flowID, adderID)
	if err != nil {
		return fmt.Errorf("extend fan-in: %w", err)
	}
	type waiter struct {
		id  string
		all bool
	}
	var waiters []waiter
	for rows.Next() {
		var w waiter
		if err := rows.Scan(&w.id, &w.all); err != nil {
			rows.Close()
			return fmt.Errorf("extend fan-in: %w", err)
		}
		waiters = append(waiters, w)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("extend fan-in: %w", err)
	}
	var edges [][]any
	for _, w := range waiters {
		for i := range added.Len() {
			edges = append(edges, []any{added.Task(i).ID, w.id, !w.all})
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_flow_members SET n_parents = n_parents + ? WHERE task_id = ?`, added.Len(), w.id); err != nil {
			return fmt.Errorf("extend fan-in: %w", err)
		}
	}
	if err := f.d.InsertRows(ctx, tx, "weft_flow_edges", []string{"parent_id", "child_id", "grp"}, edges); err != nil {
		return fmt.Errorf("extend fan-in: %w", err)
	}
	return nil
}
