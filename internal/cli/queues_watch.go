package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// defaultWatchInterval is how often `queues --watch` refreshes.
const defaultWatchInterval = 2 * time.Second

// watchedTypes are the events `queues --watch` counts for its rates.
var watchedTypes = []string{string(store.EventCreated), string(store.EventCompleted), string(store.EventFailed)}

// queueRates are a queue's events per second over the last interval.
type queueRates struct {
	Created   float64 `json:"created"`
	Completed float64 `json:"completed"`
	Failed    float64 `json:"failed"`
}

// watchedQueue is one queue in a line of `queues --watch`.
type watchedQueue struct {
	api.Queue
	// Rates are nil when the event feed could not be read.
	Rates *queueRates `json:"rates,omitempty"`
}

// watchLine is what `queues --watch` prints as NDJSON every interval.
type watchLine struct {
	At     time.Time      `json:"at"`
	Queues []watchedQueue `json:"queues"`
}

// eventCounter counts the feed's events per queue and type between two
// refreshes.
type eventCounter struct {
	mu     sync.Mutex
	counts map[string]map[string]int
	since  time.Time
	err    error
}

func (c *eventCounter) add(ev api.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts[ev.Queue] == nil {
		c.counts[ev.Queue] = map[string]int{}
	}
	c.counts[ev.Queue][ev.Type]++
}

func (c *eventCounter) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

// take returns the rates since the last take and starts counting anew;
// rates is nil once the feed failed.
func (c *eventCounter) take(now time.Time) (rates map[string]queueRates, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	secs := now.Sub(c.since).Seconds()
	rates = make(map[string]queueRates, len(c.counts))
	for q, n := range c.counts {
		rates[q] = queueRates{
			Created:   float64(n[string(store.EventCreated)]) / secs,
			Completed: float64(n[string(store.EventCompleted)]) / secs,
			Failed:    float64(n[string(store.EventFailed)]) / secs,
		}
	}
	c.counts, c.since = map[string]map[string]int{}, now
	return rates, nil
}

// watchQueues refreshes the queue table every interval until ctx ends:
// counts from the queue statistics, rates from the feed of every task's
// events (GET /v1/events), followed from its end. On a terminal (and with
// the human format) the table is redrawn in place; otherwise each refresh
// is one NDJSON line.
func watchQueues(ctx context.Context, g *globals, b backend, interval time.Duration) error {
	counter := &eventCounter{counts: map[string]map[string]int{}, since: time.Now()}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for ev, err := range b.Feed(fctx, api.FeedParams{FromEnd: true, Types: watchedTypes, Follow: true}) {
			if err != nil {
				if fctx.Err() == nil {
					counter.fail(err)
				}
				return
			}
			counter.add(ev)
		}
		if fctx.Err() == nil {
			counter.fail(fmt.Errorf("the server ended the event stream"))
		}
	}()
	live := g.Format == formatHuman && isTerminal(g.stdout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
		list, err := b.Queues(ctx)
		if err != nil {
			return fmt.Errorf("queues: %w", err)
		}
		now := time.Now()
		rates, feedErr := counter.take(now)
		if feedErr != nil && !warned {
			g.logger(g.stderr).Warn("the event feed cannot be read: showing counts without rates", "err", feedErr)
			warned = true
		}
		line := watchLine{At: now.UTC(), Queues: make([]watchedQueue, len(list.Queues))}
		for i, q := range list.Queues {
			line.Queues[i].Queue = q
			if rates != nil {
				r := rates[q.Name]
				line.Queues[i].Rates = &r
			}
		}
		if !live {
			if err := writeJSON(g.stdout, formatNDJSON, line); err != nil {
				return err
			}
			continue
		}
		if err := drawWatch(g.stdout, line, interval); err != nil {
			return err
		}
	}
}

// drawWatch redraws the queue table in place on a terminal.
func drawWatch(w io.Writer, line watchLine, interval time.Duration) error {
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J") // cursor home, clear the screen
	fmt.Fprintf(&b, "weft queues, every %s (Ctrl-C to stop)   %s\n\n", interval, line.At.Local().Format(timeLayout))
	tw := newTable(&b)
	states := store.States()
	fmt.Fprintln(tw, "QUEUE\tPAUSED\t"+strings.ToUpper(store.StateNames(states, "\t"))+"\tOLDEST READY\tIN/S\tDONE/S\tFAILED/S")
	for _, q := range line.Queues {
		paused, oldest := "no", "-"
		if q.Paused {
			paused = "yes"
		}
		if q.OldestReadyAt != nil {
			oldest = "waiting " + shortDuration(max(line.At.Sub(*q.OldestReadyAt), 0))
		}
		fmt.Fprintf(tw, "%s\t%s\t", q.Name, paused)
		for _, st := range states {
			fmt.Fprintf(tw, "%d\t", q.Counts[string(st)])
		}
		in, done, failed := "-", "-", "-"
		if q.Rates != nil {
			in, done, failed = rate(q.Rates.Created), rate(q.Rates.Completed), rate(q.Rates.Failed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", oldest, in, done, failed)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if len(line.Queues) == 0 {
		b.WriteString("no queues yet (a queue appears once it has a task, or is paused)\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// rate shows events per second for people.
func rate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}
