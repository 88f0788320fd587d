package postgres

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// MaxListLimit bounds one page of List.
const MaxListLimit = sqlbackend.MaxListLimit

// poolReads runs sqlbackend's reads on the pool. pgx's results are
// interfaces with the methods of sqlbackend's, so this costs a conversion
// and nothing else.
type poolReads struct{ pool *pgxpool.Pool }

func (p poolReads) Query(ctx context.Context, query string, args ...any) (sqlbackend.Rows, error) {
	return p.pool.Query(ctx, query, args...)
}

func (p poolReads) QueryRow(ctx context.Context, query string, args ...any) sqlbackend.Row {
	return p.pool.QueryRow(ctx, query, args...)
}

// readStatements are the texts of the reads shared with the SQLite backend
// (sqlbackend.Reader). Counts are weft_counts plus the deltas not yet
// folded into it (see Maintain).
var readStatements = sqlbackend.Statements{
	Task: "SELECT " + taskColumns + " FROM weft_tasks WHERE id = $1",
	Events: "SELECT " + sqlbackend.EventColumns + ` FROM weft_events
		WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
	EventsAfter: "SELECT " + sqlbackend.FeedColumns + ` FROM weft_events e JOIN weft_tasks t ON t.id = e.task_id
		WHERE e.seq > $1 AND e.seq <= $2
			AND ($3 = '' OR t.queue = $3) AND ($4 = '' OR t.kind = $4)
			AND (coalesce(cardinality($5::text[]), 0) = 0 OR e.type = ANY($5::text[]))
		ORDER BY e.seq LIMIT $6`,
	EventTypes: func(types []string) any { return types },
	Leader:     "SELECT " + sqlbackend.LeaderColumns + " FROM weft_leaders WHERE name = $1",
	Counts: `SELECT queue, state, sum(n)::bigint FROM (
			SELECT queue, state, n FROM weft_counts UNION ALL SELECT queue, state, n FROM weft_count_deltas) c
		GROUP BY queue, state HAVING sum(n) != 0
		UNION ALL SELECT name, NULL, 0 FROM weft_queues WHERE paused
		ORDER BY queue, state`,
	// Pending tasks are in two indexes: plain ones in the claim index,
	// gated ones (not set aside) in their own.
	TopPriority: `SELECT max(p)::bigint FROM (
		SELECT max(priority) AS p FROM weft_tasks WHERE state = 'pending' AND gate IS NULL AND queue = $1 AND priority < $2::bigint
		UNION ALL SELECT max(priority) FROM weft_tasks
		WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL AND queue = $1 AND priority < $2::bigint) m`,
	EarliestRunAt: `SELECT min(r) FROM (
		SELECT min(run_at) AS r FROM weft_tasks WHERE state = 'pending' AND gate IS NULL AND queue = $1 AND priority = $2::bigint
		UNION ALL SELECT min(run_at) FROM weft_tasks
		WHERE state = 'pending' AND gate IS NOT NULL AND parked_on IS NULL AND queue = $1 AND priority = $2::bigint) m`,
	AbovePriorities: abovePriorities,
}

// abovePriorities is above every priority: the column has 32 bits.
const abovePriorities = math.MaxInt32 + 1

// List implements store.Store.
func (s *Store) List(ctx context.Context, p store.ListParams) ([]*store.Task, error) {
	newest, err := p.Newest()
	if err != nil {
		return nil, err
	}
	w := taskWhere(p.Filter())
	order := " ORDER BY id"
	if p.After != "" {
		cmp := "id > ?"
		if newest {
			cmp = "id < ?"
		}
		w.add(cmp, p.After)
	}
	if newest {
		order += " DESC"
	}
	query := "SELECT " + taskColumns + " FROM weft_tasks" + w.clause() + order + " LIMIT " + strconv.Itoa(sqlbackend.PageLimit(p.Limit))
	rows, err := s.pool.Query(ctx, query, w.args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rows.Close()
	var out []*store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// where collects the conditions of a WHERE clause and their arguments.
type where struct {
	conds []string
	args  []any
}

// add appends cond, whose one ? is bound to v.
func (w *where) add(cond string, v any) {
	w.args = append(w.args, v)
	w.conds = append(w.conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(w.args))))
}

// clause is " WHERE ..." or "" when there is no condition.
func (w *where) clause() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// taskWhere renders the conditions that select f's tasks.
func taskWhere(f store.TaskFilter) *where {
	w := &where{}
	if f.Queue != "" {
		w.add("queue = ?", f.Queue)
	}
	if f.Kind != "" {
		w.add("kind = ?", f.Kind)
	}
	if len(f.States) > 0 {
		// The states are written into the statement, not bound: they are
		// the model's own names, and a generic plan of a cached statement
		// cannot use a partial index for a bound array, so a rare state
		// (waiting, blocked) would be looked for by walking the id index
		// past every task.
		w.conds = append(w.conds, "state IN "+store.SQLList(f.States))
	}
	if !f.CreatedSince.IsZero() {
		w.add("created_at >= ?", micros(f.CreatedSince))
	}
	if !f.CreatedUntil.IsZero() {
		w.add("created_at < ?", micros(f.CreatedUntil))
	}
	if len(f.IDs) > 0 {
		w.add("id = ANY(?::text[])", f.IDs)
	}
	return w
}

// NextRunAt implements store.Store (see sqlbackend.NextRunAt). A paused
// queue finds no row at the first step: an engine must not wake for work
// it may not claim.
func (s *Store) NextRunAt(ctx context.Context, queues, kinds []string) (time.Time, bool, error) {
	kindFilter := ""
	if len(kinds) > 0 {
		kindFilter = " AND kind = ANY($3::text[])"
	}
	next, ok, err := sqlbackend.NextRunAt(queues, abovePriorities, func(queue string, below int64) sqlbackend.Row {
		args := []any{queue, below}
		if len(kinds) > 0 {
			args = append(args, kinds)
		}
		return s.pool.QueryRow(ctx, `SELECT priority, run_at FROM weft_tasks
			WHERE state = 'pending' AND gate IS NULL AND queue = $1 AND priority < $2::bigint`+kindFilter+`
			AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = $1 AND paused)
			ORDER BY priority DESC, run_at LIMIT 1`, args...)
	})
	if err != nil {
		return next, ok, err
	}
	qs := make([]store.QueueClaim, len(queues))
	for i, q := range queues {
		qs[i] = store.QueueClaim{Queue: q, Limit: 1}
	}
	gated, err := s.gated.Of(ctx, flows(), s.readPool(), qs)
	if err != nil || len(gated) == 0 {
		return next, ok, err
	}
	return flows().NextGated(ctx, s.readPool(), queues, kinds, gated, s.now(), next, ok)
}
