package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// flows are the shared flow statements in PostgreSQL's dialect: numbered
// placeholders, and rows locked FOR UPDATE where a transaction reads what
// it then writes, since nodes resolve flows concurrently.
func flows() sqlbackend.FlowStore {
	return sqlbackend.NewFlowStore(&sqlbackend.Dialect{
		Bind:         bind,
		JSON:         "?::jsonb",
		Lock:         "FOR UPDATE",
		AppendError:  "coalesce(errors, '[]'::jsonb) || jsonb_build_array(?::jsonb)",
		InsertRows:   insertRows,
		RequiresNone: "(gate::jsonb -> 'requires') IS NULL",
		RequiresMet: `NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(weft_tasks.gate::jsonb -> 'requires', '[]'::jsonb)) r
			WHERE NOT coalesce(CASE r->>'o'
			WHEN '=' THEN (?::jsonb ->> (r->>'l')) = r->>'v'
			WHEN '>=' THEN (?::jsonb ->> (r->>'l'))::float8 >= (r->>'n')::float8
			ELSE (?::jsonb ->> (r->>'l'))::float8 <= (r->>'n')::float8 END, false))`,
	})
}

// bind numbers a statement's ? placeholders $1, $2, … in order. The
// shared statements hold no ? inside literals.
func bind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// insertRows writes rows into table in multi-row INSERTs.
func insertRows(ctx context.Context, tx sqlbackend.Tx, table string, columns []string, rows [][]any) error {
	const chunk = 1000
	for len(rows) > 0 {
		n := min(len(rows), chunk)
		a := make([]any, 0, n*len(columns))
		var b strings.Builder
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for j := range r {
				if j > 0 {
					b.WriteByte(',')
				}
				a = append(a, r[j])
				b.WriteString("$" + strconv.Itoa(len(a)))
			}
			b.WriteByte(')')
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" ("+strings.Join(columns, ", ")+") VALUES "+b.String(), a...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// pgxTx runs the shared statements in a pgx transaction.
type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (t pgxTx) Query(ctx context.Context, query string, args ...any) (sqlbackend.Rows, error) {
	rows, err := t.tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (t pgxTx) QueryRow(ctx context.Context, query string, args ...any) sqlbackend.Row {
	return t.tx.QueryRow(ctx, query, args...)
}

// EnqueueFlow implements store.Store.
func (s *Store) EnqueueFlow(ctx context.Context, f store.NewFlow) (store.FlowResult, error) {
	fb, err := store.PrepareFlow(f, s.opts.Limits, s.now())
	if err != nil {
		return store.FlowResult{}, err
	}
	var res store.FlowResult
	err = s.tx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		res, err = s.insertFlow(ctx, tx, pgxTx{tx}, fb)
		return true, err
	})
	return res, err
}

// EnqueueFlowTx implements store.TxEnqueuer.
func (e txEnqueuer) EnqueueFlowTx(ctx context.Context, txAny any, f store.NewFlow) (store.FlowResult, error) {
	var (
		ex execer
		tx sqlbackend.Tx
	)
	switch t := txAny.(type) {
	case pgx.Tx:
		if t != nil {
			ex, tx = t, pgxTx{t}
		}
	case *sql.Tx:
		if t != nil {
			ex, tx = sqlTx{t}, sqlbackend.StdTx(t)
		}
	case nil:
	default:
		return store.FlowResult{}, fmt.Errorf("postgres: %T: %w", txAny, store.ErrTxUnsupported)
	}
	if tx == nil {
		return store.FlowResult{}, &store.ValidationError{Index: -1, Field: "tx", Message: "must not be nil"}
	}
	fb, err := store.PrepareFlow(f, e.s.opts.Limits, e.s.now())
	if err != nil {
		return store.FlowResult{}, err
	}
	res, err := e.s.insertFlow(ctx, ex, tx, fb)
	if err != nil {
		return res, err
	}
	return res, e.s.notifyTx(ctx, ex)
}

// insertFlow writes a prepared flow: its tasks, then its own rows.
func (s *Store) insertFlow(ctx context.Context, ex execer, tx sqlbackend.Tx, fb store.FlowBatch) (store.FlowResult, error) {
	res, err := s.insertTasks(ctx, ex, fb.Tasks)
	if err != nil {
		return store.FlowResult{}, err
	}
	out, err := store.FlowTasks(fb, res)
	if err != nil {
		return out, err
	}
	return out, flows().InsertFlow(ctx, tx, fb)
}

func (s *Store) readPool() sqlbackend.Querier { return poolReads{s.pool} }

// Flow implements store.Store.
func (s *Store) Flow(ctx context.Context, id string) (*store.Flow, error) {
	return flows().Flow(ctx, s.readPool(), id, s.now())
}

// ListFlows implements store.Store.
func (s *Store) ListFlows(ctx context.Context, p store.FlowListParams) ([]*store.Flow, error) {
	return flows().ListFlows(ctx, s.readPool(), p, s.now())
}

// FlowMembers implements store.Store.
func (s *Store) FlowMembers(ctx context.Context, id string) ([]store.FlowMember, error) {
	return flows().FlowMembers(ctx, s.readPool(), id)
}

// FlowEvents implements store.Store.
func (s *Store) FlowEvents(ctx context.Context, id string, after int64, limit int) ([]store.Event, error) {
	return flows().FlowEvents(ctx, s.readPool(), id, after, limit)
}

// Parents implements store.Store.
func (s *Store) Parents(ctx context.Context, taskID string) ([]store.ParentOutcome, error) {
	return flows().Parents(ctx, s.readPool(), taskID)
}

// CancelFlow implements store.Store.
func (s *Store) CancelFlow(ctx context.Context, id string) (*store.Flow, error) {
	now := s.now()
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		ch, cancelled, err := flows().CancelFlow(ctx, pgxTx{tx}, id, now)
		if err != nil {
			return false, err
		}
		resolved, err := flows().Resolve(ctx, pgxTx{tx}, cancelled, now)
		if err != nil {
			return false, err
		}
		ch = ch.Merge(resolved)
		// Running members' owners learn of the request from the
		// notification.
		ch.Wake = true
		return applyChange(ctx, tx, ch, micros(now))
	})
	if err != nil && !errors.Is(err, store.ErrAlreadyFinished) {
		return nil, err
	}
	f, rerr := s.Flow(ctx, id)
	if rerr != nil {
		return nil, rerr
	}
	return f, err
}

// RetryFlow implements store.Store.
func (s *Store) RetryFlow(ctx context.Context, id string) (*store.Flow, error) {
	now := s.now()
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		ch, err := flows().Reopen(ctx, pgxTx{tx}, id, nil, now)
		if err != nil {
			return false, err
		}
		return applyChange(ctx, tx, ch, micros(now))
	})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	f, rerr := s.Flow(ctx, id)
	if rerr != nil {
		return nil, rerr
	}
	return f, err
}

// AddMembers implements store.Store.
func (s *Store) AddMembers(ctx context.Context, taskID string, epoch int64, members []store.NewFlowMember) (store.FlowResult, error) {
	now := s.now()
	var res store.FlowResult
	err := s.flowTx(ctx, func(tx pgx.Tx) (bool, error) {
		var err error
		res, err = flows().AddMembers(ctx, pgxTx{tx}, taskID, epoch, members, s.opts.Limits, now,
			func(b store.Batch) ([]store.EnqueueResult, error) { return s.insertTasks(ctx, tx, b) })
		return true, err
	})
	if isUniqueViolation(err) {
		return store.FlowResult{}, fmt.Errorf("add flow members: a key is already in the flow (another member added it at the same moment): %w", store.ErrConflict)
	}
	return res, err
}

// resolveFinished applies flow members' final outcomes to their flows in
// tx, and says whether work may have become ready.
func resolveFinished(ctx context.Context, tx pgx.Tx, finished []sqlbackend.Finished, nowUS int64) (bool, error) {
	if len(finished) == 0 {
		return false, nil
	}
	ch, err := flows().Resolve(ctx, pgxTx{tx}, finished, fromMicros(nowUS))
	if err != nil {
		return false, err
	}
	return applyChange(ctx, tx, ch, nowUS)
}

// flowTx runs f in a transaction, again when PostgreSQL broke a deadlock
// by aborting it: flow transactions lock the rows they resolve in id
// order, but a cascade takes its locks wave by wave, so two cascades
// through one flow may still meet.
func (s *Store) flowTx(ctx context.Context, f func(tx pgx.Tx) (bool, error)) error {
	for attempt := 1; ; attempt++ {
		err := s.tx(ctx, f)
		if attempt < 5 && isDeadlock(err) {
			continue
		}
		return err
	}
}
