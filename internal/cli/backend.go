package cli

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

// backend is what the task and queue commands need, implemented once over
// the HTTP API and once straight on a store, so that each command is
// written once. Both return the API's wire types, and the store backend
// turns its errors into the *apiclient.Error the server would have sent,
// so output and messages are the same either way.
type backend interface {
	Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error)
	EnqueueBatch(ctx context.Context, tasks []api.TaskInput) (api.BatchEnqueued, error)
	Get(ctx context.Context, id string) (api.Task, error)
	List(ctx context.Context, p apiclient.ListParams) (api.TaskList, error)
	Cancel(ctx context.Context, id string) (api.Task, error)
	Retry(ctx context.Context, id string) (api.Task, error)
	// Events yields a task's events after the cursor after; with follow,
	// it ends once the task is terminal and its terminal event was
	// yielded. A failure is the last element.
	Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error]
	Queues(ctx context.Context) (api.QueueList, error)
	PauseQueue(ctx context.Context, name string) (api.Queue, error)
	ResumeQueue(ctx context.Context, name string) (api.Queue, error)
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
		return &storeBackend{st: st, poll: 100 * time.Millisecond}, nil
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

// Page sizes of List on a store, as the server has them: the default, and
// the maximum (the stores' own, sqlite.MaxListLimit and
// postgres.MaxListLimit).
const (
	defaultPage = 100
	maxPage     = 1000
)

// storeBackend works on a store directly, converting with internal/api
// exactly as the server does.
type storeBackend struct {
	st store.Store
	// poll is how often a followed event stream looks for new events: the
	// store's Subscribe only signals ready work, not every event.
	poll time.Duration
}

func (b *storeBackend) Close() error { return b.st.Close() }

func (b *storeBackend) Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error) {
	res, err := b.enqueue(ctx, []api.TaskInput{in}, "")
	if err != nil {
		return api.Enqueued{}, err
	}
	return res[0], nil
}

func (b *storeBackend) EnqueueBatch(ctx context.Context, tasks []api.TaskInput) (api.BatchEnqueued, error) {
	res, err := b.enqueue(ctx, tasks, "tasks")
	if err != nil {
		return api.BatchEnqueued{}, err
	}
	return api.BatchEnqueued{Tasks: res}, nil
}

func (b *storeBackend) enqueue(ctx context.Context, in []api.TaskInput, prefix string) ([]api.Enqueued, error) {
	tasks, err := api.ToNewTasks(in, prefix)
	if err != nil {
		return nil, apiError(err, prefix)
	}
	res, err := b.st.Enqueue(ctx, tasks)
	if err != nil {
		return nil, apiError(err, prefix)
	}
	out := make([]api.Enqueued, len(res))
	for i, r := range res {
		out[i] = api.Enqueued{ID: r.ID, Duplicate: r.Duplicate}
	}
	return out, nil
}

func (b *storeBackend) Get(ctx context.Context, id string) (api.Task, error) {
	t, err := b.st.Get(ctx, id)
	if err != nil {
		return api.Task{}, taskError(err, id)
	}
	return api.FromTask(t), nil
}

func (b *storeBackend) List(ctx context.Context, p apiclient.ListParams) (api.TaskList, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = defaultPage
	}
	if limit > maxPage {
		return api.TaskList{}, &apiclient.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Field: "limit",
			Message: fmt.Sprintf("%q is not a number from 1 to %d", strconv.Itoa(limit), maxPage)}
	}
	sp := store.ListParams{Queue: p.Queue, Kind: p.Kind, After: p.Cursor, Limit: limit}
	for _, s := range p.States {
		sp.States = append(sp.States, store.State(s))
	}
	tasks, err := b.st.List(ctx, sp)
	if err != nil {
		return api.TaskList{}, apiError(err, "")
	}
	out := api.TaskList{Tasks: make([]api.Task, len(tasks))}
	for i, t := range tasks {
		out.Tasks[i] = api.FromTask(t)
	}
	// As the server does: a full page may have a successor, so the last
	// page can come back empty.
	if len(tasks) == limit {
		out.NextCursor = tasks[len(tasks)-1].ID
	}
	return out, nil
}

func (b *storeBackend) Cancel(ctx context.Context, id string) (api.Task, error) {
	t, err := b.st.Cancel(ctx, id)
	if errors.Is(err, store.ErrAlreadyFinished) && t != nil {
		err = fmt.Errorf("%w: task %s is already %s", store.ErrConflict, t.ID, t.State)
	}
	if err != nil {
		return api.Task{}, taskError(err, id)
	}
	return api.FromTask(t), nil
}

func (b *storeBackend) Retry(ctx context.Context, id string) (api.Task, error) {
	t, err := b.st.Retry(ctx, id)
	if err != nil {
		return api.Task{}, taskError(err, id)
	}
	return api.FromTask(t), nil
}

func (b *storeBackend) Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		// Check the task exists first, as the server answers 404.
		if _, err := b.st.Get(ctx, id); err != nil {
			yield(api.Event{}, taskError(err, id))
			return
		}
		var timer *time.Timer
		for {
			evs, err := b.st.Events(ctx, id, after, 0)
			if err != nil {
				yield(api.Event{}, ctxOr(ctx, fmt.Errorf("events of %s: %w", id, err)))
				return
			}
			for _, e := range evs {
				if !yield(api.FromEvent(e), nil) {
					return
				}
				after = e.Seq
			}
			if len(evs) > 0 {
				continue // a full page may have more behind it
			}
			if !follow {
				return
			}
			// Caught up. The terminal event is written in the same
			// transaction as the terminal state, so once the task reads
			// terminal, one more read returns everything there is.
			t, err := b.st.Get(ctx, id)
			if err != nil {
				yield(api.Event{}, ctxOr(ctx, taskError(err, id)))
				return
			}
			if t.State.Terminal() {
				evs, err := b.st.Events(ctx, id, after, 0)
				if err != nil {
					yield(api.Event{}, ctxOr(ctx, fmt.Errorf("events of %s: %w", id, err)))
					return
				}
				for _, e := range evs {
					if !yield(api.FromEvent(e), nil) {
						return
					}
				}
				return
			}
			if timer == nil {
				timer = time.NewTimer(b.poll)
				defer timer.Stop()
			} else {
				timer.Reset(b.poll)
			}
			select {
			case <-ctx.Done():
				yield(api.Event{}, fmt.Errorf("events of %s: %w", id, context.Cause(ctx)))
				return
			case <-timer.C:
			}
		}
	}
}

func (b *storeBackend) Queues(ctx context.Context) (api.QueueList, error) {
	stats, err := b.st.Stats(ctx)
	if err != nil {
		return api.QueueList{}, fmt.Errorf("queue statistics: %w", err)
	}
	out := api.QueueList{Queues: make([]api.Queue, len(stats))}
	for i, qs := range stats {
		out.Queues[i] = api.FromQueueStats(qs)
	}
	return out, nil
}

func (b *storeBackend) PauseQueue(ctx context.Context, name string) (api.Queue, error) {
	return b.pause(ctx, name, true)
}

func (b *storeBackend) ResumeQueue(ctx context.Context, name string) (api.Queue, error) {
	return b.pause(ctx, name, false)
}

func (b *storeBackend) pause(ctx context.Context, name string, paused bool) (api.Queue, error) {
	if !store.ValidName(name) {
		return api.Queue{}, &apiclient.Error{Status: http.StatusUnprocessableEntity, Code: api.CodeInvalid, Field: "name",
			Message: fmt.Sprintf("%q is not a valid queue name", name)}
	}
	if err := b.st.PauseQueue(ctx, name, paused); err != nil {
		return api.Queue{}, apiError(err, "")
	}
	stats, err := b.st.Stats(ctx)
	if err != nil {
		return api.Queue{}, fmt.Errorf("queue statistics: %w", err)
	}
	for _, qs := range stats {
		if qs.Queue == name {
			return api.FromQueueStats(qs), nil
		}
	}
	// A resumed queue with no task is not listed.
	return api.FromQueueStats(store.QueueStats{Queue: name, Paused: paused}), nil
}

// apiError turns input and validation errors into the API error the
// server would send for them; other errors pass through.
func apiError(err error, prefix string) error {
	var fe *api.FieldError
	if errors.As(err, &fe) {
		code := api.CodeInvalid
		switch fe.Status {
		case http.StatusBadRequest:
			code = api.CodeBadRequest
		case http.StatusRequestEntityTooLarge:
			code = api.CodeTooLarge
		}
		return &apiclient.Error{Status: fe.Status, Code: code, Field: fe.Field, Message: fe.Message}
	}
	var ve *store.ValidationError
	if errors.As(err, &ve) {
		return &apiclient.Error{Status: http.StatusUnprocessableEntity, Code: api.CodeInvalid,
			Field: api.FieldOf(ve, prefix), Message: ve.Message}
	}
	return err
}

// taskError is apiError plus the store's sentinel errors, answered as the
// server answers them: the store's message with the matching status.
func taskError(err error, id string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		msg := err.Error()
		if !strings.Contains(msg, id) {
			msg = fmt.Sprintf("task %s: %s", id, msg)
		}
		return &apiclient.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: msg}
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrAlreadyFinished):
		return &apiclient.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: err.Error()}
	}
	return apiError(err, "")
}

// ctxOr prefers the context's cause when it ended, so that an interrupted
// read is reported as an interruption.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
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
