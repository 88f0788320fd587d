package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store/postgres"
)

func TestMigratePostgres(t *testing.T) {
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	latest := ms[len(ms)-1].Version

	rep := decode[migrationReport](t, ok(t, runWeft(t, "migrate", "status", "--database", dsn, "--format", "json")).stdout)
	if rep.Backend != "postgres" || rep.Current != 0 || rep.Latest != latest {
		t.Fatalf("fresh status = %+v", rep)
	}
	r := ok(t, runWeft(t, "migrate", "up", "--to", "1", "--database", dsn))
	if !strings.Contains(r.stdout, "from version 0 to 1") {
		t.Errorf("up --to 1:\n%s", r)
	}
	r = ok(t, runWeft(t, "migrate", "up", "--database", dsn))
	if !strings.Contains(r.stdout, fmt.Sprintf("from version 1 to %d", latest)) {
		t.Errorf("up:\n%s", r)
	}
	failsWith(t, runWeft(t, "migrate", "down", "--database", dsn), exitUsage, "needs --to")
	failsWith(t, runWeft(t, "migrate", "down", "--to", fmt.Sprint(latest), "--database", dsn), exitError, "nothing to undo")
	r = ok(t, runWeft(t, "migrate", "down", "--to", "1", "--database", dsn))
	if !strings.Contains(r.stdout, fmt.Sprintf("down from version %d to 1", latest)) {
		t.Errorf("down:\n%s", r)
	}
	rep = decode[migrationReport](t, ok(t, runWeft(t, "migrate", "--database", dsn, "--format", "json")).stdout)
	if rep.Current != 1 || len(rep.pending()) != len(rep.Migrations)-1 {
		t.Errorf("status after down = %+v", rep)
	}
	ok(t, runWeft(t, "migrate", "up", "--database", dsn))

	// Direct access works on PostgreSQL too.
	r = ok(t, runWeft(t, "enqueue", "email", "--database", dsn, "--format", "json"))
	enq := decode[api.Enqueued](t, r.stdout)
	list := decode[api.TaskList](t, ok(t, runWeft(t, "list", "--database", dsn, "--format", "json")).stdout)
	if len(list.Tasks) != 1 || list.Tasks[0].ID != enq.ID {
		t.Errorf("list on PostgreSQL = %+v", list)
	}
}
