// Package sqlbackend holds what Weft's two SQL backends, SQLite and
// PostgreSQL, do alike, written once: the reads that turn their rows into
// the store's types (Reader), and the rules they apply the same way around
// statements of their own — checks of input, the telling of a lost lease
// from a missing task, rescue bounds, the schema version check.
//
// The two schemas keep the same columns with the same meaning: times as
// microseconds since the Unix epoch (Micros), JSON as bytes. They differ in
// dialect, so each backend keeps its own statements — placeholders, casts
// and index hints are its business — and hands them here with a Querier
// over its connections. What a statement must select, in the order the scan
// here expects, is defined here, beside the scan, as a column list.
//
// It serves reads and cold writes. The backends' hot paths (claims,
// outcomes, enqueues) keep their own driver-specific code.
package sqlbackend

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Row is one result row, as *sql.Row and pgx.Row both provide it. A query
// that found no row reports an error matching sql.ErrNoRows (pgx.ErrNoRows
// matches it too), so no backend needs to translate it.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set, with pgx's Close: a database/sql result set goes
// through StdDB, which drops Close's error as the backends always have —
// whatever failed while reading is reported by Err.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs a backend's statements. Its methods match pgx's, so a pgx
// pool needs only a conversion of the results; StdDB adapts database/sql.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// StdDB is a Querier on a database/sql pool.
func StdDB(db *sql.DB) Querier { return stdDB{db} }

type stdDB struct{ db *sql.DB }

func (d stdDB) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		// A nil *sql.Rows in a Rows would not compare equal to nil.
		return nil, err
	}
	return stdRows{rows}, nil
}

func (d stdDB) QueryRow(ctx context.Context, query string, args ...any) Row {
	return d.db.QueryRowContext(ctx, query, args...)
}

// SQLExecer is what database/sql's pools, connections and transactions
// share.
type SQLExecer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// StdTx is a Tx on a database/sql connection or transaction: the writer's
// connection on SQLite, a caller's *sql.Tx on either backend.
func StdTx(db SQLExecer) Tx { return stdTx{db} }

type stdTx struct{ db SQLExecer }

func (t stdTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	r, err := t.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

func (t stdTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := t.db.QueryContext(ctx, query, args...)
	if err != nil {
		// A nil *sql.Rows in a Rows would not compare equal to nil.
		return nil, err
	}
	return stdRows{rows}, nil
}

func (t stdTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return t.db.QueryRowContext(ctx, query, args...)
}

type stdRows struct{ *sql.Rows }

func (r stdRows) Close() { _ = r.Rows.Close() }

// Micros is how both schemas store a time: microseconds since the Unix
// epoch, which orders and compares as an integer in SQL.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros reads a time stored by Micros, in UTC so that times read back
// compare and print alike whatever the server's zone.
func FromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// MaxListLimit bounds one page of a listing (tasks, events). The backends
// export it as their own MaxListLimit.
const MaxListLimit = 1000

// PageLimit is the page size for a listing that asked for limit rows: a
// limit that is not positive, or is above MaxListLimit, gets MaxListLimit.
func PageLimit(limit int) int {
	if limit <= 0 || limit > MaxListLimit {
		return MaxListLimit
	}
	return limit
}

// collect scans every row of query into a slice, with errors prefixed by
// what. It returns nil, not an empty slice, when there is no row.
func collect[T any](ctx context.Context, db Querier, what, query string, args []any, scan func(Rows) (T, error)) ([]T, error) {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
