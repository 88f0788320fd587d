package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// Reads run on the read pool and never wait for the writer: WAL gives each
// read a consistent snapshot of the last commit.

// readStatements are the texts of the reads shared with the PostgreSQL
// backend (sqlbackend.Reader). Counts come from weft_counts, which SQLite
// keeps in place (one writer, no lock contention).
var readStatements = sqlbackend.Statements{
	Task: "SELECT " + taskColumns + " FROM weft_tasks WHERE id = +?",
	Events: "SELECT " + sqlbackend.EventColumns + ` FROM weft_events
		WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
	// CROSS JOIN keeps the events' seq range as the outer loop.
	EventsAfter: "SELECT " + sqlbackend.FeedColumns + ` FROM weft_events e CROSS JOIN weft_tasks t
		WHERE e.seq > ?1 AND e.seq <= ?2 AND t.id = e.task_id
			AND (?3 = '' OR t.queue = ?3) AND (?4 = '' OR t.kind = ?4)
			AND (?5 = '' OR instr(?5, ',' || e.type || ',') > 0)
		ORDER BY e.seq LIMIT ?6`,
	EventTypes: func(types []string) any {
		if len(types) == 0 {
			return ""
		}
		return "," + strings.Join(types, ",") + ","
	},
	Leader: "SELECT " + sqlbackend.LeaderColumns + " FROM weft_leaders WHERE name = ?",
	Counts: `SELECT queue, state, n FROM weft_counts WHERE n != 0
		UNION ALL SELECT name, NULL, 0 FROM weft_queues WHERE paused = 1
		ORDER BY queue`,
	// Pending tasks are in two indexes: plain ones in the claim index,
	// gated ones (not set aside) in their own.
	TopPriority: `SELECT max(p) FROM (
		SELECT max(priority) AS p FROM weft_tasks WHERE state = 'pending' AND gate IS NULL AND queue = +?1 AND priority < +?2
		UNION ALL SELECT max(priority) FROM weft_tasks
		WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL AND queue = +?1 AND priority < +?2)`,
	EarliestRunAt: `SELECT min(r) FROM (
		SELECT min(run_at) AS r FROM weft_tasks WHERE state = 'pending' AND gate IS NULL AND queue = +?1 AND priority = +?2
		UNION ALL SELECT min(run_at) FROM weft_tasks
		WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL AND queue = +?1 AND priority = +?2)`,
	AbovePriorities: math.MaxInt64,
}

// EventsAfter implements store.Store. Events are numbered by the one
// writer of the file, in commit order, so every event up to the last one
// committed is settled.
func (s *Store) EventsAfter(ctx context.Context, f store.EventFilter) (store.EventPage, error) {
	var last int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM weft_events").Scan(&last); err != nil {
		return store.EventPage{}, fmt.Errorf("read events: %w", err)
	}
	return s.reads.EventsAfter(ctx, f, last)
}

// MaxListLimit bounds one page of List.
const MaxListLimit = sqlbackend.MaxListLimit

// List implements store.Store.
func (s *Store) List(ctx context.Context, p store.ListParams) ([]*store.Task, error) {
	newest, err := p.Newest()
	if err != nil {
		return nil, err
	}
	where, args := taskWhere(p.Filter())
	if p.After != "" {
		cmp := "id > +?"
		if newest {
			cmp = "id < +?"
		}
		where, args = append(where, cmp), append(args, p.After)
	}
	query := "SELECT " + taskColumns + " FROM weft_tasks"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	order := " ORDER BY id"
	if len(p.States) == 1 && p.States[0] == store.StateRunning {
		// The running tasks are few (as many as busy workers): read them
		// from their index and sort them, rather than walk the id index
		// past every other task, which the planner prefers otherwise.
		order = " ORDER BY +id"
	}
	if newest {
		order += " DESC"
	}
	query += order + " LIMIT ?"
	rows, err := s.rdb.QueryContext(ctx, query, append(args, sqlbackend.PageLimit(p.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return tasks, nil
}

// taskWhere renders the conditions that select f's tasks, and their
// arguments. f has been checked, so its states are known names, written
// into the statement as the partial indexes spell them.
func taskWhere(f store.TaskFilter) (conds []string, args []any) {
	add := func(cond string, v any) {
		conds, args = append(conds, cond), append(args, v)
	}
	if f.Queue != "" {
		add("queue = +?", f.Queue)
	}
	if f.Kind != "" {
		add("kind = +?", f.Kind)
	}
	if len(f.States) > 0 {
		conds = append(conds, stateTerms(f.States)...)
	}
	if !f.CreatedSince.IsZero() {
		add("created_at >= +?", micros(f.CreatedSince))
	}
	if !f.CreatedUntil.IsZero() {
		add("created_at < +?", micros(f.CreatedUntil))
	}
	if len(f.IDs) > 0 {
		add("id IN (SELECT value FROM json_each(?))", jsonStrings(f.IDs))
	}
	return conds, args
}

// stateTerms is a selection's state filter, written into the statement
// (the states are the model's own names): SQLite uses a partial index only
// when the statement's own terms imply the index's condition, so rare
// states are read from their index instead of a scan of the table —
// running tasks from weft_tasks_running, and the states of
// weft_tasks_unsuccessful, whose condition is repeated here word for word.
func stateTerms(states []store.State) []string {
	if len(states) == 1 && states[0] == store.StateRunning {
		return []string{"state = 'running'"}
	}
	if !slices.ContainsFunc(states, func(s store.State) bool { return !slices.Contains(unsuccessfulStates(), s) }) {
		return []string{store.SQLOneOf("state", states), unsuccessfulIndex}
	}
	return []string{store.SQLOneOf("state", states)}
}

// unsuccessfulStates are the states of weft_tasks_unsuccessful (migration
// 0008), and unsuccessfulIndex its condition as the migration spells it.
func unsuccessfulStates() []store.State {
	return []store.State{store.StateBlocked, store.StateWaiting, store.StateFailed, store.StateCancelled, store.StateSkipped}
}

const unsuccessfulIndex = "(state = 'blocked' OR state = 'waiting' OR state = 'failed' OR state = 'cancelled' OR state = 'skipped')"

// NextRunAt implements store.Store (see sqlbackend.NextRunAt). A paused
// queue finds no row at the first step: an engine must not wake for work
// it may not claim.
func (s *Store) NextRunAt(ctx context.Context, queues, kinds []string) (time.Time, bool, error) {
	kindFilter := kindIn(len(kinds))
	next, ok, err := sqlbackend.NextRunAt(queues, math.MaxInt64, func(queue string, below int64) sqlbackend.Row {
		return s.rdb.QueryRowContext(ctx, `SELECT priority, run_at FROM weft_tasks
			WHERE state = 'pending' AND gate IS NULL AND queue = +? AND priority < +?`+kindFilter+`
			AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = +? AND paused = 1)
			ORDER BY priority DESC, run_at LIMIT 1`, nextArgs(queue, below, kinds)...)
	})
	if err != nil {
		return next, ok, err
	}
	gated, err := s.gated.Of(ctx, flows(), sqlbackend.StdDB(s.rdb), claimsOf(queues))
	if err != nil || len(gated) == 0 {
		return next, ok, err
	}
	return flows().NextGated(ctx, sqlbackend.StdDB(s.rdb), queues, kinds, gated, s.now(), next, ok)
}

// claimsOf names queues as a claim does.
func claimsOf(queues []string) []store.QueueClaim {
	out := make([]store.QueueClaim, len(queues))
	for i, q := range queues {
		out[i] = store.QueueClaim{Queue: q, Limit: 1}
	}
	return out
}

// nextArgs binds NextRunAt's statement: queue, below, kinds, then queue
// again for the pause check.
func nextArgs(queue string, below int64, kinds []string) []any {
	a := append(make([]any, 0, 3+len(kinds)), queue, below)
	for _, k := range kinds {
		a = append(a, k)
	}
	return append(a, queue)
}

// CancelRequests implements store.Store.
func (s *Store) CancelRequests(ctx context.Context, owner string) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id FROM weft_tasks
		WHERE lease_owner = +? AND state = 'running' AND cancel_requested = 1`, owner)
	if err != nil {
		return nil, fmt.Errorf("cancel requests: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("cancel requests: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// OpenSQL opens a database/sql pool on the same file with the settings Weft
// relies on (WAL, busy timeout, synchronous), for the application's own
// transactions — for example to enqueue with weft.EnqueueTx.
func OpenSQL(path string, opts *Options) (*sql.DB, error) {
	o := opts.withDefaults()
	db := openDB(path, o, false)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}
