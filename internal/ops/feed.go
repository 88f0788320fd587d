package ops

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// feedMinGap is the least time between two reads of a followed feed: under
// load the store's wakeups come with nearly every commit, and a follower
// need not read at that rate.
const feedMinGap = 20 * time.Millisecond

// Feed is the event log of every task from a cursor on, as Service.Feed
// opened it.
type Feed struct {
	s *Service
	f store.EventFilter
	// follow keeps reading after the feed caught up.
	follow bool
}

// Feed checks p and opens the feed it describes. A bad parameter is an
// *api.FieldError (400) naming it.
func (s *Service) Feed(p api.FeedParams) (*Feed, error) {
	if p.After < 0 {
		return nil, badRequest("after", "%d is not an event sequence number (0 or more)", p.After)
	}
	if p.Queue != "" && !store.ValidName(p.Queue) {
		return nil, badRequest("queue", "%q is not a valid queue name", p.Queue)
	}
	if p.Kind != "" && !store.ValidName(p.Kind) {
		return nil, badRequest("kind", "%q is not a valid kind", p.Kind)
	}
	f := store.EventFilter{After: p.After, Queue: p.Queue, Kind: p.Kind, Limit: eventPage}
	if p.FromEnd {
		f.After = -1
	}
	known := store.EventTypes()
	for _, t := range p.Types {
		if !slices.Contains(known, store.EventType(t)) {
			return nil, badRequest("type", "%q is not an event type (%s)", t, typeNames(known))
		}
		f.Types = append(f.Types, store.EventType(t))
	}
	return &Feed{s: s, f: f, follow: p.Follow}, nil
}

// typeNames lists event types for a message.
func typeNames(types []store.EventType) string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// Pages yields the events in the pages they are read in, in seq order.
//
// Without follow the feed ends once it has caught up. With follow it
// reads again after every wakeup of the store (an enqueue, a retry: work
// that became ready) and every poll (starts, progress and outcomes do not
// wake), at most every feedMinGap; it ends, without an error, when the
// service's Done closes. Every wait that finds nothing new yields an empty
// page, so that a caller holding a connection open can tell the feed is
// idle. A failure, the end of ctx included, is the last element.
func (fd *Feed) Pages(ctx context.Context) iter.Seq2[[]api.Event, error] {
	return func(yield func([]api.Event, error) bool) {
		f := fd.f
		var (
			wake <-chan struct{}
			poll *time.Timer
		)
		if fd.follow {
			ch, stop := fd.s.b.Subscribe()
			defer stop()
			wake = ch
		}
		waited := false
		for {
			for {
				page, err := fd.s.b.EventsAfter(ctx, f)
				if err != nil {
					yield(nil, fd.failed(ctx, err))
					return
				}
				if len(page.Events) > 0 || waited {
					out := make([]api.Event, len(page.Events))
					for i, e := range page.Events {
						out[i] = api.FromEvent(e)
					}
					if !yield(out, nil) {
						return
					}
					waited = false
				}
				caughtUp := page.Next == f.After
				f.After = page.Next
				if caughtUp {
					break
				}
			}
			if !fd.follow {
				return
			}
			read := time.Now()
			if poll == nil {
				poll = time.NewTimer(fd.s.poll)
				defer poll.Stop()
			} else {
				poll.Reset(fd.s.poll)
			}
			select {
			case <-ctx.Done():
				yield(nil, fd.failed(ctx, ctx.Err()))
				return
			case <-fd.s.done:
				return
			case <-poll.C:
			case <-wake:
				if gap := feedMinGap - time.Since(read); gap > 0 {
					if err := pause(ctx, gap); err != nil {
						yield(nil, fd.failed(ctx, err))
						return
					}
				}
			}
			waited = true
		}
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// failed names the feed in err, and prefers the context's cause once it
// has ended.
func (fd *Feed) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return fmt.Errorf("events: %w", err)
}
