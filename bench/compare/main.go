// Command compare runs the same burn-down on Weft's PostgreSQL backend and
// on River's pgx driver, against one PostgreSQL server, alternating runs,
// and prints the figures and their ratio. It lives in its own module so
// that Weft never depends on a competitor.
//
//	go run ./compare -db 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store/postgres"
)

func main() {
	db := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	tasks := flag.Int("tasks", 100_000, "tasks per burn-down")
	workers := flag.Int("workers", 2000, "workers (MaxWorkers) for both systems")
	runs := flag.Int("runs", 3, "runs of each system, alternating")
	flag.Parse()
	if err := run(*db, *tasks, *workers, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type result struct{ insert, burndown float64 }

func run(server string, n, workers, runs int) error {
	results := map[string][]result{}
	for i := 0; i < runs; i++ {
		for _, sys := range []string{"river", "weft"} {
			dsn, drop, err := newSchema(server)
			if err != nil {
				return err
			}
			var r result
			if sys == "river" {
				r, err = runRiver(dsn, n, workers)
			} else {
				r, err = runWeft(dsn, n, workers)
			}
			drop()
			if err != nil {
				return fmt.Errorf("%s: %w", sys, err)
			}
			fmt.Printf("run %d %-5s insert %8.0f tasks/s  burn-down %8.0f tasks/s\n", i+1, sys, r.insert, r.burndown)
			results[sys] = append(results[sys], r)
		}
	}
	med := func(sys string, f func(result) float64) float64 {
		var v []float64
		for _, r := range results[sys] {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	ins := func(r result) float64 { return r.insert }
	burn := func(r result) float64 { return r.burndown }
	fmt.Printf("median  weft insert %.0f/s, burn-down %.0f/s; river insert %.0f/s, burn-down %.0f/s; burn-down ratio %.2fx\n",
		med("weft", ins), med("weft", burn), med("river", ins), med("river", burn), med("weft", burn)/med("river", burn))
	return nil
}

// newSchema creates a fresh schema and returns a URL using it.
func newSchema(server string) (string, func(), error) {
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", nil, err
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("pool_max_conns", "20")
	u.RawQuery = q.Encode()
	drop := func() {
		c, err := pgx.Connect(ctx, server)
		if err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	}
	return u.String(), drop, nil
}

type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

type riverNoop struct {
	river.WorkerDefaults[noopArgs]
	done *atomic.Int64
	all  chan struct{}
	n    int64
}

func (w *riverNoop) Work(ctx context.Context, job *river.Job[noopArgs]) error {
	if w.done.Add(1) == w.n {
		close(w.all)
	}
	return nil
}

func runRiver(dsn string, n, workers int) (result, error) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return result{}, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return result{}, err
	}
	w := &riverNoop{done: new(atomic.Int64), all: make(chan struct{}), n: int64(n)}
	ws := river.NewWorkers()
	river.AddWorker(ws, w)
	client, err := river.NewClient(driver, &river.Config{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers: ws,
	})
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	for done := 0; done < n; done += 1000 {
		params := make([]river.InsertManyParams, min(1000, n-done))
		for i := range params {
			params[i] = river.InsertManyParams{Args: noopArgs{N: done + i}}
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return result{}, err
		}
	}
	insert := float64(n) / time.Since(start).Seconds()
	start = time.Now()
	if err := client.Start(ctx); err != nil {
		return result{}, err
	}
	<-w.all
	if err := client.Stop(ctx); err != nil {
		return result{}, err
	}
	return result{insert: insert, burndown: float64(n) / time.Since(start).Seconds()}, nil
}

func runWeft(dsn string, n, workers int) (result, error) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := postgres.Open(ctx, dsn, &postgres.Options{Logger: logger})
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	var done atomic.Int64
	all := make(chan struct{})
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[noopArgs]) error {
		if done.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	client, err := weft.NewClient(st, &weft.Config{
		Logger:  logger,
		Queues:  map[string]weft.QueueConfig{"default": {MaxWorkers: workers}},
		Workers: ws,
	})
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	for d := 0; d < n; d += 1000 {
		params := make([]weft.EnqueueParams, min(1000, n-d))
		for i := range params {
			params[i] = weft.EnqueueParams{Args: noopArgs{N: d + i}}
		}
		if _, err := client.EnqueueMany(ctx, params); err != nil {
			return result{}, err
		}
	}
	insert := float64(n) / time.Since(start).Seconds()
	start = time.Now()
	if err := client.Start(ctx); err != nil {
		return result{}, err
	}
	<-all
	if err := client.Stop(ctx); err != nil {
		return result{}, err
	}
	return result{insert: insert, burndown: float64(n) / time.Since(start).Seconds()}, nil
}
