package cli

import (
	"context"
	"errors"
	"iter"
	"strings"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// backend is what the task, queue and flow commands need, implemented
// once over the HTTP API and once straight on a store through
// internal/ops, the service the server itself uses, so that each command
// is written once and prints the same either way.
type backend interface {
	Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error)
	EnqueueBatch(ctx context.Context, tasks []api.TaskInput) (api.BatchEnqueued, error)
	Get(ctx context.Context, id string) (api.Task, error)
	List(ctx context.Context, p api.ListParams) (api.TaskList, error)
	Cancel(ctx context.Context, id string) (api.Task, error)
	Retry(ctx context.Context, id string) (api.Task, error)
	// Events yields a task's events after the cursor after; with follow,
	// it ends once the task is terminal and its terminal event was
	// yielded. A failure is the last element.
	Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error]
	// Feed yields the events of every task as p selects them; with
	// p.Follow it waits for more until ctx ends. A failure is the last
	// element.
	Feed(ctx context.Context, p api.FeedParams) iter.Seq2[api.Event, error]
	// Stream yields a task's output frames after the cursor after, live,
	// and its end (Kind api.FrameEnd) last, once the task is final. A
	// failure is the last element.
	Stream(ctx context.Context, id string, after int64) iter.Seq2[api.Frame, error]
	Queues(ctx context.Context) (api.QueueList, error)
	PauseQueue(ctx context.Context, name string) (api.Queue, error)
	ResumeQueue(ctx context.Context, name string) (api.Queue, error)
	opsBackend
	limitsBackend
	flowBackend
	waitBackend
	Close() error
}

// openBackend returns the store backend when --database was given
// explicitly and --server was not, and the server's otherwise.
func (g *globals) openBackend(ctx context.Context) (backend, error) {
	if g.serverFlag && g.databaseFlag {
		return nil, usagef("--server and --database were both given: choose one (--server talks to a running server, --database works on the database directly)")
	}
	if g.direct() {
		st, err := openExistingStore(ctx, g.Database, g.logger(g.stderr))
		if err != nil {
			return nil, err
		}
		d := newDirectBackend(st)
		d.wait.keys, _ = g.lookupEnv("WEFT_SIGNING_KEYS")
		return d, nil
	}
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return httpBackend{c}, nil
}

// httpBackend is the server's API.
type httpBackend struct{ *apiclient.Client }

// Close implements backend; the client holds nothing to release.
func (httpBackend) Close() error { return nil }

// directBackend works on a store directly through the service the server
// uses, and turns its errors into the *apiclient.Error the server would
// have sent, so that output and messages are the same either way.
type directBackend struct {
	st   store.Store
	svc  *ops.Service
	wait directWaits
}

func newDirectBackend(st store.Store) *directBackend {
	return &directBackend{st: st, svc: ops.New(st, ops.Config{})}
}

func (d *directBackend) Close() error { return d.st.Close() }

func (d *directBackend) Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error) {
	return wire(ctx, d.svc.Enqueue, in)
}

func (d *directBackend) EnqueueBatch(ctx context.Context, tasks []api.TaskInput) (api.BatchEnqueued, error) {
	return wire(ctx, d.svc.EnqueueBatch, tasks)
}

func (d *directBackend) Get(ctx context.Context, id string) (api.Task, error) {
	return wire(ctx, d.svc.Get, id)
}

func (d *directBackend) List(ctx context.Context, p api.ListParams) (api.TaskList, error) {
	return wire(ctx, d.svc.List, p)
}

func (d *directBackend) Cancel(ctx context.Context, id string) (api.Task, error) {
	return wire(ctx, d.svc.Cancel, id)
}

func (d *directBackend) Retry(ctx context.Context, id string) (api.Task, error) {
	return wire(ctx, d.svc.Retry, id)
}

func (d *directBackend) Queues(ctx context.Context) (api.QueueList, error) {
	q, err := d.svc.Queues(ctx)
	return q, wireError(ctx, err)
}

func (d *directBackend) PauseQueue(ctx context.Context, name string) (api.Queue, error) {
	return wire(ctx, d.svc.PauseQueue, name)
}

func (d *directBackend) ResumeQueue(ctx context.Context, name string) (api.Queue, error) {
	return wire(ctx, d.svc.ResumeQueue, name)
}

func (d *directBackend) Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	return directEvents(ctx, func() (*ops.EventStream, error) { return d.svc.Events(ctx, id, after, follow) })
}

// directEvents yields the events of the stream open opens, with errors as
// the server would answer them.
func directEvents(ctx context.Context, open func() (*ops.EventStream, error)) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		stream, err := open()
		if err != nil {
			yield(api.Event{}, wireError(ctx, err))
			return
		}
		for ev, err := range stream.All(ctx) {
			if !yield(ev, wireError(ctx, err)) {
				return
			}
		}
	}
}

func (d *directBackend) Feed(ctx context.Context, p api.FeedParams) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		feed, err := d.svc.Feed(p)
		if err != nil {
			yield(api.Event{}, wireError(ctx, err))
			return
		}
		for page, err := range feed.Pages(ctx) {
			if err != nil {
				yield(api.Event{}, wireError(ctx, err))
				return
			}
			for _, ev := range page {
				if !yield(ev, nil) {
					return
				}
			}
		}
	}
}

func (d *directBackend) Stream(ctx context.Context, id string, after int64) iter.Seq2[api.Frame, error] {
	return func(yield func(api.Frame, error) bool) {
		stream, err := d.svc.FollowFrames(ctx, id, after)
		if err != nil {
			yield(api.Frame{}, wireError(ctx, err))
			return
		}
		for f, err := range stream.All(ctx) {
			if !yield(f, wireError(ctx, err)) {
				return
			}
		}
	}
}

// wire makes one service call and answers its error as the server would.
func wire[A, T any](ctx context.Context, call func(context.Context, A) (T, error), arg A) (T, error) {
	v, err := call(ctx, arg)
	return v, wireError(ctx, err)
}

// wireError turns err into the *apiclient.Error the server would have
// answered it with (ops.ProblemOf). Two kinds pass through unchanged: an
// interruption, which must stay one for the exit code, and an error the
// API does not explain, whose details the server keeps for its log but
// here are for the person who ran the command.
func wireError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); !errors.Is(err, cause) {
			return cause
		}
		return err
	}
	p := ops.ProblemOf(err)
	if p.Internal {
		return err
	}
	return &apiclient.Error{Status: p.Status, Code: p.Body.Code, Message: p.Body.Message, Field: p.Body.Field}
}

// terminalEvent reports whether an event type ends a task.
func terminalEvent(typ string) bool {
	switch store.EventType(typ) {
	case store.EventCompleted, store.EventFailed, store.EventCancelled:
		return true
	}
	return false
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
