package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// flows are the shared flow statements in SQLite's dialect: its
// placeholders are already ?, and its one writer needs no row locks.
func flows() sqlbackend.FlowStore {
	return sqlbackend.NewFlowStore(&sqlbackend.Dialect{
		Bind:         func(q string) string { return q },
		JSON:         "?",
		AppendError:  "json_insert(coalesce(errors, '[]'), '$[#]', json(?))",
		RequiresNone: "json_extract(gate, '$.requires') IS NULL",
		RequiresMet: `NOT EXISTS (SELECT 1 FROM json_each(weft_tasks.gate, '$.requires') r WHERE NOT coalesce(
			CASE json_extract(r.value, '$.o')
			WHEN '=' THEN json_extract(?, '$."' || json_extract(r.value, '$.l') || '"') = json_extract(r.value, '$.v')
			WHEN '>=' THEN json_extract(?, '$."' || json_extract(r.value, '$.l') || '"') >= json_extract(r.value, '$.n')
			ELSE json_extract(?, '$."' || json_extract(r.value, '$.l') || '"') <= json_extract(r.value, '$.n') END, 0))`,
		InsertRows: insertRows,
	})
}

// insertRows writes rows into table in multi-row INSERTs.
func insertRows(ctx context.Context, tx sqlbackend.Tx, table string, columns []string, rows [][]any) error {
	for len(rows) > 0 {
		n := min(len(rows), insertChunk)
		a := make([]any, 0, n*len(columns))
		for _, r := range rows[:n] {
			a = append(a, r...)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" ("+strings.Join(columns, ", ")+") VALUES "+placeholders(n, len(columns)), a...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// EnqueueFlow implements store.Store.
func (s *Store) EnqueueFlow(ctx context.Context, f store.NewFlow) (store.FlowResult, error) {
	fb, err := store.PrepareFlow(f, s.opts.Limits, s.now())
	if err != nil {
		return store.FlowResult{}, err
	}
	var res store.FlowResult
	err = s.writer.do(ctx, func(q *execer) error {
		var err error
		res, err = s.insertFlow(context.Background(), q.conn, fb)
		q.wake = err == nil
		return err
	})
	return res, err
}

// EnqueueFlowTx implements store.TxEnqueuer.
func (e txEnqueuer) EnqueueFlowTx(ctx context.Context, txAny any, f store.NewFlow) (store.FlowResult, error) {
	tx, ok := txAny.(*sql.Tx)
	if !ok {
		return store.FlowResult{}, fmt.Errorf("sqlite: %T: %w", txAny, store.ErrTxUnsupported)
	}
	if tx == nil {
		return store.FlowResult{}, &store.ValidationError{Index: -1, Field: "tx", Message: "must not be nil"}
	}
	fb, err := store.PrepareFlow(f, e.s.opts.Limits, e.s.now())
	if err != nil {
		return store.FlowResult{}, err
	}
	return e.s.insertFlow(ctx, tx, fb)
}

// insertFlow writes a prepared flow: its tasks, then its own rows.
func (s *Store) insertFlow(ctx context.Context, db dbtx, fb store.FlowBatch) (store.FlowResult, error) {
	res, err := s.insertTasks(ctx, db, fb.Tasks)
	if err != nil {
		return store.FlowResult{}, err
	}
	out, err := store.FlowTasks(fb, res)
	if err != nil {
		return out, err
	}
	return out, flows().InsertFlow(ctx, sqlbackend.StdTx(db), fb)
}

// Flow implements store.Store.
func (s *Store) Flow(ctx context.Context, id string) (*store.Flow, error) {
	return flows().Flow(ctx, sqlbackend.StdDB(s.rdb), id, s.now())
}

// ListFlows implements store.Store.
func (s *Store) ListFlows(ctx context.Context, p store.FlowListParams) ([]*store.Flow, error) {
	return flows().ListFlows(ctx, sqlbackend.StdDB(s.rdb), p, s.now())
}

// FlowMembers implements store.Store.
func (s *Store) FlowMembers(ctx context.Context, id string) ([]store.FlowMember, error) {
	return flows().FlowMembers(ctx, sqlbackend.StdDB(s.rdb), id)
}

// FlowEvents implements store.Store.
func (s *Store) FlowEvents(ctx context.Context, id string, after int64, limit int) ([]store.Event, error) {
	return flows().FlowEvents(ctx, sqlbackend.StdDB(s.rdb), id, after, limit)
}

// Parents implements store.Store.
func (s *Store) Parents(ctx context.Context, taskID string) ([]store.ParentOutcome, error) {
	return flows().Parents(ctx, sqlbackend.StdDB(s.rdb), taskID)
}

// CancelFlow implements store.Store.
func (s *Store) CancelFlow(ctx context.Context, id string) (*store.Flow, error) {
	now := s.now()
	err := s.writer.do(ctx, func(q *execer) error {
		tx := sqlbackend.StdTx(q.conn)
		ch, cancelled, err := flows().CancelFlow(context.Background(), tx, id, now)
		if err != nil {
			return err
		}
		resolved, err := flows().Resolve(context.Background(), tx, cancelled, now)
		if err != nil {
			return err
		}
		ch = ch.Merge(resolved)
		// Running members' owners learn of the request at the wakeup.
		ch.Wake = true
		return applyChange(q, ch, micros(now))
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
	err := s.writer.do(ctx, func(q *execer) error {
		ch, err := flows().Reopen(context.Background(), sqlbackend.StdTx(q.conn), id, nil, now)
		if err != nil {
			return err
		}
		return applyChange(q, ch, micros(now))
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
	err := s.writer.do(ctx, func(q *execer) error {
		var err error
		res, err = flows().AddMembers(context.Background(), sqlbackend.StdTx(q.conn), taskID, epoch, members, s.opts.Limits, now,
			func(b store.Batch) ([]store.EnqueueResult, error) {
				return s.insertTasks(context.Background(), q.conn, b)
			})
		q.wake = err == nil
		return err
	})
	return res, err
}

// resolveFinished applies flow members' final outcomes to their flows in
// the writer's transaction.
func resolveFinished(q *execer, finished []sqlbackend.Finished, nowUS int64) error {
	if len(finished) == 0 {
		return nil
	}
	ch, err := flows().Resolve(context.Background(), sqlbackend.StdTx(q.conn), finished, fromMicros(nowUS))
	if err != nil {
		return err
	}
	return applyChange(q, ch, nowUS)
}
