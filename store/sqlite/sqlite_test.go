package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/store/storetest"
)

func open(ctx context.Context, path string) (store.Store, error) {
	return sqlite.Open(ctx, path, nil)
}

func TestMain(m *testing.M) {
	storetest.ChildMain(open)
	os.Exit(m.Run())
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		NewDatabase: func(t *testing.T) string { return filepath.Join(t.TempDir(), "weft.db") },
		Open:        open,
		EnqueueInOwnTx: func(t *testing.T, s store.Store, path string, tasks []store.NewTask, commit bool) ([]store.EnqueueResult, error) {
			t.Helper()
			db, err := sqlite.OpenSQL(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.TxEnqueuer().EnqueueTx(context.Background(), tx, tasks)
			if err != nil {
				_ = tx.Rollback()
				return nil, err
			}
			if !commit {
				return res, tx.Rollback()
			}
			return res, tx.Commit()
		},
	})
}
