package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// CheckSchemaStates checks that a backend's schema accepts exactly the
// states of store.States, and that its unique index holds a key in exactly
// store.KeyHoldingStates, so that the migrations and the Go model cannot
// drift apart. db is an empty database, opened with open as the Harness
// does; exec runs a statement on it, outside the store. The statements
// carry their values as literals (a task id and state names, never input),
// so that one text serves every SQL dialect.
func CheckSchemaStates(t *testing.T, db string, open func(ctx context.Context, db string, now func() time.Time) (store.Store, error), exec func(query string) error) {
	t.Helper()
	ctx := context.Background()
	s, err := open(ctx, db, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Enqueue(ctx, []store.NewTask{{Kind: "k", UniqueKey: "key"}})
	if err != nil {
		t.Fatal(err)
	}
	first := "'" + res[0].ID + "'"
	holds := map[store.State]bool{}
	for _, st := range store.KeyHoldingStates() {
		holds[st] = true
	}
	for _, st := range store.States() {
		if err := exec("UPDATE weft_tasks SET state = '" + string(st) + "' WHERE id = " + first); err != nil {
			t.Fatalf("state %s refused by the schema: %v", st, err)
		}
		err := exec(`INSERT INTO weft_tasks (id, kind, queue, args, state, run_at, max_attempts, unique_key, created_at)
			VALUES ('other', 'k', 'default', '{}', 'pending', 0, 1, 'key', 0)`)
		if holds[st] && err == nil {
			t.Errorf("a second task took the unique key while the first was %s", st)
		}
		if !holds[st] && err != nil {
			t.Errorf("the unique key stayed held while its task was %s: %v", st, err)
		}
		if err := exec("DELETE FROM weft_tasks WHERE id = 'other'"); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec("UPDATE weft_tasks SET state = 'bogus' WHERE id = " + first); err == nil {
		t.Error("the schema accepted a state the model does not know")
	}
}
