package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
	"github.com/weftworks/weft/store/storetest"
)

// The schema accepts exactly the states of store.States, and the unique
// index holds a key in exactly store.KeyHoldingStates: the migrations and
// the Go model cannot drift apart.
func TestSchemaMatchesStates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weft.db")
	db, err := sqlite.OpenSQL(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.CheckSchemaStates(t, path, open, func(query string) error {
		_, err := db.Exec(query)
		return err
	})
}

// A database made before the blocked, waiting and skipped states keeps its
// tasks, their rowids and their unique keys through the table rebuild.
func TestStatesMigrationKeepsTasks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "weft.db")
	db, err := sqlite.OpenSQL(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := sqlite.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE weft_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == "states" {
			break
		}
		if _, err := db.ExecContext(ctx, m.SQL); err != nil {
			t.Fatalf("migration %d: %v", m.Version, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO weft_migrations VALUES (?, ?, 0)", m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	const id = "01a2091c-0000-7000-8000-000000000001"
	if _, err := db.ExecContext(ctx, `INSERT INTO weft_tasks (rowid, id, kind, queue, args, state, run_at, attempt, max_attempts,
		unique_key, errors, created_at, finalized_at, resumable)
		VALUES (42, ?, 'k', 'q', CAST('{"a":1}' AS BLOB), 'failed', 5, 3, 3, 'key', CAST('[{"attempt":3,"at":"2026-01-01T00:00:00Z","error":"boom"}]' AS BLOB), 1, 6, 0)`, id); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateFailed || got.Attempt != 3 || got.UniqueKey != "key" || string(got.Args) != `{"a":1}` ||
		len(got.Errors) != 1 || got.Errors[0].Error != "boom" {
		t.Fatalf("task after the migration: %+v", got)
	}
	var rowid int64
	var resumable int
	if err := db.QueryRowContext(ctx, "SELECT rowid, resumable FROM weft_tasks WHERE id = ?", id).Scan(&rowid, &resumable); err != nil {
		t.Fatal(err)
	}
	if rowid != 42 || resumable != 0 {
		t.Fatalf("rowid %d, resumable %d after the migration, want 42 and 0", rowid, resumable)
	}
	if _, err := st.Retry(ctx, id); err != nil {
		t.Fatalf("retry after the migration: %v", err)
	}
	dup, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k", UniqueKey: "key"}})
	if err != nil || !dup[0].Duplicate || dup[0].ID != id {
		t.Fatalf("the retried task does not hold its unique key after the migration: %+v, %v", dup, err)
	}
}
