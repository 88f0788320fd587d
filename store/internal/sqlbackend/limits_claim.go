package sqlbackend

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftworks/weft/store"
)

// GatedQueues remembers which queues have held gated tasks (limits,
// requirements, fairness): only their claims take the gated path, so the
// claims of every other queue are the plain statement alone. It is read
// from the database at most every refresh, and set at once by this
// store's own enqueues.
type GatedQueues struct {
	mu     sync.Mutex
	set    map[string]bool
	loaded time.Time
}

// gatedRefresh is how stale a store's view of the gated queues may be:
// the delay before a node claims the first gated tasks another node
// enqueued into a queue that had none.
const gatedRefresh = 250 * time.Millisecond

// Of returns which of queues are gated, reading the list again when it is
// older than its refresh period.
func (g *GatedQueues) Of(ctx context.Context, f FlowStore, db Querier, queues []store.QueueClaim) (map[string]bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.set == nil || time.Since(g.loaded) > gatedRefresh {
		rows, err := f.query(ctx, db, `SELECT queue FROM weft_gated_queues`)
		if err != nil {
			return nil, fmt.Errorf("gated queues: %w", err)
		}
		set := map[string]bool{}
		for rows.Next() {
			var q string
			if err := rows.Scan(&q); err != nil {
				rows.Close()
				return nil, fmt.Errorf("gated queues: %w", err)
			}
			set[q] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("gated queues: %w", err)
		}
		g.set, g.loaded = set, time.Now()
	}
	var out map[string]bool
	for _, qc := range queues {
		if g.set[qc.Queue] {
			if out == nil {
				out = map[string]bool{}
			}
			out[qc.Queue] = true
		}
	}
	return out, nil
}

// Add records queues this store made gated.
func (g *GatedQueues) Add(queues []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.set == nil {
		return // read in full at the next claim
	}
	for _, q := range queues {
		g.set[q] = true
	}
}

// GateColumns are the gated columns of a batch's tasks, as PrepareGates
// decides them.
type GateColumns struct {
	// Gate is each task's gate as JSON, nil for a plain task.
	Gate []*string
	// Limited says each task draws on limits.
	Limited []bool
	// VStart is each task's fair start tag, 0 when it has no fairness key.
	VStart []int64
	queues []string
	// latest lists (task id, key) of the tasks drawing on keep_latest
	// limits.
	latest [][]any
	// cancel lists the keys whose running tasks a new task replaces.
	cancel []string
	// newest is, for each keep_latest key, the batch's last task of it,
	// which replaces the key's other pending tasks.
	newest map[string]string
}

// Any reports whether the batch holds a gated task.
func (c *GateColumns) Any() bool { return c != nil }

// Queues lists the queues the batch made gated.
func (c *GateColumns) Queues() []string {
	if c == nil {
		return nil
	}
	return c.queues
}

// PrepareGates checks a batch's limits against the limits defined and
// decides its gated columns; it returns nil for a batch with no gated
// task, having read nothing. It refuses a task naming an unknown limit, a
// cost no burst can ever allow, and, for a limit that rejects at its cap,
// a task whose key is full (*store.LimitReachedError).
func (f FlowStore) PrepareGates(ctx context.Context, tx Tx, b store.Batch, nowUS int64) (*GateColumns, error) {
	var c *GateColumns
	for i := range b.Len() {
		g := store.GateOf(b.Task(i))
		if g == nil {
			continue
		}
		if c == nil {
			n := b.Len()
			c = &GateColumns{Gate: make([]*string, n), Limited: make([]bool, n), VStart: make([]int64, n), newest: map[string]string{}}
		}
		j, err := json.Marshal(g)
		if err != nil {
			return nil, fmt.Errorf("encode gate: %w", err)
		}
		s := string(j)
		c.Gate[i], c.Limited[i] = &s, len(g.Limits) > 0
	}
	if c == nil {
		return nil, nil
	}
	index := func(i int) int {
		if b.Len() == 1 {
			return -1
		}
		return i
	}
	names := map[string]bool{}
	for i := range b.Len() {
		for name := range b.Task(i).LimitKeys {
			names[name] = true
		}
	}
	limits, err := f.readLimits(ctx, tx, slices.Sorted(maps.Keys(names)))
	if err != nil {
		return nil, err
	}
	queues := map[string]bool{}
	cancel := map[string]bool{}
	for i := range b.Len() {
		t := b.Task(i)
		if c.Gate[i] == nil {
			continue
		}
		queues[t.Queue] = true
		latest := false
		for _, r := range store.Refs(t.LimitKeys) {
			l, ok := limits[r.Limit]
			if !ok {
				return nil, &store.ValidationError{Index: index(i), Field: "limits",
					Message: fmt.Sprintf("no limit is named %q (define it first: PUT /v1/limits/%s)", r.Limit, r.Limit)}
			}
			if l.HasRate() && max(t.Cost, 1) > l.Burst {
				return nil, &store.ValidationError{Index: index(i), Field: "cost",
					Message: fmt.Sprintf("%d exceeds the burst of limit %q (%d): it could never run", max(t.Cost, 1), r.Limit, l.Burst)}
			}
			switch l.OnLimit {
			case store.OnLimitReject:
				used, err := f.inUse(ctx, tx, []string{r.ID()})
				if err != nil {
					return nil, err
				}
				if used[r.ID()] >= l.Cap(r.Key) {
					return nil, &store.LimitReachedError{Index: index(i), Limit: r.Limit, Key: r.Key, InUse: used[r.ID()], Cap: l.Cap(r.Key)}
				}
			case store.OnLimitCancelInProgress:
				cancel[r.ID()] = true
			case store.OnLimitKeepLatest:
				if latest {
					return nil, &store.ValidationError{Index: index(i), Field: "limits",
						Message: "a task may draw on one keep_latest limit at most"}
				}
				latest = true
				if b.FlowID() != "" {
					return nil, &store.ValidationError{Index: index(i), Field: "limits",
						Message: fmt.Sprintf("limit %q keeps the latest task of a key, which a flow member cannot be: its flow would lose it", r.Limit)}
				}
				c.latest = append(c.latest, []any{t.ID, r.ID()})
				c.newest[r.ID()] = t.ID
			}
		}
	}
	if err := f.fairTags(ctx, tx, b, c); err != nil {
		return nil, err
	}
	c.queues = slices.Sorted(maps.Keys(queues))
	c.cancel = slices.Sorted(maps.Keys(cancel))
	return c, nil
}

// fairTags gives the batch's tasks with a fairness key their start tags,
// in batch order, and moves their keys' finish tags.
func (f FlowStore) fairTags(ctx context.Context, tx Tx, b store.Batch, c *GateColumns) error {
	type fk struct{ queue, key string }
	finish := map[fk]int64{}
	weight := map[fk]int{}
	vtime := map[string]int64{}
	for i := range b.Len() {
		t := b.Task(i)
		if t.FairnessKey == "" {
			continue
		}
		k := fk{t.Queue, t.FairnessKey}
		if _, ok := vtime[t.Queue]; !ok {
			// The queue's virtual time is the start tag of the last fair
			// task claimed (kept under the key "", which no task has).
			var v int64
			err := f.queryRow(ctx, tx, `SELECT finish FROM weft_fair_keys WHERE queue = ? AND key = ''`, t.Queue).Scan(&v)
			if err != nil && !isNoRows(err) {
				return fmt.Errorf("fair tags: %w", err)
			}
			vtime[t.Queue] = max(v, 1)
		}
		if _, ok := finish[k]; !ok {
			var last int64
			w := 1
			err := f.queryRow(ctx, tx, `SELECT finish, weight FROM weft_fair_keys WHERE queue = ? AND key = ?`, k.queue, k.key).Scan(&last, &w)
			if err != nil && !isNoRows(err) {
				return fmt.Errorf("fair tags: %w", err)
			}
			finish[k], weight[k] = last, w
		}
		start, end := store.FairStart(vtime[t.Queue], finish[k], weight[k], t.Cost)
		c.VStart[i], finish[k] = start, end
	}
	for _, k := range slices.SortedFunc(maps.Keys(finish), func(a, b fk) int {
		return strings.Compare(a.queue+"\x00"+a.key, b.queue+"\x00"+b.key)
	}) {
		if _, err := f.exec(ctx, tx, `INSERT INTO weft_fair_keys (queue, key, finish) VALUES (?, ?, ?)
			ON CONFLICT (queue, key) DO UPDATE SET finish = excluded.finish`, k.queue, k.key, finish[k]); err != nil {
			return fmt.Errorf("fair tags: %w", err)
		}
	}
	return nil
}

// AfterGatedInsert records, in the enqueue's transaction, what the gated
// tasks it inserted change: their queues take the gated path; a limit
// that cancels in progress asks the running tasks of the new tasks' keys
// to cancel; a limit that keeps the latest cancels the other pending
// tasks of the new tasks' keys, whose count moves it adds to moves.
func (f FlowStore) AfterGatedInsert(ctx context.Context, tx Tx, c *GateColumns, moves store.CountMoves, nowUS int64) error {
	if c == nil {
		return nil
	}
	for _, q := range c.queues {
		if _, err := f.exec(ctx, tx, `INSERT INTO weft_gated_queues (queue, since) VALUES (?, ?) ON CONFLICT (queue) DO NOTHING`, q, nowUS); err != nil {
			return fmt.Errorf("gated queues: %w", err)
		}
	}
	for _, id := range c.cancel {
		rows, err := f.query(ctx, tx, `SELECT t.id, t.attempt FROM weft_limit_holds h JOIN weft_tasks t ON t.id = h.task_id
			WHERE h.id = ? AND t.state = 'running' AND NOT t.cancel_requested ORDER BY t.id`+f.d.lockOf("t"), id)
		if err != nil {
			return fmt.Errorf("cancel in progress: %w", err)
		}
		asked, err := scanIDAttempts(rows)
		if err != nil {
			return fmt.Errorf("cancel in progress: %w", err)
		}
		data := `{"reason":"replaced","limit":` + strconv.Quote(store.ParseLimitRef(id).Limit) + `}`
		for _, a := range asked {
			if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET cancel_requested = TRUE WHERE id = `+f.d.taskArg(), a.id); err != nil {
				return fmt.Errorf("cancel in progress: %w", err)
			}
			if err := f.event(ctx, tx, a.id, store.EventCancelRequested, a.attempt, nowUS, data); err != nil {
				return fmt.Errorf("cancel in progress: %w", err)
			}
		}
	}
	if len(c.latest) > 0 {
		if err := f.insertIgnore(ctx, tx, "weft_limit_latest", []string{"task_id", "id"}, c.latest); err != nil {
			return fmt.Errorf("keep latest: %w", err)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.newest)) {
		if err := f.supersede(ctx, tx, id, c.newest[id], moves, nowUS); err != nil {
			return err
		}
	}
	return nil
}

// supersede cancels the pending tasks of a keep_latest key but its newest.
func (f FlowStore) supersede(ctx context.Context, tx Tx, key, newest string, moves store.CountMoves, nowUS int64) error {
	rows, err := f.query(ctx, tx, `SELECT t.id, t.attempt, t.queue, t.parked_on FROM weft_limit_latest l
		JOIN weft_tasks t ON t.id = l.task_id AND t.state = 'pending'
		WHERE l.id = ? AND l.task_id <> ? ORDER BY t.id`+f.d.lockOf("t"), key, newest)
	if err != nil {
		return fmt.Errorf("keep latest: %w", err)
	}
	type old struct {
		id, queue string
		attempt   int
		parkedOn  *string
	}
	var olds []old
	for rows.Next() {
		var o old
		if err := rows.Scan(&o.id, &o.attempt, &o.queue, &o.parkedOn); err != nil {
			rows.Close()
			return fmt.Errorf("keep latest: %w", err)
		}
		olds = append(olds, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("keep latest: %w", err)
	}
	data := `{"reason":"superseded","by":` + strconv.Quote(newest) + `}`
	parked := map[string]int{}
	for _, o := range olds {
		if _, err := f.exec(ctx, tx, `UPDATE weft_tasks SET state = '`+string(store.StateCancelled)+`', finalized_at = ?, parked_on = NULL,
			blocked_reason = NULL WHERE id = `+f.d.taskArg(), nowUS, o.id); err != nil {
			return fmt.Errorf("keep latest: %w", err)
		}
		if err := f.event(ctx, tx, o.id, store.EventCancelled, o.attempt, nowUS, data); err != nil {
			return fmt.Errorf("keep latest: %w", err)
		}
		moves.Move(o.queue, store.StatePending, store.StateCancelled, 1)
		if o.parkedOn != nil {
			parked[*o.parkedOn]++
		}
	}
	// The key's other rows go too, with those of tasks that ended
	// otherwise; the replaced tasks leave the tasks set aside.
	if _, err := f.exec(ctx, tx, `DELETE FROM weft_limit_latest WHERE id = ? AND task_id <> ?`, key, newest); err != nil {
		return fmt.Errorf("keep latest: %w", err)
	}
	ids := make([]string, len(olds))
	for i, o := range olds {
		ids[i] = o.id
	}
	if err := f.dropParked(ctx, tx, ids, parked); err != nil {
		return fmt.Errorf("keep latest: %w", err)
	}
	return nil
}

// dropParked removes tasks from the set-aside table, and their counts —
// parked, by key — from their keys.
func (f FlowStore) dropParked(ctx context.Context, tx Tx, taskIDs []string, parked map[string]int) error {
	if err := chunks(taskIDs, func(part []string) error {
		_, err := f.exec(ctx, tx, `DELETE FROM weft_limit_parked WHERE task_id IN `+in(len(part)), anys(part)...)
		return err
	}); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(parked)) {
		if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET parked = CASE WHEN parked > ? THEN parked - ? ELSE 0 END WHERE id = ?`,
			parked[id], parked[id], id); err != nil {
			return err
		}
	}
	return nil
}

type idAttempt struct {
	id      string
	attempt int
}

func scanIDAttempts(rows Rows) ([]idAttempt, error) {
	defer rows.Close()
	var out []idAttempt
	for rows.Next() {
		var a idAttempt
		if err := rows.Scan(&a.id, &a.attempt); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// event appends one event with JSON data.
func (f FlowStore) event(ctx context.Context, tx Tx, taskID string, typ store.EventType, attempt int, atUS int64, data string) error {
	_, err := f.exec(ctx, tx, `INSERT INTO weft_events (task_id, type, attempt, at, data) VALUES (?, ?, ?, ?, `+f.d.JSON+`)`,
		taskID, string(typ), attempt, atUS, data)
	return err
}

// candidate is a pending task a gated claim may take.
type candidate struct {
	id       string
	queue    string
	priority int64
	vstart   int64
	runAt    int64
	gate     *store.Gate
	refs     []store.LimitRef
}

func (c candidate) before(o candidate) bool {
	switch {
	case c.priority != o.priority:
		return c.priority > o.priority
	case c.vstart != o.vstart:
		return c.vstart < o.vstart
	case c.runAt != o.runAt:
		return c.runAt < o.runAt
	}
	return c.id < o.id
}

// ClaimGated claims from gated queues: it reads each queue's plain and
// gated candidates in claim order (the gated ones only when the worker's
// labels satisfy their requirements, decided in the statement), locks the
// keys they draw on in one order, admits what the limits allow
// (store.Admit), claims the admitted ones through claim (the backend's
// claim statement, by id), takes their slots and units, and sets aside,
// with the reason, the candidates whose key is full or out of units, so
// later claims skip them until the key has room. It runs in the claim's
// transaction.
func (f FlowStore) ClaimGated(ctx context.Context, tx Tx, req store.ClaimRequest, queues []store.QueueClaim, nowUS int64,
	claim func(ids []string) ([]*store.Task, error)) ([]*store.Task, error) {
	labels, nums := labelArgs(req.Labels)
	var all []candidate
	take := map[string]int{}
	for _, qc := range queues {
		if qc.Limit <= 0 {
			continue
		}
		take[qc.Queue] = qc.Limit
		kinds := ""
		var kindArgs []any
		if len(req.Kinds) > 0 {
			kinds = ` AND kind IN ` + in(len(req.Kinds))
			kindArgs = anys(req.Kinds)
		}
		paused := ` AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = ? AND paused = TRUE)`
		a := append([]any{qc.Queue, nowUS}, kindArgs...)
		a = append(a, qc.Queue, qc.Limit)
		plain, err := f.candidates(ctx, tx, `SELECT id, queue, priority, 0, run_at, CAST(NULL AS TEXT) FROM weft_tasks
			WHERE state = 'pending' AND gate IS NULL AND queue = `+f.d.taskArg()+` AND run_at <= `+f.d.taskArg()+kinds+paused+`
			ORDER BY priority DESC, run_at, id LIMIT ?`+f.d.skipLocked(), a)
		if err != nil {
			return nil, err
		}
		all = append(all, plain...)
		match, matchArgs := f.d.requiresMatch(labels, nums)
		a = append([]any{qc.Queue, nowUS}, kindArgs...)
		a = append(a, matchArgs...)
		a = append(a, qc.Queue, 2*qc.Limit+64)
		gated, err := f.candidates(ctx, tx, `SELECT id, queue, priority, vstart, run_at, gate FROM weft_tasks
			WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL AND queue = `+f.d.taskArg()+` AND run_at <= `+f.d.taskArg()+kinds+match+paused+`
			ORDER BY priority DESC, vstart, run_at, id LIMIT ?`+f.d.skipLocked(), a)
		if err != nil {
			return nil, err
		}
		all = append(all, gated...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].before(all[j]) })
	state, limits, err := f.lockKeys(ctx, tx, all, nowUS)
	if err != nil {
		return nil, err
	}
	var (
		admitted []string
		holds    [][]any
		parked   = map[string][]candidate{}
		reasons  = map[string]*store.BlockedReason{}
		// vnow is each queue's virtual time: the start tag of the last
		// fair task the claim took.
		vnow        = map[string]int64{}
		replaceable []string
	)
	for _, c := range all {
		if take[c.queue] == 0 {
			continue
		}
		if len(c.refs) > 0 {
			if why := store.Admit(state, c.refs, c.gate.Cost, nowUS); why != nil {
				ref := store.LimitRef{Limit: why.Limit, Key: why.Key}.ID()
				parked[ref] = append(parked[ref], c)
				reasons[c.id] = why
				continue
			}
			for _, r := range c.refs {
				l, ok := limits[r.Limit]
				if ok && l.HasCap() {
					holds = append(holds, []any{c.id, r.ID()})
				}
				if ok && l.OnLimit == store.OnLimitKeepLatest {
					replaceable = append(replaceable, c.id)
				}
			}
		}
		admitted = append(admitted, c.id)
		take[c.queue]--
		if c.gate != nil && c.gate.Fair != "" {
			vnow[c.queue] = max(vnow[c.queue], c.vstart)
		}
	}
	var claimed []*store.Task
	if len(admitted) > 0 {
		if claimed, err = claim(admitted); err != nil {
			return nil, err
		}
	}
	if err := f.advanceVirtualTime(ctx, tx, vnow); err != nil {
		return nil, err
	}
	// A claimed task is no longer replaceable by a newer one of its
	// keep_latest key.
	if len(replaceable) > 0 {
		if err := chunks(replaceable, func(part []string) error {
			_, err := f.exec(ctx, tx, `DELETE FROM weft_limit_latest WHERE task_id IN `+in(len(part)), anys(part)...)
			return err
		}); err != nil {
			return nil, fmt.Errorf("claim: keep latest: %w", err)
		}
	}
	if len(holds) > 0 {
		if err := f.insertIgnore(ctx, tx, "weft_limit_holds", []string{"task_id", "id"}, holds); err != nil {
			return nil, fmt.Errorf("claim: take slots: %w", err)
		}
	}
	if err := f.writeKeys(ctx, tx, state, parked, reasons, nowUS); err != nil {
		return nil, err
	}
	return claimed, nil
}

// advanceVirtualTime moves the queues' virtual times forward to v.
func (f FlowStore) advanceVirtualTime(ctx context.Context, tx Tx, v map[string]int64) error {
	for _, q := range slices.Sorted(maps.Keys(v)) {
		if _, err := f.exec(ctx, tx, `INSERT INTO weft_fair_keys (queue, key, finish) VALUES (?, '', ?)
			ON CONFLICT (queue, key) DO UPDATE SET finish = CASE WHEN excluded.finish > weft_fair_keys.finish
				THEN excluded.finish ELSE weft_fair_keys.finish END`, q, v[q]); err != nil {
			return fmt.Errorf("claim: virtual time: %w", err)
		}
	}
	return nil
}

// candidates reads candidate rows (id, queue, priority, vstart, run_at,
// gate).
func (f FlowStore) candidates(ctx context.Context, tx Tx, query string, a []any) ([]candidate, error) {
	rows, err := f.query(ctx, tx, query, a...)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var (
			c    candidate
			gate *string
		)
		if err := rows.Scan(&c.id, &c.queue, &c.priority, &c.vstart, &c.runAt, &gate); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		if gate != nil {
			c.gate = &store.Gate{}
			if err := json.Unmarshal([]byte(*gate), c.gate); err != nil {
				return nil, fmt.Errorf("claim: task %s: decode gate: %w", c.id, err)
			}
			c.refs = store.Refs(c.gate.Limits)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// lockKeys makes sure the candidates' keys have rows, locks them in id
// order (so claims cannot deadlock), and reads their state: the limits,
// the rates' timestamps and the slots held by running tasks.
func (f FlowStore) lockKeys(ctx context.Context, tx Tx, all []candidate, nowUS int64) (map[store.LimitRef]*store.Admission, map[string]store.Limit, error) {
	refs := map[store.LimitRef]bool{}
	names := map[string]bool{}
	for _, c := range all {
		for _, r := range c.refs {
			refs[r], names[r.Limit] = true, true
		}
	}
	if len(refs) == 0 {
		return nil, nil, nil
	}
	limits, err := f.readLimits(ctx, tx, slices.Sorted(maps.Keys(names)))
	if err != nil {
		return nil, nil, err
	}
	ordered := slices.SortedFunc(maps.Keys(refs), func(a, b store.LimitRef) int { return strings.Compare(a.ID(), b.ID()) })
	ids := make([]string, 0, len(ordered))
	var rows [][]any
	for _, r := range ordered {
		if _, ok := limits[r.Limit]; !ok {
			continue
		}
		ids = append(ids, r.ID())
		rows = append(rows, []any{r.ID(), r.Limit, r.Key, nowUS})
	}
	state := make(map[store.LimitRef]*store.Admission, len(ordered))
	for _, r := range ordered {
		l, ok := limits[r.Limit]
		state[r] = &store.Admission{Limit: l, Defined: ok}
	}
	if len(ids) == 0 {
		return state, limits, nil
	}
	if err := f.insertIgnore(ctx, tx, "weft_limit_keys", []string{"id", "name", "key", "updated_at"}, rows); err != nil {
		return nil, nil, fmt.Errorf("claim: limit keys: %w", err)
	}
	err = chunks(ids, func(part []string) error {
		rs, err := f.query(ctx, tx, `SELECT id, tat FROM weft_limit_keys WHERE id IN `+in(len(part))+` ORDER BY id`+f.d.lockSuffix(), anys(part)...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var (
				id  string
				tat int64
			)
			if err := rs.Scan(&id, &tat); err != nil {
				return err
			}
			state[store.ParseLimitRef(id)].TAT = tat
		}
		return rs.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claim: limit keys: %w", err)
	}
	used, err := f.inUse(ctx, tx, ids)
	if err != nil {
		return nil, nil, err
	}
	for id, n := range used {
		state[store.ParseLimitRef(id)].InUse = n
	}
	return state, limits, nil
}

// writeKeys stores the keys' new timestamps, and sets aside the refused
// candidates under the key that refused them: a key at its cap is
// reconsidered when one of its slots is released, a key out of units when
// its rate allows again.
func (f FlowStore) writeKeys(ctx context.Context, tx Tx, state map[store.LimitRef]*store.Admission, parked map[string][]candidate,
	reasons map[string]*store.BlockedReason, nowUS int64) error {
	for _, r := range slices.SortedFunc(maps.Keys(state), func(a, b store.LimitRef) int { return strings.Compare(a.ID(), b.ID()) }) {
		a := state[r]
		if !a.Defined {
			continue
		}
		set, args := `tat = ?, updated_at = ?`, []any{a.TAT, nowUS}
		if cs := parked[r.ID()]; len(cs) > 0 {
			set += `, parked = parked + ?`
			args = append(args, len(cs))
			if until := reasons[cs[0].id].Until; !until.IsZero() {
				set += `, ready_at = CASE WHEN ready_at IS NULL OR ready_at > ? THEN ? ELSE ready_at END`
				args = append(args, Micros(until), Micros(until))
			}
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET `+set+` WHERE id = ?`, append(args, r.ID())...); err != nil {
			return fmt.Errorf("claim: limit keys: %w", err)
		}
	}
	for _, ref := range slices.Sorted(maps.Keys(parked)) {
		cs := parked[ref]
		values := make([][]any, 0, len(cs))
		rows := make([][]any, 0, len(cs))
		for _, c := range cs {
			b, _ := json.Marshal(reasons[c.id])
			values = append(values, []any{c.id, ref, string(b)})
			rows = append(rows, []any{c.id, ref, c.priority, c.vstart, c.runAt})
		}
		q, a := updateFromText("weft_tasks", "id", `parked_on = v.c1, blocked_reason = v.c2`, values)
		if _, err := f.exec(ctx, tx, q, a...); err != nil {
			return fmt.Errorf("claim: set aside: %w", err)
		}
		if err := f.insertIgnore(ctx, tx, "weft_limit_parked", []string{"task_id", "id", "priority", "vstart", "run_at"}, rows); err != nil {
			return fmt.Errorf("claim: set aside: %w", err)
		}
	}
	return nil
}

// updateFromText is updateFrom for rows of text values.
func updateFromText(table, key, set string, values [][]any) (string, []any) {
	width := len(values[0])
	var b strings.Builder
	args := make([]any, 0, width*len(values))
	for i, row := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(" + strings.TrimSuffix(strings.Repeat("CAST(? AS TEXT), ", width), ", ") + ")")
		args = append(args, row...)
	}
	cols := make([]string, width)
	cols[0] = "column1 AS k"
	for i := 1; i < width; i++ {
		cols[i] = fmt.Sprintf("column%d AS c%d", i+1, i)
	}
	return `UPDATE ` + table + ` SET ` + set + `
		FROM (SELECT ` + strings.Join(cols, ", ") + ` FROM (VALUES ` + b.String() + `) AS vals) AS v
		WHERE ` + table + `.` + key + ` = v.k`, args
}

// labelArgs are a worker's labels as the requirement match reads them:
// every label as text, and those that are numbers as numbers.
func labelArgs(labels map[string]string) (text, nums string) {
	if len(labels) == 0 {
		return "", ""
	}
	n := map[string]float64{}
	for k, v := range labels {
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			n[k] = x
		}
	}
	tb, _ := json.Marshal(labels)
	nb, _ := json.Marshal(n)
	return string(tb), string(nb)
}

// Unpark makes claimable again the tasks set aside for keys that may have
// room now (a slot released, the rate allowing again, the limit changed):
// as many per key as it has room for, best first. It runs in a
// transaction of its own, ahead of a gated claim, and skips keys another
// transaction holds.
func (f FlowStore) Unpark(ctx context.Context, tx Tx, nowUS int64) (int, error) {
	rows, err := f.query(ctx, tx, `SELECT id, tat, parked FROM weft_limit_keys WHERE parked > 0 AND ready_at <= ?
		ORDER BY ready_at LIMIT 64`+f.d.skipLocked(), nowUS)
	if err != nil {
		return 0, fmt.Errorf("unpark: %w", err)
	}
	type key struct {
		ref    store.LimitRef
		tat    int64
		parked int
	}
	var keys []key
	for rows.Next() {
		var (
			id string
			k  key
		)
		if err := rows.Scan(&id, &k.tat, &k.parked); err != nil {
			rows.Close()
			return 0, fmt.Errorf("unpark: %w", err)
		}
		k.ref = store.ParseLimitRef(id)
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(keys) == 0 {
		return 0, err
	}
	names := map[string]bool{}
	ids := make([]string, len(keys))
	for i, k := range keys {
		names[k.ref.Limit], ids[i] = true, k.ref.ID()
	}
	limits, err := f.readLimits(ctx, tx, slices.Sorted(maps.Keys(names)))
	if err != nil {
		return 0, err
	}
	used, err := f.inUse(ctx, tx, ids)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, k := range keys {
		l, ok := limits[k.ref.Limit]
		room, next := roomOf(l, ok, k.ref.Key, used[k.ref.ID()], k.tat, k.parked, nowUS)
		n, taken := 0, 0
		if room > 0 {
			var err error
			if n, taken, err = f.unparkKey(ctx, tx, k.ref.ID(), room); err != nil {
				return 0, err
			}
		}
		left := k.parked - taken
		if taken < room || left < 0 {
			left = 0 // fewer were set aside than counted: none is left
		}
		var readyAt any
		if left > 0 && next > 0 {
			readyAt = next
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET parked = ?, ready_at = ?, updated_at = ? WHERE id = ?`,
			left, readyAt, nowUS, k.ref.ID()); err != nil {
			return 0, fmt.Errorf("unpark: %w", err)
		}
		total += n
	}
	return total, nil
}

// unparkKey makes claimable up to room of the tasks set aside for key,
// best first: it returns how many it made claimable and how many rows it
// took from the set-aside table (more when some tasks had ended
// otherwise).
func (f FlowStore) unparkKey(ctx context.Context, tx Tx, key string, room int) (n, taken int, err error) {
	rows, err := f.query(ctx, tx, `SELECT task_id FROM weft_limit_parked WHERE id = ?
		ORDER BY priority DESC, vstart, run_at, task_id LIMIT ?`, key, room)
	if err != nil {
		return 0, 0, fmt.Errorf("unpark: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("unpark: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return 0, 0, err
	}
	moved, err := f.exec(ctx, tx, `UPDATE weft_tasks SET parked_on = NULL, blocked_reason = NULL
		WHERE id IN `+in(len(ids))+` AND state = 'pending'`, anys(ids)...)
	if err != nil {
		return 0, 0, fmt.Errorf("unpark: %w", err)
	}
	if _, err := f.exec(ctx, tx, `DELETE FROM weft_limit_parked WHERE task_id IN `+in(len(ids)), anys(ids)...); err != nil {
		return 0, 0, fmt.Errorf("unpark: %w", err)
	}
	return int(moved), len(ids), nil
}

// roomOf is how many tasks set aside for a key may be claimable now, and,
// when some must stay aside, when to look again (0: when a slot is
// released).
func roomOf(l store.Limit, defined bool, key string, inUse int, tat int64, parked int, nowUS int64) (room int, next int64) {
	if !defined {
		return parked, 0
	}
	room = parked
	if l.HasCap() {
		room = min(room, max(l.Cap(key)-inUse, 0))
	}
	if l.HasRate() {
		t := l.Interval()
		units := int((nowUS + int64(l.Burst)*t - max(tat, nowUS)) / t)
		room = min(room, max(units, 0))
		next = max(tat, nowUS) + t - int64(l.Burst)*t
		if room > 0 {
			next = nowUS + int64(room)*t
		}
	}
	return room, next
}

// Release gives back the slots of tasks that stopped running (finished,
// retried, suspended, rescued): their keys' set-aside tasks are
// reconsidered at the next claim. held holds back the rate limits of the
// tasks that met an upstream's limit, until their time.
func (f FlowStore) Release(ctx context.Context, tx Tx, taskIDs []string, held map[string]int64, nowUS int64) (bool, error) {
	keys := map[string]bool{}
	woke := false
	err := chunks(taskIDs, func(part []string) error {
		rows, err := f.query(ctx, tx, `DELETE FROM weft_limit_holds WHERE task_id IN `+in(len(part))+` RETURNING id`, anys(part)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			keys[id] = true
		}
		return rows.Err()
	})
	if err != nil {
		return false, fmt.Errorf("release slots: %w", err)
	}
	ids := slices.Sorted(maps.Keys(keys))
	if len(ids) > 0 {
		// Locked in id order, as claims lock them.
		if _, err := f.query2(ctx, tx, `SELECT id FROM weft_limit_keys WHERE id IN `+in(len(ids))+` AND parked > 0 ORDER BY id`+f.d.lockSuffix(), anys(ids)...); err != nil {
			return false, fmt.Errorf("release slots: %w", err)
		}
		n, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET ready_at = ? WHERE id IN `+in(len(ids))+` AND parked > 0`,
			append([]any{nowUS}, anys(ids)...)...)
		if err != nil {
			return false, fmt.Errorf("release slots: %w", err)
		}
		woke = n > 0
	}
	if len(held) > 0 {
		if err := f.holdRates(ctx, tx, held, nowUS); err != nil {
			return false, err
		}
	}
	return woke, nil
}

// query2 runs a query for its locks and drains it.
func (f FlowStore) query2(ctx context.Context, tx Tx, query string, args ...any) (int, error) {
	rows, err := f.query(ctx, tx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// holdRates holds back, until their time, the rate limits of the tasks
// in held (task id → until, in microseconds).
func (f FlowStore) holdRates(ctx context.Context, tx Tx, held map[string]int64, nowUS int64) error {
	taskIDs := slices.Sorted(maps.Keys(held))
	until := map[store.LimitRef]int64{}
	names := map[string]bool{}
	for _, id := range taskIDs {
		var gate *string
		if err := f.queryRow(ctx, tx, `SELECT gate FROM weft_tasks WHERE id = `+f.d.taskArg(), id).Scan(&gate); err != nil {
			return fmt.Errorf("hold rate: %w", err)
		}
		if gate == nil {
			continue
		}
		var g store.Gate
		if err := json.Unmarshal([]byte(*gate), &g); err != nil {
			return fmt.Errorf("hold rate: task %s: %w", id, err)
		}
		for _, r := range store.Refs(g.Limits) {
			until[r] = max(until[r], held[id])
			names[r.Limit] = true
		}
	}
	limits, err := f.readLimits(ctx, tx, slices.Sorted(maps.Keys(names)))
	if err != nil {
		return err
	}
	for _, r := range slices.SortedFunc(maps.Keys(until), func(a, b store.LimitRef) int { return strings.Compare(a.ID(), b.ID()) }) {
		l, ok := limits[r.Limit]
		if !ok || !l.HasRate() {
			continue
		}
		if err := f.insertIgnore(ctx, tx, "weft_limit_keys", []string{"id", "name", "key", "updated_at"}, [][]any{{r.ID(), r.Limit, r.Key, nowUS}}); err != nil {
			return fmt.Errorf("hold rate: %w", err)
		}
		var tat int64
		if err := f.queryRow(ctx, tx, `SELECT tat FROM weft_limit_keys WHERE id = ?`+f.d.lockSuffix(), r.ID()).Scan(&tat); err != nil {
			return fmt.Errorf("hold rate: %w", err)
		}
		if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET tat = ?, updated_at = ? WHERE id = ?`,
			store.HoldTAT(l, tat, until[r]), nowUS, r.ID()); err != nil {
			return fmt.Errorf("hold rate: %w", err)
		}
	}
	return nil
}

// ReconcileLimits checks the limits' counters against the task rows and
// corrects them: slots left by tasks no longer running are dropped, the
// counts of set-aside tasks recomputed, and keys with room and tasks set
// aside reconsidered. A correction means a path that ends a run did not
// release its slots: it is reported, and there should be none.
func (f FlowStore) ReconcileLimits(ctx context.Context, tx Tx, now time.Time) (store.LimitDrift, error) {
	nowUS := Micros(now)
	var d store.LimitDrift
	rows, err := f.query(ctx, tx, `SELECT h.task_id, h.id FROM weft_limit_holds h
		LEFT JOIN weft_tasks t ON t.id = h.task_id AND t.state = 'running'
		WHERE t.id IS NULL ORDER BY h.task_id, h.id LIMIT 10000`)
	if err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	var stale [][2]string
	for rows.Next() {
		var s [2]string
		if err := rows.Scan(&s[0], &s[1]); err != nil {
			rows.Close()
			return d, fmt.Errorf("reconcile limits: %w", err)
		}
		stale = append(stale, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	seen := map[string]bool{}
	for _, s := range stale {
		if _, err := f.exec(ctx, tx, `DELETE FROM weft_limit_holds WHERE task_id = ? AND id = ?`, s[0], s[1]); err != nil {
			return d, fmt.Errorf("reconcile limits: %w", err)
		}
		if !seen[s[1]] {
			seen[s[1]] = true
			d.Keys = append(d.Keys, store.ParseLimitRef(s[1]))
		}
	}
	d.StaleHolds = len(stale)
	// Tasks that ended while set aside or replaceable (cancelled, deleted
	// by an operator) leave rows that only claims and replacements clear:
	// drop them.
	for _, q := range []string{
		`DELETE FROM weft_limit_parked WHERE NOT EXISTS (SELECT 1 FROM weft_tasks t WHERE t.id = weft_limit_parked.task_id AND t.state = 'pending')`,
		`DELETE FROM weft_limit_latest WHERE NOT EXISTS (SELECT 1 FROM weft_tasks t WHERE t.id = weft_limit_latest.task_id AND t.state = 'pending')`,
	} {
		if _, err := f.exec(ctx, tx, q); err != nil {
			return d, fmt.Errorf("reconcile limits: %w", err)
		}
	}
	// The counts of set-aside tasks, from the rows.
	actual := map[string]int{}
	rows, err = f.query(ctx, tx, `SELECT id, count(*) FROM weft_limit_parked GROUP BY id`)
	if err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	for rows.Next() {
		var (
			id string
			n  int
		)
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return d, fmt.Errorf("reconcile limits: %w", err)
		}
		actual[id] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	counted := map[string]int{}
	rows, err = f.query(ctx, tx, `SELECT id, parked FROM weft_limit_keys WHERE parked > 0`)
	if err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	for rows.Next() {
		var (
			id string
			n  int
		)
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return d, fmt.Errorf("reconcile limits: %w", err)
		}
		counted[id] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	for _, id := range slices.Sorted(maps.Keys(actual)) {
		if counted[id] != actual[id] {
			if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET parked = ? WHERE id = ?`, actual[id], id); err != nil {
				return d, fmt.Errorf("reconcile limits: %w", err)
			}
			if !seen[id] {
				seen[id] = true
				d.Keys = append(d.Keys, store.ParseLimitRef(id))
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(counted)) {
		if _, ok := actual[id]; !ok {
			if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET parked = 0, ready_at = NULL WHERE id = ?`, id); err != nil {
				return d, fmt.Errorf("reconcile limits: %w", err)
			}
		}
	}
	// Keys with tasks set aside are looked at again: the claims' own
	// unparking does this as slots are released; this catches up on any
	// that no claim saw.
	if _, err := f.exec(ctx, tx, `UPDATE weft_limit_keys SET ready_at = ? WHERE parked > 0 AND ready_at IS NULL`, nowUS); err != nil {
		return d, fmt.Errorf("reconcile limits: %w", err)
	}
	n, err := f.Unpark(ctx, tx, nowUS)
	if err != nil {
		return d, err
	}
	d.Released = n
	return d, nil
}

// NextGated adds to next, the earliest run_at of queues' plain tasks (ok
// when there is one), what their gated queues hold: the earliest run_at
// of their gated tasks due after now, and the earliest time a key with tasks set aside
// is to be looked at again — a claim then makes them claimable.
func (f FlowStore) NextGated(ctx context.Context, db Querier, queues, kinds []string, gated map[string]bool, now, next time.Time, ok bool) (time.Time, bool, error) {
	consider := func(at *int64) {
		if at != nil && (!ok || FromMicros(*at).Before(next)) {
			next, ok = FromMicros(*at), true
		}
	}
	kindFilter := ""
	if len(kinds) > 0 {
		kindFilter = ` AND kind IN ` + in(len(kinds))
	}
	for _, q := range queues {
		if !gated[q] {
			continue
		}
		var at *int64
		// Only those due later: one due now that the last claim left is
		// one this worker cannot take (its labels), and must not make it
		// claim again at once.
		a := append([]any{q, Micros(now)}, anys(kinds)...)
		if err := f.queryRow(ctx, db, `SELECT min(run_at) FROM weft_tasks
			WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL AND queue = `+f.d.taskArg()+` AND run_at > `+f.d.taskArg()+kindFilter,
			a...).Scan(&at); err != nil {
			return next, ok, fmt.Errorf("next run_at: %w", err)
		}
		consider(at)
	}
	var at *int64
	if err := f.queryRow(ctx, db, `SELECT min(ready_at) FROM weft_limit_keys WHERE parked > 0`).Scan(&at); err != nil {
		return next, ok, fmt.Errorf("next run_at: %w", err)
	}
	consider(at)
	return next, ok, nil
}

// insertIgnore inserts rows into table, leaving those whose key exists.
func (f FlowStore) insertIgnore(ctx context.Context, tx Tx, table string, columns []string, rows [][]any) error {
	per := max(1, 500/len(columns))
	for len(rows) > 0 {
		n := min(len(rows), per)
		var b strings.Builder
		args := make([]any, 0, n*len(columns))
		for i, row := range rows[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(in(len(columns)))
			args = append(args, row...)
		}
		if _, err := f.exec(ctx, tx, `INSERT INTO `+table+` (`+strings.Join(columns, ", ")+`) VALUES `+b.String()+` ON CONFLICT DO NOTHING`, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// requiresMatch is the condition, on a weft_tasks row, that a worker with
// labels (JSON, all as text) and nums (JSON, those that are numbers)
// satisfies the task's requirements; with no labels, that the task has
// none.
func (d *Dialect) requiresMatch(labels, nums string) (string, []any) {
	if labels == "" {
		return ` AND ` + d.RequiresNone, nil
	}
	return ` AND ` + d.RequiresMet, []any{labels, nums, nums}
}

// LimitedFinished lists the limited tasks among outcomes that applied
// recorded, and, for those whose handler met an upstream's rate limit,
// until when their rate limits are held back.
func LimitedFinished(outcomes []store.Outcome, applied map[store.LeaseKey]store.FinishedRow) (ids []string, held map[string]int64) {
	for _, o := range outcomes {
		row, ok := applied[store.LeaseKey{TaskID: o.TaskID, Epoch: o.Epoch}]
		if !ok || !row.Limited {
			continue
		}
		ids = append(ids, o.TaskID)
		if o.RateLimited && o.State == store.StatePending {
			if held == nil {
				held = map[string]int64{}
			}
			held[o.TaskID] = Micros(o.RunAt)
		}
	}
	return ids, held
}

// SplitGated separates the queues whose claims take the gated path.
func SplitGated(queues []store.QueueClaim, gated map[string]bool) (plain, other []store.QueueClaim) {
	if len(gated) == 0 {
		return queues, nil
	}
	for _, qc := range queues {
		if gated[qc.Queue] {
			other = append(other, qc)
		} else {
			plain = append(plain, qc)
		}
	}
	return plain, other
}
