package main

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store/sqlite"
)

// rawSystem is the practical limit of each database for Weft's work: the
// claim and complete statements Weft's store issues, copied from
// store/sqlite (claim.go, finish.go) and store/postgres (tasks.go), run in
// a tight loop on one plain connection — no engine, no handlers, no
// goroutines, no wakeups. Only the burn-down applies: the tasks are
// inserted with Weft's own Enqueue, and there is no consumer to measure a
// latency against.
//
// With bookkeeping set, each transaction also carries the statements Weft
// adds around the two (the weft_counts changes and the started and
// completed event rows), which makes the loop Weft's complete SQL minus
// the engine.
type rawSystem struct {
	be          string
	bookkeeping bool
}

func (s rawSystem) name() string              { return "raw" }
func (s rawSystem) backend() string           { return s.be }
func (s rawSystem) maxWorkers() (int, string) { return 0, "" }

func (s rawSystem) insert(context.Context, *target, int) (measure, error) {
	return measure{}, skip("raw SQL inserts with Weft's own Enqueue: see weft's insert")
}

func (s rawSystem) latency(context.Context, *target, latencyParams) (measure, error) {
	return measure{}, skip("a loop over a finished backlog has no running consumer to enqueue into")
}

// rawClaimLimit mirrors Weft's engine: it claims up to its free worker
// slots, at most 1,000 (the engine's MaxClaim) at a time.
func rawClaimLimit(workers int) int { return min(workers, 1000) }

const (
	rawOwner = "raw-loop"
	rawQueue = "default"
	rawKind  = "noop"
	// rawLease is Weft's default LeaseTTL.
	rawLease = 30 * time.Second
)

func (s rawSystem) burndown(ctx context.Context, db *target, n, workers int) (measure, error) {
	if err := weftSeed(ctx, db, n); err != nil {
		return measure{}, fmt.Errorf("seed with Weft: %w", err)
	}
	var (
		done    int
		elapsed time.Duration
		err     error
	)
	if s.be == backendSQLite {
		done, elapsed, err = s.sqliteLoop(ctx, db.path, rawClaimLimit(workers))
	} else {
		done, elapsed, err = s.postgresLoop(ctx, db.dsn, rawClaimLimit(workers))
	}
	if err != nil {
		return measure{}, err
	}
	if done != n {
		return measure{}, fmt.Errorf("completed %d of %d tasks", done, n)
	}
	return measure{elapsed: elapsed}, nil
}

// SQLite statements, as store/sqlite builds them for one queue, one kind
// and a claim limit written into the statement.

// rawSQLiteClaim is claim.go's UPDATE … RETURNING; %d is the limit.
const rawSQLiteClaim = `UPDATE weft_tasks SET state = 'running', attempt = attempt + 1, lease_epoch = lease_epoch + 1,
		lease_owner = ?, lease_expires_at = ?, attempted_at = ?, resumable = 1
		WHERE rowid IN (SELECT rowid FROM (SELECT rowid FROM weft_tasks
			WHERE state = 'pending' AND queue = +? AND run_at <= +? AND kind IN (+?)
			AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = +? AND paused = 1)
			ORDER BY priority DESC, run_at, rowid LIMIT %d)) RETURNING rowid, id, kind, queue, args, priority, run_at, attempt, max_attempts,
	attempt_timeout_us, errors, metadata, lease_epoch, created_at`

// rawSQLiteComplete is finish.go's completeSQL; %s is the VALUES rows.
const rawSQLiteComplete = `UPDATE weft_tasks SET
	state = 'completed', result = v.column3, lease_expires_at = NULL, finalized_at = ?1
	FROM (VALUES %s) AS v
	WHERE weft_tasks.id = v.column1 AND weft_tasks.lease_epoch = v.column2 AND weft_tasks.state = 'running'
	RETURNING weft_tasks.id, weft_tasks.lease_epoch, weft_tasks.state, weft_tasks.attempt, weft_tasks.queue`

// rawSQLiteChunk is finish.go's finishChunk (and tasks.go's eventChunk):
// outcomes per statement.
const rawSQLiteChunk = 128

// The bookkeeping statements of store/sqlite: counts.go's apply for one
// queue, claim.go's started events, tasks.go's insertEvents.
const (
	rawSQLiteCounts = `INSERT INTO weft_counts (queue, state, n) VALUES (?,?,?),(?,?,?)
		ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n`
	rawSQLiteStarted = `INSERT INTO weft_events (task_id, type, attempt, at)
			SELECT id, 'started', attempt, attempted_at FROM weft_tasks
			WHERE rowid IN (SELECT value FROM json_each(?))`
	rawSQLiteEvents = `INSERT INTO weft_events (task_id, type, attempt, at, data) VALUES `
)

// rawRows turns values into driver arguments, numbered from 1.
func rawRows(vs ...driver.Value) []driver.NamedValue {
	a := make([]driver.NamedValue, len(vs))
	for i, v := range vs {
		a[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return a
}

// rowsOf is "(?,?,?),(?,?,?)…": n rows of width placeholders.
func rowsOf(n, width int) string {
	row := "(" + strings.Repeat("?,", width-1) + "?)"
	return strings.Repeat(row+",", n-1) + row
}

// sqliteLoop claims and completes until nothing is left, on one
// connection with Weft's settings (sqlite.OpenSQL: WAL, synchronous=FULL,
// no connection mutex, the same cache and statement cache), going to the
// driver directly as Weft's writer does for these statements. Like Weft's
// writer, it commits claims at synchronous=NORMAL (a lost claim only puts
// tasks back) and completions at FULL. Checkpoints are SQLite's automatic
// ones, on this connection: a plain connection has no checkpointer beside
// it.
func (s rawSystem) sqliteLoop(ctx context.Context, path string, limit int) (int, time.Duration, error) {
	db, err := sqlite.OpenSQL(path, nil)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	claimSQL := fmt.Sprintf(rawSQLiteClaim, limit)
	var (
		done    int
		elapsed time.Duration
	)
	err = conn.Raw(func(dc any) error {
		qc := dc.(driver.QueryerContext)
		ec := dc.(driver.ExecerContext)
		exec := func(query string, a []driver.NamedValue) error {
			_, err := ec.ExecContext(ctx, query, a)
			return err
		}
		// query runs a statement and hands each row to row.
		query := func(query string, a []driver.NamedValue, row func([]driver.Value)) error {
			rows, err := qc.QueryContext(ctx, query, a)
			if err != nil {
				return err
			}
			defer rows.Close()
			dest := make([]driver.Value, len(rows.Columns()))
			for {
				if err := rows.Next(dest); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				row(dest)
			}
		}
		// tx runs f in a BEGIN IMMEDIATE transaction at the given
		// synchronous setting.
		tx := func(sync string, f func() error) error {
			if err := exec("PRAGMA synchronous = "+sync, nil); err != nil {
				return err
			}
			if err := exec("BEGIN IMMEDIATE", nil); err != nil {
				return err
			}
			if err := f(); err != nil {
				_ = exec("ROLLBACK", nil)
				return err
			}
			return exec("COMMIT", nil)
		}
		type lease struct {
			id             string
			epoch, attempt int64
		}
		claimed := make([]lease, 0, limit)
		start := time.Now()
		for {
			now := time.Now()
			nowUS := now.UnixMicro()
			claimed = claimed[:0]
			err := tx("NORMAL", func() error {
				rowids := []byte{'['}
				err := query(claimSQL, rawRows(rawOwner, now.Add(rawLease).UnixMicro(), nowUS, rawQueue, nowUS, rawKind, rawQueue), func(v []driver.Value) {
					if len(claimed) > 0 {
						rowids = append(rowids, ',')
					}
					rowids = strconv.AppendInt(rowids, v[0].(int64), 10)
					claimed = append(claimed, lease{id: asString(v[1]), epoch: v[12].(int64), attempt: v[7].(int64)})
				})
				if err != nil || !s.bookkeeping || len(claimed) == 0 {
					return err
				}
				k := int64(len(claimed))
				if err := exec(rawSQLiteCounts, rawRows(rawQueue, "pending", -k, rawQueue, "running", k)); err != nil {
					return err
				}
				return exec(rawSQLiteStarted, rawRows(string(append(rowids, ']'))))
			})
			if err != nil {
				return fmt.Errorf("claim: %w", err)
			}
			if len(claimed) == 0 {
				elapsed = time.Since(start)
				return nil
			}
			finalUS := time.Now().UnixMicro()
			err = tx("FULL", func() error {
				applied := 0
				for c := claimed; len(c) > 0; {
					chunk := c[:min(len(c), rawSQLiteChunk)]
					c = c[len(chunk):]
					vs := []driver.Value{finalUS}
					for _, l := range chunk {
						vs = append(vs, l.id, l.epoch, nil)
					}
					err := query(fmt.Sprintf(rawSQLiteComplete, rowsOf(len(chunk), 3)), rawRows(vs...), func([]driver.Value) { applied++ })
					if err != nil {
						return err
					}
					if s.bookkeeping {
						ev := []driver.Value{}
						for _, l := range chunk {
							ev = append(ev, l.id, "completed", l.attempt, finalUS, nil)
						}
						if err := exec(rawSQLiteEvents+rowsOf(len(chunk), 5), rawRows(ev...)); err != nil {
							return err
						}
					}
				}
				if applied != len(claimed) {
					return fmt.Errorf("completed %d of %d claimed tasks", applied, len(claimed))
				}
				if !s.bookkeeping {
					return nil
				}
				k := int64(applied)
				return exec(rawSQLiteCounts, rawRows(rawQueue, "running", -k, rawQueue, "completed", k))
			})
			if err != nil {
				return fmt.Errorf("complete: %w", err)
			}
			done += len(claimed)
		}
	})
	return done, elapsed, err
}

// asString reads a TEXT value, which the driver returns as a string or,
// for some declared types, as bytes.
func asString(v driver.Value) string {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	s, _ := v.(string)
	return s
}

// PostgreSQL statements, as store/postgres builds them for one queue and
// one kind.

// rawPGClaim is tasks.go's Claim; %d is the limit. $1 owner, $2 lease
// expiry, $3 now, $4 the kinds that are not resumable, $5 the claimed
// kinds, $6 the queue.
const rawPGClaim = `WITH c0 AS (SELECT id FROM weft_tasks WHERE state = 'pending' AND queue = $6 AND run_at <= $3 AND kind = ANY($5::text[]) AND NOT EXISTS (SELECT 1 FROM weft_queues WHERE name = $6 AND paused)
			ORDER BY priority DESC, run_at, id LIMIT %d FOR UPDATE SKIP LOCKED)
		UPDATE weft_tasks SET state = 'running', attempt = attempt + 1, lease_epoch = lease_epoch + 1,
			lease_owner = $1, lease_expires_at = $2, attempted_at = $3, resumable = NOT (kind = ANY($4::text[]))
		WHERE id IN (SELECT id FROM c0)
		RETURNING id, kind, queue, args, priority, run_at, attempt, max_attempts, attempt_timeout_us, errors, metadata, lease_epoch, created_at`

// rawPGFinish is tasks.go's Finish: one UPDATE … FROM unnest(…) for the
// batch, the same statement for every outcome state.
const rawPGFinish = `UPDATE weft_tasks t SET
			state = CASE WHEN v.state = 'pending' AND t.cancel_requested THEN 'cancelled' ELSE v.state END,
			result = coalesce(v.result::jsonb, t.result),
			errors = CASE WHEN v.err IS NULL THEN t.errors ELSE coalesce(t.errors, '[]'::jsonb) || jsonb_build_array(v.err::jsonb) END,
			run_at = coalesce(v.run_at, t.run_at),
			attempt = t.attempt - v.refund,
			lease_expires_at = NULL,
			lease_owner = CASE WHEN v.state = 'pending' THEN NULL ELSE t.lease_owner END,
			finalized_at = CASE WHEN v.state = 'pending' AND NOT t.cancel_requested THEN NULL ELSE $8::bigint END
			FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::int[])
				AS v(id, epoch, state, result, err, run_at, refund)
			WHERE t.id = v.id AND t.lease_epoch = v.epoch AND t.state = 'running'
			RETURNING t.id, t.lease_epoch, t.state, t.attempt, t.queue`

// The bookkeeping statements of store/postgres: counts' apply (delta rows)
// and insertEvents.
const (
	rawPGCounts = `INSERT INTO weft_count_deltas (queue, state, n)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])`
	rawPGEvents = `INSERT INTO weft_events (task_id, type, attempt, at, data)
		SELECT id, type, attempt, $5, data::jsonb FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS e(id, type, attempt, data)`
)

// postgresLoop claims and completes until nothing is left, on one pgx
// connection to the target's schema. Claims commit with
// synchronous_commit = off, as Weft's do; completions wait for the WAL
// flush.
func (s rawSystem) postgresLoop(ctx context.Context, dsn string, limit int) (int, time.Duration, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	claimSQL := fmt.Sprintf(rawPGClaim, limit)
	kinds, notResumable := []string{rawKind}, []string{}
	done := 0
	start := time.Now()
	for {
		now := time.Now()
		nowUS := now.UnixMicro()
		var (
			ids      []string
			epochs   []int64
			attempts []int32
		)
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, claimSQL, rawOwner, now.Add(rawLease).UnixMicro(), nowUS, notResumable, kinds, rawQueue)
			if err != nil {
				return err
			}
			for rows.Next() {
				// Scanned as Weft scans them: every column crosses.
				var (
					id, kind, queue                    string
					args, errs, metadata               []byte
					prio, attempt, maxAttempts         int32
					runAt, timeout, epoch, createdAtUS int64
				)
				if err := rows.Scan(&id, &kind, &queue, &args, &prio, &runAt, &attempt, &maxAttempts, &timeout, &errs, &metadata, &epoch, &createdAtUS); err != nil {
					rows.Close()
					return err
				}
				ids, epochs, attempts = append(ids, id), append(epochs, epoch), append(attempts, attempt)
			}
			rows.Close()
			if err := rows.Err(); err != nil || !s.bookkeeping || len(ids) == 0 {
				return err
			}
			k := int64(len(ids))
			if _, err := tx.Exec(ctx, rawPGCounts, []string{rawQueue, rawQueue}, []string{"pending", "running"}, []int64{-k, k}); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, rawPGEvents, ids, repeat("started", len(ids)), attempts, make([]*string, len(ids)), nowUS)
			return err
		})
		if err != nil {
			return 0, 0, fmt.Errorf("claim: %w", err)
		}
		if len(ids) == 0 {
			return done, time.Since(start), nil
		}
		n := len(ids)
		finalUS := time.Now().UnixMicro()
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, rawPGFinish, ids, epochs, repeat("completed", n),
				make([]*string, n), make([]*string, n), make([]*int64, n), make([]int32, n), finalUS)
			if err != nil {
				return err
			}
			applied := 0
			for rows.Next() {
				var (
					id, state, queue string
					epoch            int64
					attempt          int32
				)
				if err := rows.Scan(&id, &epoch, &state, &attempt, &queue); err != nil {
					rows.Close()
					return err
				}
				applied++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if applied != n {
				return fmt.Errorf("completed %d of %d claimed tasks", applied, n)
			}
			if !s.bookkeeping {
				return nil
			}
			k := int64(n)
			if _, err := tx.Exec(ctx, rawPGCounts, []string{rawQueue, rawQueue}, []string{"running", "completed"}, []int64{-k, k}); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, rawPGEvents, ids, repeat("completed", n), attempts, make([]*string, n), finalUS)
			return err
		})
		if err != nil {
			return 0, 0, fmt.Errorf("complete: %w", err)
		}
		done += n
	}
}

// repeat is n copies of s.
func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
