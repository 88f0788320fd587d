package sqlbackend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

// Column lists: what a backend's statement for a read selects, in the
// order the read scans it.
const (
	// EventColumns are selected from weft_events by Statements.Events.
	EventColumns = "seq, type, attempt, at, data"
	// FeedColumns are selected by Statements.EventsAfter, from weft_events
	// as e joined with weft_tasks as t.
	FeedColumns = "e.seq, e.task_id, e.type, e.attempt, e.at, e.data, t.queue, t.kind"
	// LeaderColumns are selected from weft_leaders by Statements.Leader.
	LeaderColumns = "holder, term, expires_at"
	// ScheduleColumns are weft_schedules' columns, in the order Schedules
	// reads them; a backend's PutSchedule writes them in this order too.
	ScheduleColumns = `name, spec, kind, queue, args, priority, max_attempts, metadata,
	missed, paused, next_at, created_at, updated_at`
)

// Statements are a backend's texts, in its dialect, of the statements a
// Reader runs. Reads whose statements take no argument need none: their
// text is the same in both dialects, and Reader has it.
type Statements struct {
	// Task selects the task whose id is its one argument, in the columns
	// the Reader's task scan reads.
	Task string
	// Events selects EventColumns of the events of a task (first argument)
	// with a seq above the second argument, in seq order, at most the third
	// argument of them.
	Events string
	// EventsAfter selects FeedColumns of the events of every task with a
	// seq above the first argument and at most the second, in seq order,
	// at most the sixth argument of them; the third (a queue), fourth (a
	// kind) and fifth (event types, as EventTypes encodes them) filter
	// them when not empty.
	EventsAfter string
	// EventTypes encodes a list of event types as EventsAfter's fifth
	// argument; no type means no filter.
	EventTypes func(types []string) any
	// Leader selects LeaderColumns of the role named by its one argument.
	Leader string
	// Counts selects (queue, state, n) rows ordered by queue: each non-zero
	// count, and a row with a NULL state for each paused queue, so that one
	// ORDER BY, in the database's collation, interleaves them.
	Counts string
	// TopPriority selects the highest priority, or NULL, among the pending
	// tasks of a queue (first argument) below a priority (second).
	TopPriority string
	// EarliestRunAt selects the earliest run_at, or NULL, among the pending
	// tasks of a queue (first argument) at a priority (second).
	EarliestRunAt string
	// AbovePriorities is a bound above every priority the schema stores,
	// where steps down through a queue's priorities start.
	AbovePriorities int64
}

// Reader implements the reads of store.Store that both backends make
// alike. A backend embeds it, so that its methods are the backend's own.
type Reader struct {
	db       Querier
	stmts    *Statements
	scanTask func(Row) (*store.Task, error)
	now      func() time.Time
}

// NewReader makes a Reader that runs the backend's statements on db. A
// task row is read by scanTask, which is the backend's own: tasks have
// nullable columns, and each driver reads those cheapest into its own
// types. now is the clock of Stats.
func NewReader(db Querier, statements *Statements, scanTask func(Row) (*store.Task, error), now func() time.Time) Reader {
	return Reader{db: db, stmts: statements, scanTask: scanTask, now: now}
}

// Get implements store.Store.
func (r Reader) Get(ctx context.Context, taskID string) (*store.Task, error) {
	t, err := r.scanTask(r.db.QueryRow(ctx, r.stmts.Task, taskID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", taskID, err)
	}
	return t, nil
}

// Events implements store.Store. limit is bounded by PageLimit.
func (r Reader) Events(ctx context.Context, taskID string, after int64, limit int) ([]store.Event, error) {
	return collect(ctx, r.db, "read events of "+taskID, r.stmts.Events, []any{taskID, after, PageLimit(limit)}, func(row Rows) (store.Event, error) {
		var (
			e    store.Event
			typ  string
			at   int64
			data []byte
		)
		err := row.Scan(&e.Seq, &typ, &e.Attempt, &at, &data)
		e.TaskID, e.Type, e.At = taskID, store.EventType(typ), FromMicros(at)
		if len(data) > 0 {
			e.Data = data
		}
		return e, err
	})
}

// FeedWindow bounds how many seqs one EventsAfter examines, so that a
// filter that matches little costs a bounded read, not a scan of the log.
const FeedWindow = 10000

// EventsAfter implements store.Reader's EventsAfter for a backend that
// knows every event up to settled is committed (or never will be): it
// reads no further, and at most FeedWindow seqs past f.After.
func (r Reader) EventsAfter(ctx context.Context, f store.EventFilter, settled int64) (store.EventPage, error) {
	switch {
	case f.After < 0:
		return store.EventPage{Next: settled}, nil
	case f.After >= settled:
		return store.EventPage{Next: f.After}, nil
	}
	upto := min(settled, f.After+FeedWindow)
	limit := PageLimit(f.Limit)
	types := make([]string, len(f.Types))
	for i, t := range f.Types {
		types[i] = string(t)
	}
	args := []any{f.After, upto, f.Queue, f.Kind, r.stmts.EventTypes(types), limit}
	evs, err := collect(ctx, r.db, "read events", r.stmts.EventsAfter, args, func(row Rows) (store.Event, error) {
		var (
			e    store.Event
			typ  string
			at   int64
			data []byte
		)
		err := row.Scan(&e.Seq, &e.TaskID, &typ, &e.Attempt, &at, &data, &e.Queue, &e.Kind)
		e.Type, e.At = store.EventType(typ), FromMicros(at)
		if len(data) > 0 {
			e.Data = data
		}
		return e, err
	})
	if err != nil {
		return store.EventPage{}, err
	}
	next := upto
	if len(evs) == limit {
		next = evs[len(evs)-1].Seq
	}
	return store.EventPage{Events: evs, Next: next}, nil
}

// Leader implements store.Store.
func (r Reader) Leader(ctx context.Context, role string) (store.Leader, error) {
	var (
		l       store.Leader
		expires int64
	)
	err := r.db.QueryRow(ctx, r.stmts.Leader, role).Scan(&l.Holder, &l.Term, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Leader{}, fmt.Errorf("leader of %s: %w", role, store.ErrNotFound)
	}
	if err != nil {
		return store.Leader{}, fmt.Errorf("leader of %s: %w", role, err)
	}
	l.ExpiresAt = FromMicros(expires)
	return l, nil
}

// Schedules implements store.Store. paused is read into a bool, which
// database/sql also fills from SQLite's 0 and 1.
func (r Reader) Schedules(ctx context.Context) ([]store.Schedule, error) {
	return collect(ctx, r.db, "schedules", "SELECT "+ScheduleColumns+" FROM weft_schedules ORDER BY name", nil, func(row Rows) (store.Schedule, error) {
		var (
			sc                     store.Schedule
			missed                 string
			next, created, updated int64
			metadata               []byte
		)
		err := row.Scan(&sc.Name, &sc.Spec, &sc.Kind, &sc.Queue, &sc.Args, &sc.Priority, &sc.MaxAttempts,
			&metadata, &missed, &sc.Paused, &next, &created, &updated)
		if len(metadata) > 0 {
			sc.Metadata = metadata
		}
		sc.Missed = store.Missed(missed)
		sc.NextAt, sc.CreatedAt, sc.UpdatedAt = FromMicros(next), FromMicros(created), FromMicros(updated)
		return sc, err
	})
}

// Stats implements store.Store. The claim index orders a queue by
// priority, then run_at, so a queue's oldest ready task is found by
// stepping down through its distinct priorities, two index seeks each,
// instead of scanning every pending row: the cost does not grow with the
// table.
func (r Reader) Stats(ctx context.Context) ([]store.QueueStats, error) {
	rows, err := r.db.Query(ctx, r.stmts.Counts)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer rows.Close()
	var out []store.QueueStats
	for rows.Next() {
		var (
			queue string
			state sql.NullString
			n     int64
		)
		if err := rows.Scan(&queue, &state, &n); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		if !state.Valid {
			out = store.AddPaused(out, queue)
			continue
		}
		out = store.AddCount(out, queue, store.State(state.String), n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	nowUS := Micros(r.now())
	for i := range out {
		if out[i].Counts[store.StatePending] == 0 {
			continue
		}
		oldest, err := r.oldestReady(ctx, out[i].Queue, nowUS)
		if err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		if oldest.Valid {
			out[i].OldestReadyAt = FromMicros(oldest.Int64)
		}
	}
	return out, nil
}

// oldestReady is the earliest run_at, not after nowUS, among the queue's
// pending tasks.
func (r Reader) oldestReady(ctx context.Context, queue string, nowUS int64) (sql.NullInt64, error) {
	var oldest sql.NullInt64
	below := r.stmts.AbovePriorities
	for {
		var prio sql.NullInt64
		if err := r.db.QueryRow(ctx, r.stmts.TopPriority, queue, below).Scan(&prio); err != nil {
			return sql.NullInt64{}, err
		}
		if !prio.Valid {
			return oldest, nil
		}
		var runAt sql.NullInt64
		if err := r.db.QueryRow(ctx, r.stmts.EarliestRunAt, queue, prio.Int64).Scan(&runAt); err != nil {
			return sql.NullInt64{}, err
		}
		if runAt.Valid && runAt.Int64 <= nowUS && (!oldest.Valid || runAt.Int64 < oldest.Int64) {
			oldest = runAt
		}
		below = prio.Int64
	}
}

// NextRunAt is the earliest run_at among the pending tasks of queues that a
// claim may take. The claim index orders a queue by priority, then run_at,
// so it steps down through each queue's distinct priorities, one index seek
// each, instead of scanning every pending row: step runs the backend's
// statement selecting (priority, run_at) of a queue's first pending task
// below a priority, in index order, if the queue is not paused. above is a
// bound above every priority the schema stores.
func NextRunAt(queues []string, above int64, step func(queue string, below int64) Row) (time.Time, bool, error) {
	var (
		best  int64
		found bool
	)
	for _, q := range queues {
		below := above
		for {
			var prio, runAt int64
			err := step(q, below).Scan(&prio, &runAt)
			if errors.Is(err, sql.ErrNoRows) {
				break
			}
			if err != nil {
				return time.Time{}, false, fmt.Errorf("next run_at: %w", err)
			}
			if !found || runAt < best {
				best, found = runAt, true
			}
			below = prio
		}
	}
	if !found {
		return time.Time{}, false, nil
	}
	return FromMicros(best), true, nil
}
