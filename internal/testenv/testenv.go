// Package testenv gives tests a real Weft to work on: a migrated SQLite
// file of their own, and a client on it. The API server's, the CLI's and
// the operator service's tests all set up through it, so that each tests
// the same thing the others do.
package testenv

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// SQLite creates a migrated SQLite database in t's temporary directory and
// returns its path and a store on it, closed when the test ends. The
// store logs nothing, so that a failing test's output is its own.
func SQLite(t testing.TB) (string, store.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weft.db")
	st, err := sqlite.Open(context.Background(), path, &sqlite.Options{Logger: Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return path, st
}

// Client returns a client on st that logs nothing and runs no workers.
func Client(t testing.TB, st store.Store) *weft.Client {
	t.Helper()
	c, err := weft.NewClient(st, &weft.Config{Logger: Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Postgres opens a migrated store on a PostgreSQL schema of t's own (see
// internal/pgtest), closed when the test ends; the test is skipped when no
// server answers, except under CI.
func Postgres(t testing.TB) store.Store {
	t.Helper()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(context.Background(), dsn, &postgres.Options{Logger: Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Logger returns a logger that drops everything, so that what code under
// test logs does not bury the test's own output.
func Logger() *slog.Logger { return slog.New(slog.DiscardHandler) }
