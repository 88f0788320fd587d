package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
)

// Reads run on the read pool and never wait for the writer: WAL gives each
// read a consistent snapshot of the last commit.

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, taskID string) (*store.Task, error) {
	t, err := scanTask(s.rdb.QueryRowContext(ctx, "SELECT "+taskColumns+" FROM weft_tasks WHERE id = +?", taskID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("task %s: %w", taskID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", taskID, err)
	}
	return t, nil
}

// MaxListLimit bounds one page of List.
const MaxListLimit = 1000

// List implements store.Store.
func (s *Store) List(ctx context.Context, p store.ListParams) ([]*store.Task, error) {
	var (
		where []string
		args  []any
	)
	if p.Queue != "" {
		where, args = append(where, "queue = +?"), append(args, p.Queue)
	}
	if p.Kind != "" {
		where, args = append(where, "kind = +?"), append(args, p.Kind)
	}
	if len(p.States) > 0 {
		marks := make([]string, len(p.States))
		for i, st := range p.States {
			if !st.Valid() {
				return nil, &store.ValidationError{Index: -1, Field: "state", Message: fmt.Sprintf("%q is not a state", st)}
			}
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "state IN ("+strings.Join(marks, ",")+")")
	}
	if p.After != "" {
		where, args = append(where, "id > +?"), append(args, p.After)
	}
	limit := p.Limit
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	query := "SELECT " + taskColumns + " FROM weft_tasks"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id LIMIT ?"
	rows, err := s.rdb.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return tasks, nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, taskID string, after int64, limit int) ([]store.Event, error) {
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT seq, type, attempt, at, data FROM weft_events
		WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?`, taskID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", taskID, err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			e    store.Event
			typ  string
			at   int64
			data []byte
		)
		if err := rows.Scan(&e.Seq, &typ, &e.Attempt, &at, &data); err != nil {
			return nil, fmt.Errorf("read events of %s: %w", taskID, err)
		}
		e.TaskID, e.Type, e.At = taskID, store.EventType(typ), fromMicros(at)
		if len(data) > 0 {
			e.Data = data
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// NextRunAt implements store.Store. The claim index orders a queue by
// priority, then run_at; the earliest run_at is found by stepping through
// the distinct priorities, one index seek each, instead of scanning every
// pending row. A paused queue finds no row at the first step: an engine
// must not wake for work it may not claim.
func (s *Store) NextRunAt(ctx context.Context, queues, kinds []string) (time.Time, bool, error) {
	var (
		best  int64
		found bool
	)
	kindFilter := kindIn(len(kinds))
	for _, q := range queues {
		below := int64(math.MaxInt64)
		for {
			var prio, runAt int64
			err := s.rdb.QueryRowContext(ctx, `SELECT priority, run_at FROM weft_tasks
				WHERE state = 'pending' AND queue = +? AND priority < +?`+kindFilter+`
				AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = +? AND paused = 1)
				ORDER BY priority DESC, run_at LIMIT 1`, nextArgs(q, below, kinds)...).Scan(&prio, &runAt)
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
	return fromMicros(best), true, nil
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
