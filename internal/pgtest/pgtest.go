// Package pgtest gives tests a PostgreSQL database of their own: the
// server named by WEFT_TEST_POSTGRES_URL (default the local server as
// postgres), and a fresh schema per test, dropped when it ends. In CI
// (CI set) an unreachable server fails the test instead of skipping it, so
// the PostgreSQL suites can never be skipped there unnoticed.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server used when WEFT_TEST_POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the server's URL after checking that it answers; it
// skips the test when it does not, or fails it under CI.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("WEFT_TEST_POSTGRES_URL")
	if u == "" {
		u = DefaultURL
	}
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL at %s is not reachable in CI: %v", u, err)
		}
		t.Skipf("PostgreSQL not reachable (%v); set WEFT_TEST_POSTGRES_URL", err)
	}
	conn.Close(context.Background())
	return u
}

// NewSchema creates a schema for one test and returns a URL of server
// whose search_path selects it. The schema is dropped when the test ends.
func NewSchema(t testing.TB, server string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "weft_t_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), server)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
