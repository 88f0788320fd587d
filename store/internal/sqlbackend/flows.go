package sqlbackend

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// Flows are written once, here, for both backends: the statements are
// plain SQL that both dialects accept, written with ? placeholders that the
// backend's Dialect rebinds, and run in the backend's own transaction
// through a Tx. The rules — join conditions, skip reasons, counts, the
// final state — are store's; this file reads what they need and writes what
// they decide.

// Tx runs statements inside a backend's transaction.
type Tx interface {
	Querier
	Exec(ctx context.Context, query string, args ...any) (int64, error)
}

// Dialect is what differs between the backends' spelling of the flow
// statements.
type Dialect struct {
	// Bind rewrites a statement's ? placeholders into the backend's own.
	Bind func(query string) string
	// JSON is the placeholder for a JSON parameter passed as text.
	JSON string
	// Lock is appended to a SELECT whose rows the transaction then
	// updates ("FOR UPDATE" where rows can be locked; "" on SQLite, whose
	// one writer serializes everything). ForUpdateOf appends the table
	// name to lock in a join.
	Lock string
	// AppendError is the expression that appends the JSON of an attempt
	// error, given as a text parameter, to a task's errors.
	AppendError string
	// Members, edges and flows are inserted through these, so each
	// backend batches rows its own way.
	InsertRows func(ctx context.Context, tx Tx, table string, columns []string, rows [][]any) error
	// TaskArg, when set, is how a statement writes a parameter compared
	// with a column of weft_tasks ("?" when empty). SQLite's is "+?": bare,
	// its planner weighs the bound value against the partial indexes and
	// prepares the statement again whenever the value changes (see
	// store/sqlite).
	TaskArg string
	// RequiresNone is the condition that a weft_tasks row has no label
	// requirements; RequiresMet that a worker's labels satisfy them,
	// given three parameters: the labels as a JSON object of text, then
	// twice those that are numbers as a JSON object of numbers.
	RequiresNone, RequiresMet string
}

// taskArg is the placeholder of a parameter compared with a column of
// weft_tasks.
func (d *Dialect) taskArg() string {
	if d.TaskArg == "" {
		return "?"
	}
	return d.TaskArg
}

func (d *Dialect) lockOf(table string) string {
	if d.Lock == "" {
		return ""
	}
	return " " + d.Lock + " OF " + table
}

// FlowStore runs flows' statements in a dialect.
type FlowStore struct {
	d *Dialect
}

// NewFlowStore returns the flow statements in dialect d.
func NewFlowStore(d *Dialect) FlowStore { return FlowStore{d: d} }

func (f FlowStore) exec(ctx context.Context, tx Tx, query string, args ...any) (int64, error) {
	return tx.Exec(ctx, f.d.Bind(query), args...)
}

func (f FlowStore) query(ctx context.Context, db Querier, query string, args ...any) (Rows, error) {
	return db.Query(ctx, f.d.Bind(query), args...)
}

func (f FlowStore) queryRow(ctx context.Context, db Querier, query string, args ...any) Row {
	return db.QueryRow(ctx, f.d.Bind(query), args...)
}

// inChunk bounds the ids of one IN list.
const inChunk = 5000

// in returns "(?,?,?)" for n values.
func in(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

func anys[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// chunks calls fn with ids in slices of at most inChunk.
func chunks(ids []string, fn func(part []string) error) error {
	for len(ids) > 0 {
		n := min(len(ids), inChunk)
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// Finished is a flow member that reached a final state (or, From, left
// one: a reopened member), as the transition that moved it reports it.
type Finished struct {
	TaskID string
	FlowID string
	From   store.State
	State  store.State
}

// FinishedMembers lists the flow members among the rows a finish
// statement wrote that reached a final state.
func FinishedMembers(applied map[store.LeaseKey]store.FinishedRow) []Finished {
	var out []Finished
	for k, row := range applied {
		if row.FlowID != "" && row.State.Terminal() {
			out = append(out, Finished{TaskID: k.TaskID, FlowID: row.FlowID, From: store.StateRunning, State: row.State})
		}
	}
	return out
}

// Moved lists the flow members of a bulk action's moves, for Resolve.
func Moved(moves []store.FlowMove) []Finished {
	out := make([]Finished, len(moves))
	for i, m := range moves {
		out[i] = Finished{TaskID: m.TaskID, FlowID: m.FlowID, From: m.From, State: m.To}
	}
	return out
}

// FlowDeltas accumulates the count changes of each flow touched by a
// transaction, and the members that finished in it.
type FlowDeltas map[string]*flowDelta

type flowDelta struct {
	counts   store.FlowCounts
	finished int
}

func (d FlowDeltas) move(flowID string, from, to store.State) {
	fd := d[flowID]
	if fd == nil {
		fd = &flowDelta{}
		d[flowID] = fd
	}
	if from != "" {
		fd.counts.CountFlowState(from, -1)
	}
	if to != "" {
		fd.counts.CountFlowState(to, 1)
	}
	if to.Terminal() && (from == "" || !from.Terminal()) {
		fd.finished++
	}
}

// InsertFlow writes a prepared flow's row, its members' rows and its
// edges; the backend has written the tasks (blocked or pending, with
// their flow id and key) in the same transaction.
func (f FlowStore) InsertFlow(ctx context.Context, tx Tx, fb store.FlowBatch) error {
	blocked := 0
	for _, m := range fb.Members {
		if len(m.Parents) > 0 {
			blocked++
		}
	}
	var md any
	if len(fb.Metadata) > 0 {
		md = string(fb.Metadata)
	}
	now := Micros(fb.Tasks.Now())
	if _, err := f.exec(ctx, tx, `INSERT INTO weft_flows (id, name, state, metadata, total, blocked, created_at)
		VALUES (?, ?, '`+string(store.FlowRunning)+`', `+f.d.JSON+`, ?, ?, ?)`,
		fb.ID, fb.Name, md, len(fb.Members), blocked, now); err != nil {
		return fmt.Errorf("insert flow: %w", err)
	}
	return f.insertMembers(ctx, tx, fb.ID, 0, "", fb.Members, fb.Tasks, nil)
}

// external is an existing member that new members depend on.
type external struct {
	id    string
	state store.State
}

// insertMembers writes members' rows and edges. seq0 numbers them after
// the members already in the flow; ext resolves ExternalParents.
func (f FlowStore) insertMembers(ctx context.Context, tx Tx, flowID string, seq0 int, addedBy string, members []store.FlowMemberPrep, tasks store.Batch, ext map[string]external) error {
	memberRows := make([][]any, 0, len(members))
	var edgeRows [][]any
	for i, m := range members {
		id := tasks.Task(i).ID
		groups := map[string]bool{}
		for _, g := range m.Groups {
			groups[g] = true
		}
		var c store.JoinCounts
		for _, p := range m.Parents {
			grp := groups[members[p].Key]
			edgeRows = append(edgeRows, []any{tasks.Task(p).ID, id, grp})
		}
		for _, key := range m.ExternalParents {
			e := ext[key]
			c.Count(e.state, 1)
			edgeRows = append(edgeRows, []any{e.id, id, groups[key]})
		}
		c.Parents = len(m.Parents) + len(m.ExternalParents)
		var join any
		if c.Parents > 0 {
			join = string(m.Join)
		}
		memberRows = append(memberRows, []any{id, flowID, seq0 + i, join, m.Quorum, m.LetRun, m.All,
			c.Parents, c.Succeeded, c.Failed, c.Skipped, nullIfEmpty(addedBy)})
	}
	if err := f.d.InsertRows(ctx, tx, "weft_flow_members", []string{"task_id", "flow_id", "seq", "join_kind", "quorum",
		"let_run", "all_members", "n_parents", "n_succeeded", "n_failed", "n_skipped", "added_by"}, memberRows); err != nil {
		return fmt.Errorf("insert flow members: %w", err)
	}
	if err := f.d.InsertRows(ctx, tx, "weft_flow_edges", []string{"parent_id", "child_id", "grp"}, edgeRows); err != nil {
		return fmt.Errorf("insert flow edges: %w", err)
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// child is a blocked member whose parents just finished, with its
// counters.
type child struct {
	id, flowID, queue, key string
	state                  store.State
	join                   store.Join
	quorum                 int
	letRun                 bool
	counts                 store.JoinCounts
	// wave counts the parents that finished in this wave.
	wave    store.JoinCounts
	attempt int
}

// Resolve applies the final outcomes of flow members to their flows in
// the caller's transaction: each blocked child's counters, a child whose
// condition holds becomes pending, one whose condition cannot hold is
// skipped (and that cascades), the parents that only fed a met
// any_succeeded or quorum condition are cancelled, and each flow's counts,
// rate and, once every member is final, its state are updated.
func (f FlowStore) Resolve(ctx context.Context, tx Tx, finished []Finished, now time.Time) (store.Change, error) {
	var ch store.Change
	deltas := FlowDeltas{}
	for _, fm := range finished {
		deltas.move(fm.FlowID, fm.From, fm.State)
	}
	nowUS := Micros(now)
	for len(finished) > 0 {
		next, err := f.resolveStep(ctx, tx, finished, nowUS, &ch, deltas)
		if err != nil {
			return ch, err
		}
		finished = next
	}
	return ch, f.applyDeltas(ctx, tx, deltas, now)
}

// resolveStep resolves the children of one wave of finished members and
// returns the members that the wave finished in turn.
//
// It takes no row lock to read: concurrent transactions (another node
// finishing another parent of the same child, a cancel) are kept apart by
// the writes themselves. A child with several parents has its counters
// incremented in place and decides from the values the increment returns,
// which under PostgreSQL's row locks include every increment committed
// before, so exactly one transaction sees the join hold. A child with one
// parent — the common fan-out — can only be resolved by that parent, and
// its counters need no write. A state change is guarded by the state it
// leaves (state = 'blocked') and reports what it changed, so a child that
// a concurrent cancel finished is left alone.
func (f FlowStore) resolveStep(ctx context.Context, tx Tx, finished []Finished, nowUS int64, ch *store.Change, deltas FlowDeltas) ([]Finished, error) {
	states := make(map[string]store.State, len(finished))
	ids := make([]string, 0, len(finished))
	for _, fm := range finished {
		if _, dup := states[fm.TaskID]; !dup {
			ids = append(ids, fm.TaskID)
		}
		states[fm.TaskID] = fm.State
	}
	children := map[string]*child{}
	var order []string
	// The finished parents are counted per child in the statement, from
	// their rows as this transaction left them: a fan-in fed by hundreds
	// of parents finishing in one batch is one row, not hundreds.
	sum := func(states ...store.State) string {
		return `sum(CASE WHEN ` + store.SQLOneOf("p.state", states) + ` THEN 1 ELSE 0 END)`
	}
	err := chunks(ids, func(part []string) error {
		rows, err := f.query(ctx, tx, `SELECT g.child_id, g.ok, g.bad, g.skip, c.flow_id, c.queue, c.state, c.attempt,
			m.join_kind, m.quorum, m.let_run, m.n_parents
			FROM (SELECT e.child_id, `+sum(store.StateCompleted)+` AS ok, `+sum(store.StateFailed, store.StateCancelled)+` AS bad,
				`+sum(store.StateSkipped)+` AS skip
				FROM weft_flow_edges e JOIN weft_tasks p ON p.id = e.parent_id
				WHERE e.parent_id IN `+in(len(part))+` GROUP BY e.child_id) AS g
			JOIN weft_tasks c ON c.id = g.child_id
			JOIN weft_flow_members m ON m.task_id = g.child_id
			ORDER BY g.child_id`, anys(part)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				state, join   string
				c             child
				ok, bad, skip int
			)
			if err := rows.Scan(&c.id, &ok, &bad, &skip, &c.flowID, &c.queue, &state, &c.attempt,
				&join, &c.quorum, &c.letRun, &c.counts.Parents); err != nil {
				return err
			}
			// Only blocked children are resolved. The state is tested here
			// rather than in the statement, where SQLite would drive the
			// join from every blocked task instead of from the edges; the
			// writes below test it again.
			if store.State(state) != store.StateBlocked {
				continue
			}
			if prev, seen := children[c.id]; seen {
				c = *prev
			} else {
				c.state, c.join = store.State(state), store.Join(join)
				order = append(order, c.id)
			}
			c.wave.Succeeded += ok
			c.wave.Failed += bad
			c.wave.Skipped += skip
			children[c.id] = &c
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("resolve flow dependencies: %w", err)
	}
	if err := f.countChildren(ctx, tx, children, order); err != nil {
		return nil, err
	}
	var unblocked, skippedIDs []string
	for _, id := range order {
		switch c := children[id]; c.join.Decide(c.quorum, c.counts) {
		case store.Satisfied:
			unblocked = append(unblocked, c.id)
		case store.Impossible:
			skippedIDs = append(skippedIDs, c.id)
		}
	}
	unblocked, err = f.moveBlocked(ctx, tx, unblocked, `state = '`+string(store.StatePending)+`'`)
	if err != nil {
		return nil, fmt.Errorf("unblock flow members: %w", err)
	}
	skippedIDs, err = f.moveBlocked(ctx, tx, skippedIDs, `state = '`+string(store.StateSkipped)+`', finalized_at = ?`, nowUS)
	if err != nil {
		return nil, fmt.Errorf("skip flow members: %w", err)
	}
	var next []Finished
	for _, id := range unblocked {
		c := children[id]
		ch.Event(c.id, store.EventUnblocked, c.attempt, nil)
		ch.Move(c.queue, store.StateBlocked, store.StatePending)
		deltas.move(c.flowID, store.StateBlocked, store.StatePending)
		if (c.join == store.JoinAnySucceeded || c.join == store.JoinQuorum) && !c.letRun {
			cancelled, err := f.cancelFeeders(ctx, tx, c, nowUS, ch, deltas)
			if err != nil {
				return nil, err
			}
			next = append(next, cancelled...)
		}
	}
	for _, id := range skippedIDs {
		c := children[id]
		causeKey, causeState, err := f.cause(ctx, tx, c, states)
		if err != nil {
			return nil, err
		}
		reason := store.SkipReason(causeState)
		if _, err := f.exec(ctx, tx, `UPDATE weft_flow_members SET reason = ?, reason_key = ? WHERE task_id = ?`,
			reason, causeKey, c.id); err != nil {
			return nil, fmt.Errorf("skip flow member: %w", err)
		}
		data, _ := json.Marshal(map[string]string{"reason": reason, "dependency": causeKey})
		ch.Event(c.id, store.EventSkipped, c.attempt, data)
		ch.Move(c.queue, store.StateBlocked, store.StateSkipped)
		deltas.move(c.flowID, store.StateBlocked, store.StateSkipped)
		next = append(next, Finished{TaskID: c.id, FlowID: c.flowID, From: store.StateBlocked, State: store.StateSkipped})
	}
	return next, nil
}

// countChildren sets each child's counters: a child with one parent has
// just this wave's; the others have the wave's added in place, one
// statement for many children, and read back as the increment left them.
func (f FlowStore) countChildren(ctx context.Context, tx Tx, children map[string]*child, order []string) error {
	var rows [][]any
	for _, id := range order {
		c := children[id]
		if c.counts.Parents == 1 {
			c.counts.Succeeded, c.counts.Failed, c.counts.Skipped = c.wave.Succeeded, c.wave.Failed, c.wave.Skipped
			continue
		}
		rows = append(rows, []any{c.id, c.wave.Succeeded, c.wave.Failed, c.wave.Skipped})
	}
	for len(rows) > 0 {
		part := rows[:min(len(rows), flowChunk)]
		rows = rows[len(part):]
		query, args := updateFrom("weft_flow_members", "task_id",
			"n_succeeded = n_succeeded + v.c1, n_failed = n_failed + v.c2, n_skipped = n_skipped + v.c3",
			" RETURNING weft_flow_members.task_id, n_parents, n_succeeded, n_failed, n_skipped", nil, part)
		res, err := f.query(ctx, tx, query, args...)
		if err != nil {
			return fmt.Errorf("update flow counters: %w", err)
		}
		for res.Next() {
			var id string
			var jc store.JoinCounts
			if err := res.Scan(&id, &jc.Parents, &jc.Succeeded, &jc.Failed, &jc.Skipped); err != nil {
				res.Close()
				return fmt.Errorf("update flow counters: %w", err)
			}
			children[id].counts = jc
		}
		res.Close()
		if err := res.Err(); err != nil {
			return fmt.Errorf("update flow counters: %w", err)
		}
	}
	return nil
}

// moveBlocked sets set on the tasks of ids that are still blocked, and
// returns those it changed, in ids' order.
func (f FlowStore) moveBlocked(ctx context.Context, tx Tx, ids []string, set string, setArgs ...any) ([]string, error) {
	moved := map[string]bool{}
	err := chunks(ids, func(part []string) error {
		// The state test is wrapped in a CASE so that neither planner
		// reaches for an index on the state: the rows are the ids'.
		rows, err := f.query(ctx, tx, `UPDATE weft_tasks SET `+set+` WHERE id IN `+in(len(part))+`
			AND CASE WHEN state = '`+string(store.StateBlocked)+`' THEN 1 ELSE 0 END = 1 RETURNING id`, append(slices.Clone(setArgs), anys(part)...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			moved[id] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	out := ids[:0:0]
	for _, id := range ids {
		if moved[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// cause finds the parent of c, among those finished in this wave, whose
// outcome made its join impossible: one whose state the join could not
// take (a completed parent of none_succeeded, any other final state for
// the other joins).
func (f FlowStore) cause(ctx context.Context, tx Tx, c *child, finished map[string]store.State) (key string, state store.State, err error) {
	parents, err := collect(ctx, tx, "skip flow member", f.d.Bind(`SELECT e.parent_id, p.flow_key FROM weft_flow_edges e
		JOIN weft_tasks p ON p.id = e.parent_id WHERE e.child_id = ? ORDER BY e.parent_id`), []any{c.id},
		func(r Rows) ([2]string, error) {
			var v [2]string
			return v, r.Scan(&v[0], &v[1])
		})
	if err != nil {
		return "", "", err
	}
	for _, p := range parents {
		s, ok := finished[p[0]]
		if ok && (s == store.StateCompleted) == (c.join == store.JoinNoneSucceeded) {
			return p[1], s, nil
		}
	}
	return "", "", fmt.Errorf("skip flow member %s: no finished parent made its join impossible", c.id)
}

// cancelFeeders cancels the parents of c, not yet final, that feed no
// other member: c's condition was met without them.
func (f FlowStore) cancelFeeders(ctx context.Context, tx Tx, c *child, nowUS int64, ch *store.Change, deltas FlowDeltas) ([]Finished, error) {
	type feeder struct {
		id, queue string
		state     store.State
		attempt   int
	}
	rows, err := f.query(ctx, tx, `SELECT p.id, p.queue, p.state, p.attempt FROM weft_flow_edges e
		JOIN weft_tasks p ON p.id = e.parent_id
		WHERE e.child_id = ? AND NOT `+store.SQLOneOf("p.state", store.TerminalStates())+`
		AND NOT EXISTS (SELECT 1 FROM weft_flow_edges o WHERE o.parent_id = e.parent_id AND o.child_id <> e.child_id)
		ORDER BY p.id`+f.d.lockOf("p"), c.id)
	if err != nil {
		return nil, fmt.Errorf("find parents to cancel: %w", err)
	}
	var feeders []feeder
	for rows.Next() {
		var fd feeder
		var state string
		if err := rows.Scan(&fd.id, &fd.queue, &state, &fd.attempt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find parents to cancel: %w", err)
		}
		fd.state = store.State(state)
		feeders = append(feeders, fd)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find parents to cancel: %w", err)
	}
	if err := f.queryRow(ctx, tx, `SELECT flow_key FROM weft_tasks WHERE id = ?`, c.id).Scan(&c.key); err != nil {
		return nil, fmt.Errorf("find parents to cancel: %w", err)
	}
	data, _ := json.Marshal(map[string]string{"reason": store.ReasonJoinMet, "dependent": c.key})
	var out []Finished
	for _, fd := range feeders {
		if _, err := f.exec(ctx, tx, `UPDATE weft_flow_members SET reason = ?, reason_key = ? WHERE task_id = ?`,
			store.ReasonJoinMet, c.key, fd.id); err != nil {
			return nil, fmt.Errorf("cancel parent: %w", err)
		}
		if fd.state == store.StateRunning {
			if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET cancel_requested = TRUE WHERE id = ?`, fd.id); err != nil {
				return nil, fmt.Errorf("cancel parent: %w", err)
			}
			ch.Event(fd.id, store.EventCancelRequested, fd.attempt, data)
			continue
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StateCancelled)+`', finalized_at = ?,
			lease_owner = NULL, lease_expires_at = NULL WHERE id = ?`, nowUS, fd.id); err != nil {
			return nil, fmt.Errorf("cancel parent: %w", err)
		}
		ch.Event(fd.id, store.EventCancelled, fd.attempt, data)
		ch.Move(fd.queue, fd.state, store.StateCancelled)
		deltas.move(c.flowID, fd.state, store.StateCancelled)
		out = append(out, Finished{TaskID: fd.id, FlowID: c.flowID, From: fd.state, State: store.StateCancelled})
	}
	return out, nil
}

// flowRowColumns are the counts, state and rate of a flow, in
// scanFlowRow's order.
const flowRowColumns = `total, blocked, completed, failed, cancelled, skipped, state, cancel_requested, window_start, window_done, prev_rate`

// flowRow is a flow's counts, state and rate.
type flowRow struct {
	counts          store.FlowCounts
	state           store.FlowState
	cancelRequested bool
	rate            store.FlowRate
}

func scanFlowRow(r Row, dest ...any) (flowRow, error) {
	var (
		fr          flowRow
		state       string
		windowStart sql.NullInt64
	)
	dest = append(dest, &fr.counts.Total, &fr.counts.Blocked, &fr.counts.Completed, &fr.counts.Failed, &fr.counts.Cancelled,
		&fr.counts.Skipped, &state, &fr.cancelRequested, &windowStart, &fr.rate.WindowDone, &fr.rate.PrevRate)
	if err := r.Scan(dest...); err != nil {
		return fr, err
	}
	fr.counts.Active = fr.counts.Total - fr.counts.Blocked - fr.counts.Done()
	fr.state = store.FlowState(state)
	if windowStart.Valid {
		fr.rate.WindowStart = FromMicros(windowStart.Int64)
	}
	return fr, nil
}

// flowChunk bounds the flows of one counts statement.
const flowChunk = 100

// applyDeltas moves each touched flow's counts and rate in one statement
// per flowChunk flows — no read before the write, so a batch of outcomes
// spread over many flows costs a statement, not two per flow — and
// finalizes the flows whose members it found all final.
func (f FlowStore) applyDeltas(ctx context.Context, tx Tx, deltas FlowDeltas, now time.Time) error {
	ids := slices.Sorted(maps.Keys(deltas))
	nowUS := Micros(now)
	window := RateWindowMicros()
	var final []string
	for len(ids) > 0 {
		part := ids[:min(len(ids), flowChunk)]
		ids = ids[len(part):]
		values := make([][]any, len(part))
		for i, id := range part {
			d := deltas[id]
			c := d.counts
			values[i] = []any{id, c.Blocked, c.Completed, c.Failed, c.Cancelled, c.Skipped, d.finished}
		}
		// SET reads the row as it was: the window rolls when a finish
		// comes once it has ended, carrying its rate over.
		roll := `(v.c6 > 0 AND (window_start IS NULL OR ? - window_start >= ?))`
		query, args := updateFrom("weft_flows", "id", `blocked = blocked + v.c1, completed = completed + v.c2,
			failed = failed + v.c3, cancelled = cancelled + v.c4, skipped = skipped + v.c5,
			prev_rate = CASE WHEN `+roll+` AND window_start IS NOT NULL THEN window_done * 1000000.0 / (? - window_start) ELSE prev_rate END,
			window_done = CASE WHEN `+roll+` THEN v.c6 ELSE window_done + v.c6 END,
			window_start = CASE WHEN `+roll+` THEN ? ELSE window_start END`,
			" RETURNING weft_flows.id, "+flowRowColumns,
			[]any{nowUS, window, nowUS, nowUS, window, nowUS, window, nowUS}, values)
		rows, err := f.query(ctx, tx, query, args...)
		if err != nil {
			return fmt.Errorf("update flows: %w", err)
		}
		for rows.Next() {
			var id string
			fr, err := scanFlowRow(rows, &id)
			if err != nil {
				rows.Close()
				return fmt.Errorf("update flows: %w", err)
			}
			if fr.state == store.FlowRunning && fr.counts.Done() == fr.counts.Total {
				final = append(final, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("update flows: %w", err)
		}
	}
	for _, id := range final {
		if err := f.finalize(ctx, tx, id, nowUS); err != nil {
			return err
		}
	}
	return nil
}

// updateFrom updates table's rows whose key is the first value of each
// row of values, setting set, in which v.c1, v.c2, ... name the other
// values of the row (integers); setArgs are the arguments of set's own
// placeholders. One statement serves many rows: both dialects update
// FROM a VALUES list, whose columns are cast so that PostgreSQL knows
// their types.
func updateFrom(table, key, set, returning string, setArgs []any, values [][]any) (string, []any) {
	width := len(values[0])
	var b strings.Builder
	args := slices.Clone(setArgs)
	for i, row := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(CAST(? AS TEXT)")
		b.WriteString(strings.Repeat(", CAST(? AS BIGINT)", width-1))
		b.WriteByte(')')
		args = append(args, row...)
	}
	cols := make([]string, width)
	cols[0] = "column1 AS k"
	for i := 1; i < width; i++ {
		cols[i] = fmt.Sprintf("column%d AS c%d", i+1, i)
	}
	return `UPDATE ` + table + ` SET ` + set + `
		FROM (SELECT ` + strings.Join(cols, ", ") + ` FROM (VALUES ` + b.String() + `) AS vals) AS v
		WHERE ` + table + `.` + key + ` = v.k` + returning, args
}

// RateWindowMicros is store.RateWindow in the unit of stored times.
func RateWindowMicros() int64 { return store.RateWindow.Microseconds() }

// finalize sets the final state of a flow whose members are all final.
func (f FlowStore) finalize(ctx context.Context, tx Tx, id string, nowUS int64) error {
	var cancelRequested bool
	if err := f.queryRow(ctx, tx, `SELECT cancel_requested FROM weft_flows WHERE id = ?`, id).Scan(&cancelRequested); err != nil {
		return fmt.Errorf("finalize flow %s: %w", id, err)
	}
	unabsorbed := 0
	if !cancelRequested {
		var err error
		if unabsorbed, err = f.unabsorbed(ctx, tx, id); err != nil {
			return err
		}
	}
	state := store.FinalFlowState(cancelRequested, unabsorbed)
	if _, err := f.exec(ctx, tx, `UPDATE weft_flows SET state = ?, finalized_at = ? WHERE id = ?`, string(state), nowUS, id); err != nil {
		return fmt.Errorf("finalize flow %s: %w", id, err)
	}
	return nil
}

func (d *Dialect) lockSuffix() string {
	if d.Lock == "" {
		return ""
	}
	return " " + d.Lock
}

// unabsorbed counts a finished flow's failed and cancelled members that
// no completed member with a tolerant join depends on.
func (f FlowStore) unabsorbed(ctx context.Context, tx Tx, flowID string) (int, error) {
	var n int
	// The state test is wrapped in a CASE so that no index on the state
	// is used: the flow's own members are the rows to look at.
	err := f.queryRow(ctx, tx, `SELECT count(*) FROM weft_tasks t WHERE t.flow_id = ?
		AND CASE WHEN `+store.SQLOneOf("t.state", []store.State{store.StateFailed, store.StateCancelled})+` THEN 1 ELSE 0 END = 1
		AND NOT EXISTS (SELECT 1 FROM weft_flow_edges e
			JOIN weft_tasks c ON c.id = e.child_id JOIN weft_flow_members m ON m.task_id = e.child_id
			WHERE e.parent_id = t.id AND c.state = '`+string(store.StateCompleted)+`'
			AND m.join_kind IN `+joinList(store.TolerantJoins())+`)`, flowID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("decide flow %s: %w", flowID, err)
	}
	return n, nil
}

func joinList(joins []store.Join) string {
	q := make([]string, len(joins))
	for i, j := range joins {
		q[i] = "'" + string(j) + "'"
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// CancelFlow cancels a flow in tx: its pending, blocked and waiting
// members at once, its running ones by request. cancelled lists what the
// cancel finished, for Resolve, which the caller runs next in the same
// transaction.
func (f FlowStore) CancelFlow(ctx context.Context, tx Tx, flowID string, now time.Time) (ch store.Change, cancelled []Finished, err error) {
	var state string
	err = f.queryRow(ctx, tx, `SELECT state FROM weft_flows WHERE id = ?`+f.d.lockSuffix(), flowID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return ch, nil, fmt.Errorf("flow %s: %w", flowID, store.ErrFlowNotFound)
	}
	if err != nil {
		return ch, nil, fmt.Errorf("cancel flow %s: %w", flowID, err)
	}
	switch store.FlowState(state) {
	case store.FlowCancelled:
		return ch, nil, nil
	case store.FlowSucceeded, store.FlowFailed:
		return ch, nil, fmt.Errorf("flow %s is %s: %w", flowID, state, store.ErrAlreadyFinished)
	}
	if _, err := f.exec(ctx, tx, `UPDATE weft_flows SET cancel_requested = TRUE WHERE id = ?`, flowID); err != nil {
		return ch, nil, fmt.Errorf("cancel flow %s: %w", flowID, err)
	}
	type member struct {
		id, queue string
		state     store.State
		attempt   int
		requested bool
	}
	var members []member
	rows, err := f.query(ctx, tx, `SELECT id, queue, state, attempt, cancel_requested FROM weft_tasks WHERE flow_id = ?
		AND NOT `+store.SQLOneOf("state", store.TerminalStates())+` ORDER BY id`+f.d.lockSuffix(), flowID)
	if err != nil {
		return ch, nil, fmt.Errorf("cancel flow %s: %w", flowID, err)
	}
	for rows.Next() {
		var m member
		var st string
		if err := rows.Scan(&m.id, &m.queue, &st, &m.attempt, &m.requested); err != nil {
			rows.Close()
			return ch, nil, fmt.Errorf("cancel flow %s: %w", flowID, err)
		}
		m.state = store.State(st)
		members = append(members, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ch, nil, fmt.Errorf("cancel flow %s: %w", flowID, err)
	}
	nowUS := Micros(now)
	data := json.RawMessage(`{"reason":"` + store.ReasonFlowCancelled + `"}`)
	var now1, running []string
	for _, m := range members {
		if m.state == store.StateRunning {
			if !m.requested {
				running = append(running, m.id)
				ch.Event(m.id, store.EventCancelRequested, m.attempt, data)
			}
			continue
		}
		now1 = append(now1, m.id)
		ch.Event(m.id, store.EventCancelled, m.attempt, data)
		ch.Move(m.queue, m.state, store.StateCancelled)
		cancelled = append(cancelled, Finished{TaskID: m.id, FlowID: flowID, From: m.state, State: store.StateCancelled})
	}
	err = chunks(now1, func(part []string) error {
		_, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StateCancelled)+`', finalized_at = ?
			WHERE id IN `+in(len(part)), append([]any{nowUS}, anys(part)...)...)
		if err != nil {
			return err
		}
		_, err = f.exec(ctx, tx, `UPDATE weft_flow_members SET reason = '`+store.ReasonFlowCancelled+`', reason_key = NULL
			WHERE task_id IN `+in(len(part)), anys(part)...)
		return err
	})
	if err == nil {
		err = chunks(running, func(part []string) error {
			_, err := f.exec(ctx, tx, `UPDATE weft_tasks SET cancel_requested = TRUE WHERE id IN `+in(len(part)), anys(part)...)
			return err
		})
	}
	if err != nil {
		return ch, nil, fmt.Errorf("cancel flow %s: %w", flowID, err)
	}
	return ch, cancelled, nil
}

// reopenMember is a flow member as a retry reads it.
type reopenMember struct {
	id, key, queue, uniqueKey, reason string
	state                             store.State
	attempt, maxAttempts              int
	epoch                             int64
	join                              store.Join
	quorum                            int
	parents                           []string
}

// Reopen retries a flow in tx: roots (failed, cancelled or skipped
// members; all of them when roots is nil) become pending — or blocked
// again, with their counters recomputed, when some parent is reopened too
// — and so do the skipped and cancelled members downstream of them.
// Completed members keep their results. It returns ErrConflict when no
// member is to be reopened.
func (f FlowStore) Reopen(ctx context.Context, tx Tx, flowID string, roots []string, now time.Time) (store.Change, error) {
	var ch store.Change
	var state string
	err := f.queryRow(ctx, tx, `SELECT state FROM weft_flows WHERE id = ?`+f.d.lockSuffix(), flowID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return ch, fmt.Errorf("flow %s: %w", flowID, store.ErrFlowNotFound)
	}
	if err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	members := map[string]*reopenMember{}
	children := map[string][]string{}
	rows, err := f.query(ctx, tx, `SELECT t.id, t.flow_key, t.queue, coalesce(t.unique_key, ''), t.state, t.attempt, t.max_attempts, t.lease_epoch,
		coalesce(m.join_kind, ''), m.quorum, coalesce(m.reason, '') FROM weft_tasks t JOIN weft_flow_members m ON m.task_id = t.id
		WHERE t.flow_id = ? ORDER BY t.id`+f.d.lockOf("t"), flowID)
	if err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	for rows.Next() {
		var m reopenMember
		var st, join string
		if err := rows.Scan(&m.id, &m.key, &m.queue, &m.uniqueKey, &st, &m.attempt, &m.maxAttempts, &m.epoch, &join, &m.quorum, &m.reason); err != nil {
			rows.Close()
			return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
		}
		m.state, m.join = store.State(st), store.Join(join)
		members[m.id] = &m
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	rows, err = f.query(ctx, tx, `SELECT e.parent_id, e.child_id FROM weft_flow_edges e JOIN weft_tasks t ON t.id = e.child_id WHERE t.flow_id = ?`, flowID)
	if err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	for rows.Next() {
		var p, c string
		if err := rows.Scan(&p, &c); err != nil {
			rows.Close()
			return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
		}
		if m := members[c]; m != nil {
			m.parents = append(m.parents, p)
		}
		children[p] = append(children[p], c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	plan, err := store.PlanReopen(toReopen(members), children, roots)
	if err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	deltas := FlowDeltas{}
	nowUS := Micros(now)
	for _, r := range plan {
		m := members[r.TaskID]
		if m.uniqueKey != "" {
			var holder string
			err := f.queryRow(ctx, tx, `SELECT id FROM weft_tasks WHERE unique_key = ? AND id <> ? AND `+
				store.SQLOneOf("state", store.KeyHoldingStates()), m.uniqueKey, m.id).Scan(&holder)
			if err == nil {
				return ch, fmt.Errorf("retry flow %s: member %s: its unique key %q is now held by task %s: %w", flowID, m.key, m.uniqueKey, holder, store.ErrConflict)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
			}
		}
		maxAttempts := m.maxAttempts
		if r.To == store.StatePending {
			maxAttempts = max(maxAttempts, m.attempt+1)
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = ?, run_at = ?, finalized_at = NULL, parked_on = NULL, blocked_reason = NULL, cancel_requested = FALSE,
			lease_owner = NULL, lease_expires_at = NULL, lease_epoch = lease_epoch + 1, max_attempts = ? WHERE id = ?`,
			string(r.To), nowUS, maxAttempts, m.id); err != nil {
			return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_flow_members SET n_succeeded = ?, n_failed = ?, n_skipped = ?, reason = NULL, reason_key = NULL
			WHERE task_id = ?`, r.Counts.Succeeded, r.Counts.Failed, r.Counts.Skipped, m.id); err != nil {
			return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
		}
		typ := store.EventRetried
		if r.To == store.StateBlocked {
			typ = store.EventReopened
		}
		ch.Event(m.id, typ, m.attempt, json.RawMessage(`{"from":"`+string(m.state)+`"}`))
		ch.Move(m.queue, m.state, r.To)
		deltas.move(flowID, m.state, r.To)
	}
	if _, err := f.exec(ctx, tx, `UPDATE weft_flows SET cancel_requested = FALSE, state = '`+string(store.FlowRunning)+`', finalized_at = NULL
		WHERE id = ?`, flowID); err != nil {
		return ch, fmt.Errorf("retry flow %s: %w", flowID, err)
	}
	return ch, f.applyDeltas(ctx, tx, deltas, now)
}

func toReopen(members map[string]*reopenMember) map[string]store.ReopenMember {
	out := make(map[string]store.ReopenMember, len(members))
	for id, m := range members {
		out[id] = store.ReopenMember{State: m.state, Join: m.join, Quorum: m.quorum, Parents: m.parents, Reason: m.reason}
	}
	return out
}
