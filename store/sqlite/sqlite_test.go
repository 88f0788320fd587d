package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/store/storetest"
)

// busyTimeout is how long the suite's stores wait for another store's, or
// another process's, write lock. The default (5s) is too short on a loaded
// machine: there a commit under synchronous=FULL can hold the lock for its
// fsync for over ten seconds (measured: 12s on two busy cores, while other
// processes wrote to the same disk), and several such commits queue up.
const busyTimeout = 2 * time.Minute

func open(ctx context.Context, path string, now func() time.Time) (store.Store, error) {
	return sqlite.Open(ctx, path, &sqlite.Options{Now: now, BusyTimeout: busyTimeout})
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
			db, err := sqlite.OpenSQL(path, &sqlite.Options{BusyTimeout: busyTimeout})
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
