package ops

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// eventPage bounds one read of the event log.
const eventPage = 500

// EventStream is the event log of a task, or of a flow's members, from a
// cursor on, as Service.Events or Service.FlowEvents opened it. Each call
// of Pages or All reads it from that cursor.
type EventStream struct {
	s      *Service
	id     string
	after  int64
	follow bool
	// final is whether the task or flow was final when the stream was
	// opened; isFinal reads it again.
	final   bool
	isFinal func(ctx context.Context) (bool, error)
	// read reads the log after a cursor.
	read func(ctx context.Context, after int64, limit int) ([]store.Event, error)
	// keys names the members in a flow's events; nil for a task's.
	keys *memberKeys
}

// Events opens task id's event log after the cursor after (0 for all);
// with follow, reading it waits for more until the task is terminal. The
// task is read first, so that an unknown id is store.ErrNotFound here,
// before anything is streamed, rather than an empty stream.
func (s *Service) Events(ctx context.Context, id string, after int64, follow bool) (*EventStream, error) {
	t, err := s.b.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &EventStream{
		s: s, id: id, after: after, follow: follow, final: t.State.Terminal(),
		isFinal: func(ctx context.Context) (bool, error) {
			t, err := s.b.Get(ctx, id)
			if err != nil {
				return false, err
			}
			return t.State.Terminal(), nil
		},
		read: func(ctx context.Context, after int64, limit int) ([]store.Event, error) {
			return s.b.Events(ctx, id, after, limit)
		},
	}, nil
}

// Exhausted reports whether the stream can never yield an event: the task
// or flow had finished when the stream was opened, and nothing is logged
// after the cursor. Server-Sent Events answer such a request with 204,
// which tells an EventSource to stop reconnecting. It is false when the
// log cannot be read; reading the stream then reports why.
func (es *EventStream) Exhausted(ctx context.Context) bool {
	if !es.final {
		return false
	}
	evs, err := es.read(ctx, es.after, 1)
	return err == nil && len(evs) == 0
}

// Pages yields the events in the pages they are read in, oldest first.
//
// Without follow the stream ends once it has caught up. With follow it
// reads again every poll, and ends once the task is terminal and its
// terminal event was yielded (a flow: once the flow is final and its last
// member's terminal event was yielded); it also ends, without an error,
// when the service's Done closes. Every poll that finds nothing new yields an empty
// page, so that a caller holding a connection open can tell the stream is
// idle. A failure, the end of ctx included, is the last element.
//
// The poll is not replaced by the store's Subscribe: that signals ready
// work, not events (a start, progress or completion does not signal), and
// under load it fires on nearly every commit, which would have every
// follower read at the store's commit rate.
func (es *EventStream) Pages(ctx context.Context) iter.Seq2[[]api.Event, error] {
	return func(yield func([]api.Event, error) bool) {
		after, final := es.after, es.final
		var poll *time.Timer
		waited := false
		for {
			// The terminal state and its event commit together (and a
			// flow's final state with its last member's), so once the
			// task or flow reads final, one more pass over the log has
			// everything.
			terminal := final
			for {
				evs, err := es.read(ctx, after, eventPage)
				if err != nil {
					yield(nil, es.failed(ctx, err))
					return
				}
				if len(evs) > 0 || waited {
					page := make([]api.Event, len(evs))
					for i, e := range evs {
						page[i] = api.FromEvent(e)
					}
					if err := es.keys.name(ctx, page); err != nil {
						yield(nil, es.failed(ctx, err))
						return
					}
					if !yield(page, nil) {
						return
					}
					waited = false
				}
				if len(evs) > 0 {
					after = evs[len(evs)-1].Seq
				}
				if len(evs) < eventPage {
					break
				}
			}
			if !es.follow || terminal {
				return
			}
			if poll == nil {
				poll = time.NewTimer(es.s.poll)
				defer poll.Stop()
			} else {
				poll.Reset(es.s.poll)
			}
			select {
			case <-ctx.Done():
				yield(nil, es.failed(ctx, ctx.Err()))
				return
			case <-es.s.done:
				return
			case <-poll.C:
			}
			waited = true
			var err error
			if final, err = es.isFinal(ctx); err != nil {
				// Purged by retention while followed, most likely.
				yield(nil, es.failed(ctx, err))
				return
			}
		}
	}
}

// All yields the events one by one, as Pages reads them; a failure is the
// last element.
func (es *EventStream) All(ctx context.Context) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		for page, err := range es.Pages(ctx) {
			if err != nil {
				yield(api.Event{}, err)
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// failed names the stream in err, and prefers the context's cause once it
// has ended: a read cut short by it is an interruption, whatever the
// driver made of it.
func (es *EventStream) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return fmt.Errorf("events of %s: %w", es.id, err)
}
