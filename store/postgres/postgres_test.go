package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/storetest"
)

func open(ctx context.Context, dsn string, now func() time.Time) (store.Store, error) {
	return postgres.Open(ctx, dsn, &postgres.Options{Now: now})
}

func TestMain(m *testing.M) {
	storetest.ChildMain(open)
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	server := pgtest.ServerURL(t)
	storetest.Run(t, storetest.Harness{
		NewDatabase: func(t *testing.T) string { return pgtest.NewSchema(t, server) },
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
			res, err := s.TxEnqueuer().EnqueueTx(ctx, tx, tasks)
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
