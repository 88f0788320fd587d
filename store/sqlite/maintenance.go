package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/internal/sqlbackend"
)

// TouchNode implements store.Store.
func (s *Store) TouchNode(ctx context.Context, n store.Node) error {
	started, nowUS, err := sqlbackend.NodeTimes(n, s.now())
	if err != nil {
		return err
	}
	labels, err := sqlbackend.LabelsJSON(n.Labels)
	if err != nil {
		return err
	}
	return s.writer.doLight(ctx, func(q *execer) error {
		_, err := q.exec(`INSERT INTO weft_nodes (id, host, pid, started_at, heartbeat_at, queues, kinds, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, queues = excluded.queues, kinds = excluded.kinds, labels = excluded.labels`,
			n.ID, n.Host, n.PID, started, nowUS, sqlbackend.NamesJSON(n.Queues), sqlbackend.NamesJSON(n.Kinds), labels)
		return err
	})
}

// RemoveNode implements store.Store.
func (s *Store) RemoveNode(ctx context.Context, id string) error {
	return s.writer.do(ctx, func(q *execer) error {
		_, err := q.exec("DELETE FROM weft_nodes WHERE id = ?", id)
		return err
	})
}

// Purge implements store.Store: tasks go with their events and output
// streams. A window ends at the Window-th id after the
// cursor, found on the id index alone; only rows inside it are examined,
// so a pass costs the same however the table is made up.
func (s *Store) Purge(ctx context.Context, p store.PurgeParams) (store.PurgeResult, error) {
	plan, err := p.Plan()
	if err != nil {
		return store.PurgeResult{}, err
	}
	if len(plan.Cutoffs) == 0 {
		return store.PurgeResult{Done: true}, nil
	}
	conds := make([]string, len(plan.Cutoffs))
	cutoffs := make([]driver.Value, len(plan.Cutoffs))
	for i, c := range plan.Cutoffs {
		conds[i] = "(state = '" + string(c.State) + "' AND finalized_at < +?)"
		cutoffs[i] = micros(c.Before)
	}
	var res store.PurgeResult
	err = s.writer.do(ctx, func(q *execer) error {
		deleted := 0
		end := ""
		err := q.conn.QueryRowContext(context.Background(), "SELECT id FROM weft_tasks WHERE id > +? ORDER BY id LIMIT 1 OFFSET "+strconv.Itoa(plan.Window-1), p.After).Scan(&end)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("purge: %w", err)
		}
		var a args
		a.add(p.After)
		bound := ""
		if end != "" {
			bound = " AND id <= +?"
			a.add(end)
		}
		a.add(cutoffs...)
		// Ids are UUIDs, so Go's quoting of them is valid JSON.
		ids := []byte{'['}
		removed := store.CountMoves{}
		err = q.rawQuery(`DELETE FROM weft_tasks WHERE rowid IN (SELECT rowid FROM weft_tasks
			WHERE id > +?`+bound+` AND flow_id IS NULL AND (`+strings.Join(conds, " OR ")+`) LIMIT `+strconv.Itoa(plan.Limit)+`) RETURNING id, queue, state`,
			a, func(v []driver.Value) error {
				if deleted > 0 {
					ids = append(ids, ',')
				}
				ids = strconv.AppendQuote(ids, asString(v[0]))
				removed.Move(asString(v[1]), store.State(asString(v[2])), "", 1)
				deleted++
				return nil
			})
		if err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		// Flows go whole, members and all, once the flow is final and
		// older than its cutoff; a few per call, as each may be large.
		flowsDeleted, err := flows().PurgeFlows(context.Background(), sqlbackend.StdTx(q.conn), plan, sqlbackend.FlowPurgeBatch, removed)
		if err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		if err := applyCounts(context.Background(), q.conn, removed); err != nil {
			return err
		}
		if deleted > 0 {
			idList := string(append(ids, ']'))
			var ev args
			ev.add(idList)
			for _, table := range []string{"weft_events", "weft_signals", "weft_waitpoints"} {
				if err := q.rawExec("DELETE FROM "+table+" WHERE task_id IN (SELECT value FROM json_each(?))", ev); err != nil {
					return fmt.Errorf("purge %s: %w", table, err)
				}
			}
			if err := streams().PurgeFrames(context.Background(), sqlbackend.StdTx(q.conn), "SELECT value FROM json_each(?)", idList); err != nil {
				return fmt.Errorf("purge: %w", err)
			}
		}
		res = plan.Result(p.After, deleted, end)
		if flowsDeleted == sqlbackend.FlowPurgeBatch {
			res.Done = false
		}
		return nil
	})
	if err != nil {
		return store.PurgeResult{}, err
	}
	return res, nil
}

// Lead implements store.Store. Leadership writes are light: a lost one is
// retaken by the next renewal.
func (s *Store) Lead(ctx context.Context, role, holder string, ttl time.Duration) (int64, bool, error) {
	if err := sqlbackend.CheckLead(role, holder, ttl); err != nil {
		return 0, false, err
	}
	now := s.now()
	var (
		term int64
		held bool
	)
	err := s.writer.doLight(ctx, func(q *execer) error {
		var who string
		err := q.queryRow(`INSERT INTO weft_leaders (name, holder, term, expires_at) VALUES (?1, ?2, 1, ?3)
			ON CONFLICT (name) DO UPDATE SET
				term = CASE WHEN holder = excluded.holder THEN term ELSE term + 1 END,
				holder = excluded.holder,
				expires_at = excluded.expires_at
			WHERE holder = excluded.holder OR expires_at < ?4
			RETURNING holder, term`, role, holder, micros(now.Add(ttl)), micros(now)).Scan(&who, &term)
		if errors.Is(err, sql.ErrNoRows) {
			held = false
			return q.queryRow("SELECT term FROM weft_leaders WHERE name = ?", role).Scan(&term)
		}
		held = err == nil && who == holder
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("lead %s: %w", role, err)
	}
	return term, held, nil
}

// Resign implements store.Store. The row is kept, expired, so that the
// next leader's term still follows this one's.
func (s *Store) Resign(ctx context.Context, role, holder string) error {
	return s.writer.do(ctx, func(q *execer) error {
		_, err := q.exec("UPDATE weft_leaders SET expires_at = 0 WHERE name = ? AND holder = ?", role, holder)
		return err
	})
}
