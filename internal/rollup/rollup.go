// Package rollup counts the feed of every task's events into per-minute
// rollups (store.Rollups): per queue and kind, the tasks enqueued,
// completed, failed, retried and cancelled, how long attempts waited to
// start and how long they ran. The maintenance leader runs a Counter's
// Tick as a reconciler; the dashboard draws its charts from the rows.
//
// Durations come from the events alone, so the count costs no read of a
// task: an attempt's run time is from its started event to its outcome's;
// its wait is from the task's last known ready time — its created,
// retried, released, rescued, unblocked or resumed event, or the run_at a
// retry_scheduled or snoozed event announces — to its start. A task
// enqueued with a delay has no event when it becomes ready, so its first
// wait counts from its enqueue. Times of attempts that began before the
// counter (this leader) did are unknown, and their durations are not
// counted.
package rollup

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

// Store is what a Counter reads and writes.
type Store interface {
	EventsAfter(ctx context.Context, f store.EventFilter) (store.EventPage, error)
	store.Rollups
}

// Limits of one tick.
const (
	// pagesPerTick bounds the feed pages one tick reads (10,000 events or
	// seqs each), so that a backlog is caught up over a few ticks.
	pagesPerTick = 50
	// maxTracked bounds the tasks whose ready and start times a Tracker
	// keeps; past it they are forgotten (their next durations are not
	// counted).
	maxTracked = 200_000
	// purgeEvery is how often rollups older than store.RollupRetention
	// are deleted.
	purgeEvery = 10 * time.Minute
)

// Counter counts the feed into rollups. It is not safe for concurrent
// use: one reconciler loop ticks it.
type Counter struct {
	st        Store
	now       func() time.Time
	times     *Tracker
	lastPurge time.Time
}

// New returns a counter on st; now is the clock of the purge.
func New(st Store, now func() time.Time) *Counter {
	return &Counter{st: st, now: now, times: NewTracker()}
}

// Tick counts the events after the stored cursor, at most pagesPerTick
// pages of them, adds their rollups and moves the cursor in one write, and
// deletes rollups past their retention every purgeEvery.
func (c *Counter) Tick(ctx context.Context) error {
	from, err := c.st.RollupCursor(ctx)
	if err != nil {
		return err
	}
	rows := map[rowKey]*store.Rollup{}
	cursor := from
	for range pagesPerTick {
		page, err := c.st.EventsAfter(ctx, store.EventFilter{After: cursor})
		if err != nil {
			return err
		}
		for _, ev := range page.Events {
			c.count(rows, ev)
		}
		if page.Next == cursor {
			break // caught up
		}
		cursor = page.Next
	}
	if cursor != from {
		out := make([]store.Rollup, 0, len(rows))
		for _, r := range rows {
			out = append(out, *r)
		}
		if _, err := c.st.AddRollups(ctx, from, cursor, out); err != nil {
			return fmt.Errorf("rollups: %w", err)
		}
	}
	if now := c.now(); now.Sub(c.lastPurge) >= purgeEvery {
		if _, err := c.st.PurgeRollups(ctx, now.Add(-store.RollupRetention)); err != nil {
			return err
		}
		c.lastPurge = now
	}
	return nil
}

type rowKey struct {
	minute      int64
	queue, kind string
}

// count adds one event to rows.
func (c *Counter) count(rows map[rowKey]*store.Rollup, ev store.Event) {
	minute := ev.At.UTC().Truncate(time.Minute)
	k := rowKey{minute.Unix(), ev.Queue, ev.Kind}
	r := rows[k]
	if r == nil {
		r = &store.Rollup{Minute: minute, Queue: ev.Queue, Kind: ev.Kind}
		rows[k] = r
	}
	switch ev.Type {
	case store.EventCreated:
		r.Enqueued++
	case store.EventCompleted:
		r.Completed++
	case store.EventFailed:
		r.Failed++
	case store.EventCancelled:
		r.Cancelled++
	case store.EventRetryScheduled:
		r.Retried++
	}
	wait, run, waited, ran := c.times.Observe(ev)
	if waited {
		r.Wait.Observe(wait)
	}
	if ran {
		r.Run.Observe(run)
	}
}

// Tracker follows tasks through the feed of their events to time their
// attempts: how long each waited since its task became ready, and how
// long it ran. It keeps, per task, when it last became ready and when its
// current attempt started, for at most maxTracked tasks (then it forgets
// them all, and the durations of their attempts are not measured). It is
// not safe for concurrent use.
type Tracker struct {
	ready, started map[string]time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{ready: map[string]time.Time{}, started: map[string]time.Time{}}
}

// Observe takes the next event of the feed. When it starts an attempt
// whose task's ready time is known, waited is set and wait is how long
// the task waited; when it ends an attempt whose start is known, ran is
// set and run is how long the attempt ran.
func (t *Tracker) Observe(ev store.Event) (wait, run time.Duration, waited, ran bool) {
	if len(t.ready) > maxTracked || len(t.started) > maxTracked {
		t.ready, t.started = map[string]time.Time{}, map[string]time.Time{}
	}
	end := func() {
		if at, ok := t.started[ev.TaskID]; ok {
			run, ran = max(ev.At.Sub(at), 0), true
			delete(t.started, ev.TaskID)
		}
	}
	switch ev.Type {
	case store.EventCreated:
		t.ready[ev.TaskID] = ev.At
	case store.EventStarted:
		if at, ok := t.ready[ev.TaskID]; ok {
			wait, waited = max(ev.At.Sub(at), 0), true
			delete(t.ready, ev.TaskID)
		}
		t.started[ev.TaskID] = ev.At
	case store.EventCompleted, store.EventFailed, store.EventCancelled:
		end()
		delete(t.ready, ev.TaskID)
	case store.EventWaiting:
		end()
	case store.EventRetryScheduled, store.EventSnoozed:
		end()
		if at, ok := runAt(ev.Data); ok {
			t.ready[ev.TaskID] = at
		}
	case store.EventReleased, store.EventRescued, store.EventRetried, store.EventUnblocked, store.EventResumed:
		delete(t.started, ev.TaskID)
		t.ready[ev.TaskID] = ev.At
	}
	return wait, run, waited, ran
}

// runAt reads the run_at of an event's data.
func runAt(data json.RawMessage) (time.Time, bool) {
	var d struct {
		RunAt time.Time `json:"run_at"`
	}
	if len(data) == 0 || json.Unmarshal(data, &d) != nil || d.RunAt.IsZero() {
		return time.Time{}, false
	}
	return d.RunAt, true
}
