package faults_test

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// weftBin is the weft binary, built by TestMain for the server case.
var weftBin string

// chaosDuration, when set, selects the long variant and sets how long the
// worker-kill case injects faults on each backend.
var chaosDuration = flag.Duration("faults.duration", 0, "run the long variant, with this much worker-kill chaos per backend (also: WEFT_FAULTS_LONG=1)")

func TestMain(m *testing.M) {
	// A worker process started by a case never gets to the tests.
	if os.Getenv(envChild) != "" {
		os.Exit(childMain())
	}
	os.Exit(weftproc.Main(m, &weftBin))
}

// sizes are a run's dimensions.
type sizes struct {
	// chaos is how long workers are killed; tasks are fed at chaosRate
	// over the first three quarters of it, so that kills keep landing on
	// work.
	chaos     time.Duration
	chaosRate int
	// serverRounds is how many times weft serve is killed per backend.
	serverRounds int
	// clockTasks is how many tasks each clock-skew run drains.
	clockTasks int
}

// chaosTasks is how many tasks the worker-kill case enqueues.
func (s sizes) chaosTasks() int { return int(s.chaos.Seconds()*0.75) * s.chaosRate }

// runSizes picks the short variant (a minute and a half for the whole
// package on two cores under -race) or the long one.
func runSizes() sizes {
	long := os.Getenv("WEFT_FAULTS_LONG") == "1" || *chaosDuration > 0
	if !long {
		return sizes{chaos: 16 * time.Second, chaosRate: 250, serverRounds: 4, clockTasks: 1000}
	}
	s := sizes{chaos: 2 * time.Minute, chaosRate: 250, serverRounds: 25, clockTasks: 4000}
	if *chaosDuration > 0 {
		s.chaos = *chaosDuration
	}
	return s
}

// backend is a storage backend the cases run on.
type backend struct {
	name string
	// newDB creates an empty database for t and returns what open takes.
	newDB func(t *testing.T) string
	// serve is how `weft serve` is pointed at db: environment and flags.
	serve func(db string) (env, args []string)
}

// backends are the backends every case runs on.
func backends() []backend {
	return []backend{{
		name:  "sqlite",
		newDB: func(t *testing.T) string { return filepath.Join(t.TempDir(), "weft.db") },
		serve: func(db string) ([]string, []string) { return nil, []string{"--database", db} },
	}, {
		name:  "postgres",
		newDB: func(t *testing.T) string { return pgtest.NewSchema(t, pgtest.ServerURL(t)) },
		serve: func(db string) ([]string, []string) { return []string{"WEFT_DATABASE_URL=" + db}, nil },
	}}
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openStore opens backend name's store on db with clock now (nil: the
// real clock). Worker processes and the tests open stores alike.
func openStore(ctx context.Context, name, db string, now func() time.Time, log *slog.Logger) (store.Store, error) {
	if name == "postgres" {
		return postgres.Open(ctx, db, &postgres.Options{Now: now, Logger: log})
	}
	return sqlite.Open(ctx, db, &sqlite.Options{Now: now, Logger: log})
}

// open opens a store for the test on db with the real clock, closed when
// the test ends.
func (b backend) open(t *testing.T, db string) store.Store {
	t.Helper()
	st, err := openStore(context.Background(), b.name, db, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open %s store: %v", b.name, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
