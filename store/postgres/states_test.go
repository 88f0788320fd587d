package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
)

// The schema accepts exactly the states of store.States, and the unique
// index holds a key in exactly store.KeyHoldingStates: the migrations and
// the Go model cannot drift apart.
func TestSchemaMatchesStates(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	st, err := postgres.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "k", UniqueKey: "key"}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	holds := map[store.State]bool{}
	for _, s := range store.KeyHoldingStates() {
		holds[s] = true
	}
	for _, s := range store.States() {
		if _, err := conn.Exec(ctx, "UPDATE weft_tasks SET state = $1 WHERE id = $2", string(s), res[0].ID); err != nil {
			t.Fatalf("state %s refused by the schema: %v", s, err)
		}
		_, err := conn.Exec(ctx, `INSERT INTO weft_tasks (id, kind, queue, args, state, run_at, max_attempts, unique_key, created_at)
			VALUES ('other', 'k', 'default', '{}', 'pending', 0, 1, 'key', 0)`)
		if holds[s] && err == nil {
			t.Errorf("a second task took the unique key while the first was %s", s)
		}
		if !holds[s] && err != nil {
			t.Errorf("the unique key stayed held while its task was %s: %v", s, err)
		}
		if _, err := conn.Exec(ctx, "DELETE FROM weft_tasks WHERE id = 'other'"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "UPDATE weft_tasks SET state = 'bogus' WHERE id = $1", res[0].ID); err == nil {
		t.Error("the schema accepted a state the model does not know")
	}
}
