package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/store/postgres"
)

// Three nodes on one database share a short backlog: a node's run queue
// holds a few tens of milliseconds of its own throughput, so the first to
// claim does not hoard work the others could run. Every handler waits
// until each node has started one, so the claims race on equal terms
// however the machine schedules the nodes.
func TestShortBacklogSpreadsOverNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	const nodes, tasks = 3, 300
	var (
		mu      sync.Mutex
		ran     = map[int]int{}
		started = map[int]bool{}
		all     = make(chan struct{})
		done    = make(chan struct{})
	)
	clients := make([]*weft.Client, nodes)
	for n := range nodes {
		st, err := postgres.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		ws := weft.NewWorkers()
		weft.AddWorkerFunc(ws, func(ctx context.Context, _ *weft.Task[spreadArgs]) error {
			mu.Lock()
			if !started[n] {
				started[n] = true
				if len(started) == nodes {
					close(all)
				}
			}
			mu.Unlock()
			select {
			case <-all:
			case <-time.After(30 * time.Second): // a node hoarded the backlog
			}
			mu.Lock()
			ran[n]++
			if total := ran[0] + ran[1] + ran[2]; total == tasks {
				close(done)
			}
			mu.Unlock()
			return nil
		})
		c, err := weft.NewClient(st, &weft.Config{Workers: ws, Queues: map[string]weft.QueueConfig{"default": {MaxWorkers: 10}}})
		if err != nil {
			t.Fatal(err)
		}
		clients[n] = c
	}
	for _, c := range clients {
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Stop(context.Background()) })
	}
	params := make([]weft.EnqueueParams, tasks)
	for i := range params {
		params[i] = weft.EnqueueParams{Args: spreadArgs{}}
	}
	if _, err := clients[0].EnqueueMany(ctx, params); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the backlog was not drained within 60s")
	}
	mu.Lock()
	defer mu.Unlock()
	for n := range nodes {
		// A node's first claim takes its 10 free slots: the three
		// first claims leave work for every node. A node holding a fixed
		// queue of 1,000 takes all 300 at its first claim, leaving the
		// others none.
		if ran[n] < 10 {
			t.Errorf("node %d ran %d of %d tasks (%v); want the backlog spread over every node", n, ran[n], tasks, ran)
		}
	}
}

// spreadArgs is the spread test's task: it sleeps a few milliseconds.
type spreadArgs struct{}

func (spreadArgs) Kind() string { return "spread" }
