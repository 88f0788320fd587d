package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// uniqueHeld is the SQL list of the states in which a task holds its unique
// key; it matches the partial unique index.
var uniqueHeld = store.SQLList(store.KeyHoldingStates())

// taskColumns is the column list every task read uses, in scanTask's order.
const taskColumns = `id, kind, queue, args, priority, state, run_at, attempt, max_attempts,
	attempt_timeout_us, errors, result, unique_key, metadata, lease_owner, lease_epoch,
	lease_expires_at, cancel_requested, created_at, attempted_at, finalized_at, flow_id, flow_key, gate, blocked_reason`

func scanTask(r sqlbackend.Row) (*store.Task, error) {
	var (
		t                                  store.Task
		state                              string
		runAt, createdAt, timeoutUS        int64
		errs, result, metadata             []byte
		uniqueKey, owner, flowID, flowKey  *string
		leaseExp, attemptedAt, finalizedAt *int64
		gate, blocked                      sql.NullString
	)
	if err := r.Scan(&t.ID, &t.Kind, &t.Queue, &t.Args, &t.Priority, &state, &runAt, &t.Attempt, &t.MaxAttempts,
		&timeoutUS, &errs, &result, &uniqueKey, &metadata, &owner, &t.LeaseEpoch,
		&leaseExp, &t.CancelRequested, &createdAt, &attemptedAt, &finalizedAt, &flowID, &flowKey, &gate, &blocked); err != nil {
		return nil, err
	}
	if err := sqlbackend.ScanGate(gate, &t); err != nil {
		return nil, err
	}
	t.State = store.State(state)
	if t.State == store.StatePending {
		t.Blocked = sqlbackend.ScanBlocked(blocked)
	}
	if flowID != nil && flowKey != nil {
		t.FlowID, t.FlowKey = *flowID, *flowKey
	}
	t.RunAt, t.CreatedAt = fromMicros(runAt), fromMicros(createdAt)
	t.AttemptTimeout = time.Duration(timeoutUS) * time.Microsecond
	if len(errs) > 0 {
		if err := json.Unmarshal(errs, &t.Errors); err != nil {
			return nil, fmt.Errorf("task %s: decode error history: %w", t.ID, err)
		}
	}
	if len(result) > 0 {
		t.Result = result
	}
	if len(metadata) > 0 {
		t.Metadata = metadata
	}
	if uniqueKey != nil {
		t.UniqueKey = *uniqueKey
	}
	if owner != nil {
		t.LeaseOwner = *owner
	}
	t.LeaseExpiresAt, t.AttemptedAt, t.FinalizedAt = nullMicros(leaseExp), nullMicros(attemptedAt), nullMicros(finalizedAt)
	return &t, nil
}

func nullText(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// applyCounts appends the counter changes as delta rows: inserts take no
// lock that another transaction waits for (see migration 0002).
func applyCounts(ctx context.Context, tx execer, c store.CountMoves) error {
	queues, states, deltas := c.Rows()
	if len(deltas) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO weft_count_deltas (queue, state, n)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])`, queues, states, deltas)
	if err != nil {
		return fmt.Errorf("update counts: %w", err)
	}
	return nil
}

// applyChange writes a transition's side effects in its transaction and
// says whether to notify listeners at commit.
func applyChange(ctx context.Context, tx execer, ch store.Change, nowUS int64) (notify bool, err error) {
	if err := applyCounts(ctx, tx, ch.Counts); err != nil {
		return false, err
	}
	return ch.Wake, insertEvents(ctx, tx, ch.Events, nowUS)
}

func insertEvents(ctx context.Context, tx execer, events []store.EventRecord, at int64) error {
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	ids, types, attempts, data, ats := make([]string, n), make([]string, n), make([]int32, n), make([]*string, n), make([]*int64, n)
	for i, e := range events {
		ids[i], types[i], attempts[i], data[i] = e.TaskID, string(e.Type), int32(e.Attempt), nullText(e.Data)
		if !e.At.IsZero() {
			t := micros(e.At)
			ats[i] = &t
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO weft_events (task_id, type, attempt, at, data)
		SELECT id, type, attempt, coalesce(at, $5), data::jsonb
		FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $6::bigint[]) AS e(id, type, attempt, data, at)`,
		ids, types, attempts, data, at, ats)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// Enqueue implements store.Store.
func (s *Store) Enqueue(ctx context.Context, tasks []store.NewTask) ([]store.EnqueueResult, error) {
	b, err := store.Prepare(tasks, s.opts.Limits, s.now())
	if err != nil {
		return nil, err
	}
	var res []store.EnqueueResult
	for attempt := 1; ; attempt++ {
		err := s.tx(ctx, func(tx pgx.Tx) (bool, error) {
			var err error
			res, err = s.insertTasks(ctx, tx, b)
			return true, err
		})
		// Two enqueues of one unique key raced: the retry finds the winner.
		if err != nil && isUniqueViolation(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return res, nil
	}
}

// TxEnqueuer implements store.Store: PostgreSQL enqueues in a pgx.Tx, or in
// a *sql.Tx opened through pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib).
func (s *Store) TxEnqueuer() store.TxEnqueuer { return txEnqueuer{s} }

type txEnqueuer struct{ s *Store }

// EnqueueTx implements store.TxEnqueuer: the tasks are written, and
// listeners notified, when the caller's transaction commits.
func (e txEnqueuer) EnqueueTx(ctx context.Context, txAny any, tasks []store.NewTask) ([]store.EnqueueResult, error) {
	switch tx := txAny.(type) {
	case pgx.Tx:
		if tx == nil {
			break
		}
		return e.s.enqueueIn(ctx, tx, tasks)
	case *sql.Tx:
		if tx == nil {
			break
		}
		return e.s.enqueueIn(ctx, sqlTx{tx}, tasks)
	case nil:
	default:
		return nil, fmt.Errorf("postgres: %T: %w", txAny, store.ErrTxUnsupported)
	}
	return nil, &store.ValidationError{Index: -1, Field: "tx", Message: "must not be nil"}
}

func (s *Store) enqueueIn(ctx context.Context, tx execer, tasks []store.NewTask) ([]store.EnqueueResult, error) {
	b, err := store.Prepare(tasks, s.opts.Limits, s.now())
	if err != nil {
		return nil, err
	}
	res, err := s.insertTasks(ctx, tx, b)
	if err != nil {
		return nil, err
	}
	if err := s.notifyTx(ctx, tx); err != nil {
		return nil, err
	}
	return res, nil
}

// execer is what the enqueue path needs from a transaction: pgx.Tx has it,
// and sqlTx gives it to a *sql.Tx.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// execTx is the enqueue's transaction as the shared statements run in it.
func execTx(ex execer) sqlbackend.Tx {
	switch tx := ex.(type) {
	case pgx.Tx:
		return pgxTx{tx}
	case sqlTx:
		return sqlbackend.StdTx(tx.tx)
	}
	panic(fmt.Sprintf("postgres: enqueue in a %T", ex))
}

// sqlTx adapts a database/sql transaction on the pgx driver, which encodes
// the same argument types (arrays included) as pgx itself.
type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) Exec(ctx context.Context, query string, args ...any) (pgconn.CommandTag, error) {
	_, err := t.tx.ExecContext(ctx, query, args...)
	return pgconn.CommandTag{}, err
}

func (t sqlTx) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	return t.tx.QueryRowContext(ctx, query, args...)
}

// insertTasks writes a prepared batch. Unique keys are resolved first —
// against the table and within the batch — so a duplicate is answered with
// the existing id rather than an error.
func (s *Store) insertTasks(ctx context.Context, tx execer, b store.Batch) ([]store.EnqueueResult, error) {
	res := make([]store.EnqueueResult, b.Len())
	fresh := make([]int, 0, b.Len())
	seen := map[string]int{}
	for i := range res {
		t := b.Task(i)
		res[i].ID = t.ID
		if t.UniqueKey == "" {
			fresh = append(fresh, i)
			continue
		}
		if j, ok := seen[t.UniqueKey]; ok {
			res[i] = store.EnqueueResult{ID: res[j].ID, Duplicate: true}
			continue
		}
		seen[t.UniqueKey] = i
		var existing string
		err := tx.QueryRow(ctx, `SELECT id FROM weft_tasks WHERE unique_key = $1
			AND state IN `+uniqueHeld, t.UniqueKey).Scan(&existing)
		switch {
		case err == nil:
			res[i] = store.EnqueueResult{ID: existing, Duplicate: true}
		case errors.Is(err, pgx.ErrNoRows), errors.Is(err, sql.ErrNoRows):
			fresh = append(fresh, i)
		default:
			return nil, fmt.Errorf("check unique key: %w", err)
		}
	}
	if len(fresh) == 0 {
		return res, nil
	}
	n := len(fresh)
	var (
		ids, kinds, queues, argsJSON = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		prios, maxAttempts           = make([]int32, n), make([]int32, n)
		runAts, timeouts             = make([]int64, n), make([]int64, n)
		uniqueKeys, metadata         = make([]*string, n), make([]*string, n)
		states, flowKeys             = make([]string, n), make([]string, n)
		added                        = store.CountMoves{}
	)
	for j, i := range fresh {
		t := b.Task(i)
		ids[j], kinds[j], queues[j], argsJSON[j] = t.ID, t.Kind, t.Queue, string(t.Args)
		prios[j], maxAttempts[j] = int32(t.Priority), int32(t.MaxAttempts)
		runAts[j], timeouts[j] = micros(t.RunAt), t.AttemptTimeout.Microseconds()
		if t.UniqueKey != "" {
			k := t.UniqueKey
			uniqueKeys[j] = &k
		}
		metadata[j] = nullText(t.Metadata)
		states[j] = string(store.StatePending)
		if b.Blocked(i) {
			states[j] = string(store.StateBlocked)
		}
		if b.FlowID() != "" {
			flowKeys[j] = b.FlowKey(i)
		}
		added.Move(t.Queue, "", store.State(states[j]), 1)
	}
	createdAt := micros(b.Now())
	gates, err := flows().PrepareGates(ctx, execTx(tx), b, createdAt)
	if err != nil {
		return nil, err
	}
	var flowID *string
	if b.FlowID() != "" {
		id := b.FlowID()
		flowID = &id
	}
	switch {
	case gates.Any():
		gate, limited, vstart := make([]*string, n), make([]bool, n), make([]int64, n)
		for j, i := range fresh {
			gate[j], limited[j], vstart[j] = gates.Gate[i], gates.Limited[i], gates.VStart[i]
		}
		// Gated tasks carry their gate (and, as members of a flow, their
		// flow and key).
		_, err = tx.Exec(ctx, `INSERT INTO weft_tasks (id, kind, queue, args, priority, state, run_at, max_attempts,
			attempt_timeout_us, unique_key, metadata, created_at, flow_id, flow_key, gate, limited, vstart)
		SELECT id, kind, queue, args::jsonb, prio, state, run_at, max_attempts, timeout, ukey, md::jsonb, $11, $12,
			CASE WHEN $12::text IS NULL THEN NULL ELSE fkey END, gate, limited, vstart
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::int[], $8::bigint[], $9::text[], $10::text[],
			$13::text[], $14::text[], $15::text[], $16::bool[], $17::bigint[])
			AS t(id, kind, queue, args, prio, run_at, max_attempts, timeout, ukey, md, state, fkey, gate, limited, vstart)`,
			ids, kinds, queues, argsJSON, prios, runAts, maxAttempts, timeouts, uniqueKeys, metadata, createdAt, flowID, states, flowKeys,
			gate, limited, vstart)
	case b.FlowID() == "":
		_, err = tx.Exec(ctx, `INSERT INTO weft_tasks (id, kind, queue, args, priority, state, run_at, max_attempts,
			attempt_timeout_us, unique_key, metadata, created_at)
		SELECT id, kind, queue, args::jsonb, prio, 'pending', run_at, max_attempts, timeout, ukey, md::jsonb, $11
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::int[], $8::bigint[], $9::text[], $10::text[])
			AS t(id, kind, queue, args, prio, run_at, max_attempts, timeout, ukey, md)`,
			ids, kinds, queues, argsJSON, prios, runAts, maxAttempts, timeouts, uniqueKeys, metadata, createdAt)
	default:
		// Members of a flow carry their flow and key, and may start
		// blocked; plain tasks keep the shorter statement.
		_, err = tx.Exec(ctx, `INSERT INTO weft_tasks (id, kind, queue, args, priority, state, run_at, max_attempts,
			attempt_timeout_us, unique_key, metadata, created_at, flow_id, flow_key)
		SELECT id, kind, queue, args::jsonb, prio, state, run_at, max_attempts, timeout, ukey, md::jsonb, $11, $12, fkey
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::int[], $8::bigint[], $9::text[], $10::text[], $13::text[], $14::text[])
			AS t(id, kind, queue, args, prio, run_at, max_attempts, timeout, ukey, md, state, fkey)`,
			ids, kinds, queues, argsJSON, prios, runAts, maxAttempts, timeouts, uniqueKeys, metadata, createdAt, b.FlowID(), states, flowKeys)
	}
	if err != nil {
		return nil, fmt.Errorf("insert tasks: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO weft_events (task_id, type, attempt, at)
		SELECT unnest($1::text[]), 'created', 0, $2`, ids, createdAt); err != nil {
		return nil, fmt.Errorf("insert created events: %w", err)
	}
	if err := flows().AfterGatedInsert(ctx, execTx(tx), gates, added, createdAt); err != nil {
		return nil, err
	}
	// This store's claims take the gated path for these queues at once;
	// other stores' see them at their next read of the list.
	s.gated.Add(gates.Queues())
	if err := applyCounts(ctx, tx, added); err != nil {
		return nil, err
	}
	return res, nil
}

// Claim implements store.Store. Each queue's candidates are locked with
// FOR UPDATE SKIP LOCKED, so nodes claiming together never wait for, nor
// take, each other's rows; a paused queue has none.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Task, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if err := store.CheckLabels(req.Labels); err != nil {
		return nil, err
	}
	gated, err := s.gated.Of(ctx, flows(), s.readPool(), req.Queues)
	if err != nil {
		return nil, err
	}
	queues, gatedQueues := sqlbackend.SplitGated(req.Queues, gated)
	now := s.now()
	nowUS := micros(now)
	expires := fromMicros(micros(now.Add(req.LeaseTTL)))
	attempted := fromMicros(nowUS)
	if req.StartLater {
		attempted = time.Time{}
	}
	a := []any{req.Owner, micros(expires), nowUS, notResumable(req)}
	var ctes, unions []string
	kindFilter := ""
	if len(req.Kinds) > 0 {
		a = append(a, req.Kinds)
		kindFilter = " AND kind = ANY($" + strconv.Itoa(len(a)) + "::text[])"
	}
	for i, qc := range queues {
		if qc.Limit <= 0 {
			continue
		}
		a = append(a, qc.Queue)
		name := "c" + strconv.Itoa(i)
		// The pause check refers to no row of weft_tasks: PostgreSQL runs
		// it once, as a one-time filter, before the index scan.
		queue := "$" + strconv.Itoa(len(a))
		ctes = append(ctes, name+` AS (SELECT id FROM weft_tasks WHERE state = 'pending' AND gate IS NULL AND queue = `+queue+
			` AND run_at <= $3`+kindFilter+` AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = `+queue+` AND paused)
			ORDER BY priority DESC, run_at, id LIMIT `+strconv.Itoa(qc.Limit)+` FOR UPDATE SKIP LOCKED)`)
		unions = append(unions, "SELECT id FROM "+name)
	}
	var claimed []*store.Task
	if len(ctes) > 0 {
		// A claim lost to a crash only puts its tasks back where they
		// were, so its commit need not wait for the WAL flush (measured:
		// in-process p50 latency 3.7 ms durable, 0.75 ms not). The node
		// told of the lost claim still runs the task under the lost
		// epoch; the epoch's random step (claimSQL) makes the next claim's
		// epoch differ from it, so that node's late writes stay fenced
		// out (found by internal/resilience, with a PostgreSQL crash). The
		// batch runs as one implicit transaction, to which the setting
		// applies.
		batch := &pgx.Batch{}
		batch.Queue("SELECT set_config('synchronous_commit', 'off', true)")
		batch.Queue(claimSQL(ctes, strings.Join(unions, " UNION ALL "), req.StartLater, false), a...)
		claimed, err = s.claimBatch(ctx, batch, req.Owner, expires, attempted)
		if err != nil {
			return nil, classify(err)
		}
	}
	if len(gatedQueues) > 0 {
		more, err := s.claimGated(ctx, req, gatedQueues, nowUS, attempted, expires)
		if err != nil {
			return nil, classify(err)
		}
		claimed = append(claimed, more...)
	}
	store.SortClaimed(claimed)
	return claimed, nil
}

func notResumable(req store.ClaimRequest) []string {
	if req.NotResumable == nil {
		return []string{} // NULL would make resumable NULL
	}
	return req.NotResumable
}

// claimSQL is the statement that claims the tasks ids selects, with its
// CTEs ctes ($1 owner, $2 lease expiry, $3 now, $4 kinds not resumable):
// one statement claims, writes the started events and appends the
// counter moves, so that with the durability setting in the same batch a
// claim is one round trip (it was six: begin, set, claim, counts, events,
// commit). withGate returns the tasks' gates too.
func claimSQL(ctes []string, ids string, startLater, withGate bool) string {
	attemptedAt, started := "$3", `
		started AS (INSERT INTO weft_events (task_id, type, attempt, at)
			SELECT id, '`+string(store.EventStarted)+`', attempt, $3 FROM claimed),`
	if startLater {
		attemptedAt, started = "NULL", ""
	}
	with := "WITH "
	if len(ctes) > 0 {
		with += strings.Join(ctes, ", ") + ", "
	}
	gate := ""
	if withGate {
		gate = ", gate"
	}
	return with + `claimed AS (UPDATE weft_tasks SET state = 'running', attempt = attempt + 1,
			lease_epoch = lease_epoch + 1 + (random() * 1073741823)::bigint,
			lease_owner = $1, lease_expires_at = $2, attempted_at = ` + attemptedAt + `, resumable = NOT (kind = ANY($4::text[]))
		WHERE id IN (` + ids + `)
		RETURNING id, kind, queue, args, priority, run_at, attempt, max_attempts, attempt_timeout_us, errors, metadata, lease_epoch, created_at, flow_id, flow_key` + gate + `),` + started + `
		moved AS (INSERT INTO weft_count_deltas (queue, state, n)
			SELECT g.queue, m.state, m.n FROM (SELECT queue, count(*) AS n FROM claimed GROUP BY queue) g,
				LATERAL (VALUES ('` + string(store.StatePending) + `', -g.n), ('` + string(store.StateRunning) + `', g.n)) AS m(state, n))
		SELECT * FROM claimed`
}

// claimGated claims from queues that hold gated tasks: first the tasks
// set aside for keys that have room again are made claimable, then the
// claim admits what the limits allow (sqlbackend.FlowStore.ClaimGated),
// in a transaction whose commit, like a plain claim's, need not wait for
// the WAL flush.
func (s *Store) claimGated(ctx context.Context, req store.ClaimRequest, queues []store.QueueClaim, nowUS int64, attempted, expires time.Time) ([]*store.Task, error) {
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		_, err := flows().Unpark(ctx, pgxTx{tx}, nowUS)
		return false, err
	})
	if err != nil {
		return nil, err
	}
	var claimed []*store.Task
	err = s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		if _, err := tx.Exec(ctx, "SELECT set_config('synchronous_commit', 'off', true)"); err != nil {
			return false, fmt.Errorf("claim: %w", err)
		}
		var err error
		claimed, err = flows().ClaimGated(ctx, pgxTx{tx}, req, queues, nowUS, func(ids []string) ([]*store.Task, error) {
			// The admitted tasks were locked by this transaction: the
			// state and time checks only restate why they were chosen (and
			// give $3 its type when no started events are written).
			rows, err := tx.Query(ctx, claimSQL(nil, "SELECT id FROM weft_tasks WHERE id = ANY($5::text[]) AND state = 'pending' AND run_at <= $3",
				req.StartLater, true),
				req.Owner, micros(expires), nowUS, notResumable(req), ids)
			if err != nil {
				return nil, fmt.Errorf("claim: %w", err)
			}
			return scanClaimed(rows, req.Owner, expires, attempted, true)
		})
		return false, err
	})
	return claimed, err
}

// claimBatch sends a claim's batch and reads the claimed tasks.
func (s *Store) claimBatch(ctx context.Context, batch *pgx.Batch, owner string, expires, attempted time.Time) ([]*store.Task, error) {
	br := s.pool.SendBatch(ctx, batch)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	claimed, err := scanClaimed(rows, owner, expires, attempted, false)
	if err != nil {
		return nil, err
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return claimed, nil
}

// scanClaimed reads claimSQL's rows, and closes them.
func scanClaimed(rows pgx.Rows, owner string, expires, attempted time.Time, withGate bool) ([]*store.Task, error) {
	defer rows.Close()
	var claimed []*store.Task
	for rows.Next() {
		var (
			t                         store.Task
			runAt, createdAt, timeout int64
			errs, metadata            []byte
			flowID, flowKey           *string
			gate                      sql.NullString
		)
		dest := []any{&t.ID, &t.Kind, &t.Queue, &t.Args, &t.Priority, &runAt, &t.Attempt, &t.MaxAttempts,
			&timeout, &errs, &metadata, &t.LeaseEpoch, &createdAt, &flowID, &flowKey}
		if withGate {
			dest = append(dest, &gate)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		if flowID != nil && flowKey != nil {
			t.FlowID, t.FlowKey = *flowID, *flowKey
		}
		if err := sqlbackend.ScanGate(gate, &t); err != nil {
			return nil, err
		}
		if len(errs) > 0 {
			if err := json.Unmarshal(errs, &t.Errors); err != nil {
				return nil, fmt.Errorf("claim: decode error history of %s: %w", t.ID, err)
			}
		}
		if len(metadata) > 0 {
			t.Metadata = metadata
		}
		t.State, t.LeaseOwner, t.LeaseExpiresAt, t.AttemptedAt = store.StateRunning, owner, expires, attempted
		t.RunAt, t.CreatedAt = fromMicros(runAt), fromMicros(createdAt)
		t.AttemptTimeout = time.Duration(timeout) * time.Microsecond
		claimed = append(claimed, &t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return claimed, nil
}

// Finish implements store.Store: one UPDATE … FROM unnest(…) for the batch,
// fenced on (id, epoch, running). Outcomes of flow members, whose final
// states resolve their dependents in the same transaction, are left by
// that statement to a second one in a transaction of their own: plain
// tasks keep their one round trip.
func (s *Store) Finish(ctx context.Context, outcomes []store.Outcome) ([]store.FinishResult, error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	if err := store.CheckOutcomes(outcomes); err != nil {
		return nil, err
	}
	nowUS := micros(s.now())
	// all keeps the batch whole, for the followers of those that ended.
	all := outcomes
	outcomes, waits, waitIdx := store.SplitWaits(outcomes)
	var waitResults []store.FinishResult
	if len(waits) > 0 {
		var err error
		if waitResults, err = s.suspend(ctx, waits, nowUS); err != nil {
			return nil, err
		}
		if len(outcomes) == 0 {
			return waitResults, nil
		}
	}
	// Outcomes known to be flow members go straight to the transaction
	// that resolves them; the others take the one round trip, which leaves
	// any member it meets to that transaction too.
	var plain []store.Outcome
	for _, o := range outcomes {
		if !o.InFlow && !o.Limited {
			plain = append(plain, o)
		}
	}
	applied := make(map[store.LeaseKey]store.FinishedRow, len(outcomes))
	if len(plain) > 0 {
		args, notify, err := finishArgs(plain, nowUS)
		if err != nil {
			return nil, err
		}
		batch := &pgx.Batch{}
		batch.Queue(finishSQL(" AND t.flow_id IS NULL AND NOT t.limited"), args...)
		if notify {
			batch.Queue("NOTIFY " + s.channel)
		}
		if applied, err = s.finishBatch(ctx, batch, len(outcomes)); err != nil {
			return nil, classify(err)
		}
		if notify && s.opts.PollOnly {
			s.wake.Notify()
		}
	}
	if rest := unappliedOutcomes(outcomes, applied); len(rest) > 0 {
		if err := s.finishMembers(ctx, rest, nowUS, applied); err != nil {
			return nil, err
		}
	}
	var missing map[string]bool
	if ids := store.Unapplied(outcomes, applied); len(ids) > 0 {
		// Refused outcomes are rare: telling a stale epoch from a task
		// that is gone costs a read only then.
		var err error
		if missing, err = s.missingTasks(ctx, ids); err != nil {
			return nil, err
		}
	}
	out, _ := store.ReconcileFinish(outcomes, applied, missing)
	out = store.JoinWaits(out, waitResults, waitIdx)
	sqlbackend.NotifyEnded(&s.followers, all, out)
	return out, nil
}

// unappliedOutcomes lists the outcomes whose lease is not in applied.
func unappliedOutcomes(outcomes []store.Outcome, applied map[store.LeaseKey]store.FinishedRow) []store.Outcome {
	var rest []store.Outcome
	for _, o := range outcomes {
		if _, ok := applied[store.LeaseKey{TaskID: o.TaskID, Epoch: o.Epoch}]; !ok {
			rest = append(rest, o)
		}
	}
	return rest
}

// finishMembers records outcomes the first statement left — flow
// members', and refused ones, which it refuses again — and resolves the
// members' dependents, in one transaction; what it wrote is added to
// applied.
func (s *Store) finishMembers(ctx context.Context, outcomes []store.Outcome, nowUS int64, applied map[store.LeaseKey]store.FinishedRow) error {
	args, _, err := finishArgs(outcomes, nowUS)
	if err != nil {
		return err
	}
	var wrote map[store.LeaseKey]store.FinishedRow
	err = s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		rows, err := tx.Query(ctx, finishSQL(""), args...)
		if err != nil {
			return false, fmt.Errorf("finish: %w", err)
		}
		wrote, err = scanFinished(rows, len(outcomes))
		if err != nil {
			return false, err
		}
		notify := false
		for _, row := range wrote {
			notify = notify || row.State == store.StatePending
		}
		if ids, held := sqlbackend.LimitedFinished(outcomes, wrote); len(ids) > 0 {
			woke, err := flows().Release(ctx, pgxTx{tx}, ids, held, nowUS)
			if err != nil {
				return false, err
			}
			notify = notify || woke
		}
		woke, err := resolveFinished(ctx, tx, sqlbackend.FinishedMembers(wrote), nowUS)
		return notify || woke, err
	})
	if err != nil {
		return err
	}
	for k, row := range wrote {
		applied[k] = row
	}
	return nil
}

// finishArgs are the arguments of finishSQL for outcomes, sent in id
// order, and whether any outcome may make work ready.
func finishArgs(outcomes []store.Outcome, nowUS int64) (args []any, notify bool, err error) {
	n := len(outcomes)
	var (
		ids, states       = make([]string, n), make([]string, n)
		epochs, runAts    = make([]int64, n), make([]*int64, n)
		results, errsJSON = make([]*string, n), make([]*string, n)
		refunds           = make([]int32, n)
	)
	// The rows are sent, and so locked, in id order, as ExtendLeases locks
	// them: concurrent renewals and batches of outcomes never deadlock.
	events, eventData, startedAts := make([]string, n), make([]*string, n), make([]*int64, n)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(outcomes[a].TaskID, outcomes[b].TaskID) })
	for i, k := range order {
		o := outcomes[k]
		ids[i], states[i], epochs[i], results[i] = o.TaskID, string(o.State), o.Epoch, nullText(o.Result)
		if o.Error != nil {
			b, err := json.Marshal(o.Error)
			if err != nil {
				return nil, false, fmt.Errorf("encode attempt error: %w", err)
			}
			errsJSON[i] = nullText(b)
		}
		if o.State == store.StatePending {
			r := micros(o.RunAt)
			runAts[i] = &r
		}
		if o.Refund {
			refunds[i] = 1
		}
		events[i], eventData[i] = string(o.Event), nullText(o.EventData)
		if !o.StartedAt.IsZero() {
			at := micros(o.StartedAt)
			startedAts[i] = &at
		}
		// Only a pending outcome can make work ready.
		notify = notify || o.State == store.StatePending
	}
	return []any{ids, epochs, states, results, errsJSON, runAts, refunds, nowUS, events, eventData, startedAts}, notify, nil
}

// finishSQL records outcomes (finishArgs), their events (as
// store.ReconcileFinish decides them: the outcome's own, or cancelled when
// a cancel request won over a retry; a refunded attempt's event names the
// attempt that ran) and the counter moves in one statement; with the
// NOTIFY in the same batch, a finish is one round trip (it was five or
// six). filter narrows the tasks it may write.
func finishSQL(filter string) string {
	return `WITH done AS (UPDATE weft_tasks t SET
			state = CASE WHEN v.state = 'pending' AND t.cancel_requested THEN 'cancelled' ELSE v.state END,
			result = coalesce(v.result::jsonb, t.result),
			errors = CASE WHEN v.err IS NULL THEN t.errors ELSE coalesce(t.errors, '[]'::jsonb) || jsonb_build_array(v.err::jsonb) END,
			run_at = coalesce(v.run_at, t.run_at),
			attempt = t.attempt - v.refund,
			attempted_at = coalesce(v.started_at, t.attempted_at),
			lease_expires_at = NULL,
			lease_owner = CASE WHEN v.state = 'pending' THEN NULL ELSE t.lease_owner END,
			finalized_at = CASE WHEN v.state = 'pending' AND NOT t.cancel_requested THEN NULL ELSE $8::bigint END
			FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[], $9::text[], $10::text[], $11::bigint[])
				AS v(id, epoch, state, result, err, run_at, refund, event, event_data, started_at)
			WHERE t.id = v.id AND t.lease_epoch = v.epoch AND t.state = 'running'` + filter + `
			RETURNING t.id, t.lease_epoch, t.state, t.attempt, t.queue, t.flow_id, t.limited, v.state AS asked, v.refund, v.event, v.event_data, v.started_at),
		logged AS (INSERT INTO weft_events (task_id, type, attempt, at, data)
			SELECT id, type, attempt, at, data FROM (
				SELECT id, 0 AS ord, '` + string(store.EventStarted) + `' AS type, attempt + refund AS attempt, started_at AS at, NULL::jsonb AS data
				FROM done WHERE started_at IS NOT NULL
				UNION ALL
				SELECT id, 1, CASE WHEN state = asked THEN event ELSE '` + string(store.EventCancelled) + `' END, attempt + refund, $8,
					CASE WHEN state = asked THEN event_data::jsonb END
				FROM done) e
			ORDER BY id, ord),
		moved AS (INSERT INTO weft_count_deltas (queue, state, n)
			SELECT queue, '` + string(store.StateRunning) + `', -count(*) FROM done GROUP BY queue
			UNION ALL SELECT queue, state, count(*) FROM done GROUP BY queue, state)
		SELECT id, lease_epoch, state, attempt, queue, flow_id, limited FROM done`
}

// finishBatch sends a finish's batch and reads what it wrote.
func (s *Store) finishBatch(ctx context.Context, batch *pgx.Batch, n int) (map[store.LeaseKey]store.FinishedRow, error) {
	br := s.pool.SendBatch(ctx, batch)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("finish: %w", err)
	}
	applied, err := scanFinished(rows, n)
	if err != nil {
		return nil, err
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("finish: %w", err)
	}
	return applied, nil
}

// scanFinished reads the rows finishSQL wrote, and closes them.
func scanFinished(rows pgx.Rows, n int) (map[store.LeaseKey]store.FinishedRow, error) {
	defer rows.Close()
	applied := make(map[store.LeaseKey]store.FinishedRow, n)
	for rows.Next() {
		var (
			k      store.LeaseKey
			row    store.FinishedRow
			state  string
			flowID *string
		)
		if err := rows.Scan(&k.TaskID, &k.Epoch, &state, &row.Attempt, &row.Queue, &flowID, &row.Limited); err != nil {
			return nil, fmt.Errorf("finish: %w", err)
		}
		row.State = store.State(state)
		if flowID != nil {
			row.FlowID = *flowID
		}
		applied[k] = row
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("finish: %w", err)
	}
	rows.Close()
	return applied, nil
}

// missingTasks says which of ids name no task: refused outcomes are rare,
// so this costs nothing on the common path.
func (s *Store) missingTasks(ctx context.Context, ids []string) (map[string]bool, error) {
	missing := make(map[string]bool, len(ids))
	for _, id := range ids {
		missing[id] = true
	}
	rows, err := s.pool.Query(ctx, "SELECT id FROM weft_tasks WHERE id = ANY($1::text[])", ids)
	if err != nil {
		return nil, fmt.Errorf("finish: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("finish: %w", err)
		}
		delete(missing, id)
	}
	return missing, rows.Err()
}
