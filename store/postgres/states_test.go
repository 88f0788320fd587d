package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store/storetest"
)

// The schema accepts exactly the states of store.States, and the unique
// index holds a key in exactly store.KeyHoldingStates: the migrations and
// the Go model cannot drift apart.
func TestSchemaMatchesStates(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	storetest.CheckSchemaStates(t, dsn, open, func(query string) error {
		_, err := conn.Exec(ctx, query)
		return err
	})
}
