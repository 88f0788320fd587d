package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/storetest"
)

func open(ctx context.Context, dsn string) (store.Store, error) {
	return postgres.Open(ctx, dsn, nil)
}

func TestMain(m *testing.M) {
	storetest.ChildMain(open)
	os.Exit(m.Run())
}

// serverURL is the PostgreSQL server the suite runs against:
// WEFT_TEST_POSTGRES_URL, or the local default. In CI an unreachable server
// fails the suite instead of skipping it.
func serverURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("WEFT_TEST_POSTGRES_URL")
	if u == "" {
		u = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
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

// newSchema creates a schema for one test and returns a URL that uses it.
func newSchema(t *testing.T, server string) string {
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

func TestConformance(t *testing.T) {
	server := serverURL(t)
	storetest.Run(t, storetest.Harness{
		NewDatabase: func(t *testing.T) string { return newSchema(t, server) },
		Open:        open,
		EnqueueInOwnTx: func(t *testing.T, s store.Store, dsn string, tasks []store.NewTask, commit bool) ([]store.EnqueueResult, error) {
			t.Helper()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.(*postgres.Store).EnqueueTx(ctx, tx, tasks)
			if err != nil {
				_ = tx.Rollback(ctx)
				return nil, err
			}
			if !commit {
				return res, tx.Rollback(ctx)
			}
			return res, tx.Commit(ctx)
		},
	})
}
