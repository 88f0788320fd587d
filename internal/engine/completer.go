package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftworks/weft/store"
)

// completer records outcomes in batches: whatever accumulated while the
// previous batch was being written goes out as the next one.
type completer struct {
	src Source
	log *slog.Logger
	// logOutcomes logs the outcomes recorded (LogOutcome).
	logOutcomes bool
	// backlog counts outcomes submitted and not yet written; written is
	// called after each batch, so the dispatcher can claim again once a
	// backlog that held it back has drained.
	backlog atomic.Int64
	written func()

	mu    sync.Mutex
	queue []Finished
	spare []Finished
	// starts are handlers' starts not yet recorded, written before the
	// outcomes that accumulated with them, so a task's started event
	// always precedes its outcome's.
	starts      []store.Start
	spareStarts []store.Start
	closed      bool
	ready       chan struct{}
	stopped     chan struct{}
	// late serialises the writes of handlers that outlived Stop, since a
	// source's Finish is never called concurrently.
	late sync.Mutex
}

const maxFinishBatch = 2048

func newCompleter(src Source, log *slog.Logger, written func()) *completer {
	c := &completer{src: src, log: log, written: written, ready: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.loop()
	return c
}

func (c *completer) submit(f Finished) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		// A handler that outlived Stop still gets its outcome written,
		// once the loop has written its last batch.
		<-c.stopped
		c.late.Lock()
		defer c.late.Unlock()
		c.write([]Finished{f})
		return
	}
	c.queue = append(c.queue, f)
	c.backlog.Add(1)
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// submitStart queues a handler's start. A start submitted after Stop is
// dropped: its outcome, written next, says everything.
func (c *completer) submitStart(st store.Start) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.starts = append(c.starts, st)
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// close writes everything submitted so far and stops the loop.
func (c *completer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
	<-c.stopped
}

func (c *completer) loop() {
	defer close(c.stopped)
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	for range c.ready {
		for {
			c.awaitOutcomes(grace)
			// Two buffers take turns: handlers append to one while the
			// other is being written, so the queue is not reallocated.
			c.mu.Lock()
			batch, starts := c.queue, c.starts
			c.queue, c.spare = c.spare[:0], nil
			c.starts, c.spareStarts = c.spareStarts[:0], nil
			closed := c.closed
			c.mu.Unlock()
			if rest := foldStarts(starts, batch); len(rest) > 0 {
				c.writeStarts(rest)
			}
			c.mu.Lock()
			c.spareStarts = starts[:0]
			c.mu.Unlock()
			if len(batch) == 0 {
				c.mu.Lock()
				c.spare = batch
				c.mu.Unlock()
				if closed {
					return
				}
				break
			}
			for rest := batch; len(rest) > 0; {
				n := min(len(rest), maxFinishBatch)
				c.write(rest[:n])
				c.backlog.Add(-int64(n))
				c.written()
				rest = rest[n:]
			}
			clear(batch) // drop references to results until reuse
			c.mu.Lock()
			c.spare = batch[:0]
			c.mu.Unlock()
		}
	}
}

// write records a batch. While the engine runs it retries for as long as
// the source fails (a full disk, a lost database, an unreachable server):
// the node keeps renewing these tasks' leases, so an outcome given up on
// would leave its task leased until the node stops. Once Stop has begun it
// gives up after stopRetries attempts; the tasks are then rescued when
// their leases expire.
func (c *completer) write(batch []Finished) {
	for attempt := 1; ; attempt++ {
		results, err := c.src.Finish(context.Background(), batch)
		if err == nil {
			now := time.Now()
			for i, r := range results {
				o := batch[i].Outcome
				if r.Err != nil {
					c.log.Warn("weft: outcome refused", "task", o.TaskID, "state", o.State, "err", r.Err)
				} else if c.logOutcomes {
					LogOutcome(c.log, batch[i].Task, o, r, batch[i].Began, now)
				}
			}
			return
		}
		c.mu.Lock()
		stopping := c.closed
		c.mu.Unlock()
		if errors.Is(err, store.ErrClosed) || stopping && attempt >= stopRetries {
			c.log.Error("weft: outcomes not recorded; their tasks will be rescued when their leases expire", "count", len(batch), "err", err)
			return
		}
		delay := min(time.Duration(attempt)*100*time.Millisecond, 5*time.Second)
		c.log.Error("weft: recording outcomes failed; retrying", "count", len(batch), "err", err, "retry_in", delay)
		time.Sleep(delay)
	}
}

// startGrace is how long starts with no outcome to go with wait for one:
// a short attempt's start then travels with its outcome, in one write,
// while a follower still sees a long attempt start within a millisecond.
const startGrace = time.Millisecond

// awaitOutcomes waits up to startGrace, or until something more is
// submitted, when only starts are queued.
func (c *completer) awaitOutcomes(grace *time.Timer) {
	c.mu.Lock()
	onlyStarts := len(c.queue) == 0 && len(c.starts) > 0 && !c.closed
	c.mu.Unlock()
	if !onlyStarts {
		return
	}
	grace.Reset(startGrace)
	select {
	case <-c.ready:
	case <-grace.C:
	}
	grace.Stop()
}

// foldStarts moves the starts of attempts whose outcomes are in batch into
// those outcomes, so a short attempt's start and outcome are one write, and
// returns the starts left to record on their own (in place).
func foldStarts(starts []store.Start, batch []Finished) []store.Start {
	if len(starts) == 0 || len(batch) == 0 {
		return starts
	}
	at := make(map[string]int, len(batch))
	for i := range batch {
		at[batch[i].Outcome.TaskID] = i
	}
	rest := starts[:0]
	for _, st := range starts {
		if i, ok := at[st.TaskID]; ok && batch[i].Outcome.Epoch == st.Epoch && batch[i].Outcome.StartedAt.IsZero() {
			batch[i].Outcome.StartedAt = st.At
			continue
		}
		rest = append(rest, st)
	}
	return rest
}

// writeStarts records handlers' starts. A failure is logged, not retried:
// the attempts' outcomes still record what became of the tasks.
func (c *completer) writeStarts(starts []store.Start) {
	starter, ok := c.src.(Starter)
	if !ok {
		return
	}
	if err := starter.Started(context.Background(), starts); err != nil {
		c.log.Warn("weft: recording handler starts failed", "count", len(starts), "err", err)
	}
}

// stopRetries bounds the attempts to record outcomes once Stop has begun.
const stopRetries = 10

// LogOutcome logs at info an attempt's recorded outcome that ended its
// task (completed, failed, cancelled) or scheduled a retry: the task's id,
// kind, queue and attempt, the outcome, how long the attempt ran and its
// error. Other outcomes (a snooze, a release at shutdown, a suspension)
// are not logged. t is the task as claimed: fields it lacks are left out,
// as is the duration when began is zero. It reads nothing: it is called
// after the store's write, with what the caller already holds.
func LogOutcome(log *slog.Logger, t *store.Task, o store.Outcome, r store.FinishResult, began, now time.Time) {
	msg, retry := "weft: task finished", false
	switch {
	case r.State.Terminal():
	case r.State == store.StatePending && o.Event == store.EventRetryScheduled:
		msg, retry = "weft: task will be retried", true
	default:
		return
	}
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.String("id", o.TaskID))
	if t != nil {
		if t.Kind != "" {
			attrs = append(attrs, slog.String("kind", t.Kind), slog.String("queue", t.Queue))
		}
		if t.Attempt > 0 {
			attrs = append(attrs, slog.Int("attempt", t.Attempt))
		}
	}
	attrs = append(attrs, slog.String("outcome", string(r.State)))
	if !began.IsZero() {
		attrs = append(attrs, slog.Duration("duration", now.Sub(began)))
	}
	if retry {
		attrs = append(attrs, slog.Time("retry_at", o.RunAt))
	}
	if o.Error != nil {
		attrs = append(attrs, slog.String("error", o.Error.Error))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}
