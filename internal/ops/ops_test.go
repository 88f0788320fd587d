package ops_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/sqlite"
)

// eachBackend runs f on a fresh SQLite file and on a fresh PostgreSQL
// schema (skipped when no server answers, outside CI).
func eachBackend(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		_, st := testenv.SQLite(t)
		f(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, testenv.Postgres(t))
	})
}

// wantProblem checks that err is answered with status, code and field.
func wantProblem(t *testing.T, err error, status int, code, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d %s", status, code)
	}
	p := ops.ProblemOf(err)
	if p.Status != status || p.Body.Code != code || p.Body.Field != field || p.Body.Message == "" {
		t.Fatalf("%v: answered %d %+v, want %d %s field %q", err, p.Status, p.Body, status, code, field)
	}
}

func TestProblemOf(t *testing.T) {
	wrap := func(sentinel error) error { return fmt.Errorf("sqlite: some detail: %w", sentinel) }
	cases := []struct {
		name       string
		err        error
		status     int
		code       string
		field      string
		message    string // "" means: the error's own text
		retryAfter bool
		client     error // the apiclient sentinel the answer matches
	}{
		{"not found", wrap(store.ErrNotFound), 404, api.CodeNotFound, "", "", false, apiclient.ErrNotFound},
		{"conflict", wrap(store.ErrConflict), 409, api.CodeConflict, "", "", false, apiclient.ErrConflict},
		{"already finished", wrap(store.ErrAlreadyFinished), 409, api.CodeAlreadyFinished, "", "", false, apiclient.ErrConflict},
		{"flow not found", wrap(store.ErrFlowNotFound), 404, api.CodeFlowNotFound, "", "", false, apiclient.ErrNotFound},
		{"too many members", fmt.Errorf("submit flow: %w", &store.ValidationError{Index: -1, Field: "tasks", Message: "too many", TooLarge: true}), 413, api.CodeTooLarge, "tasks", "too many", false, nil},
		{"lease lost", wrap(store.ErrLeaseLost), 409, api.CodeLeaseLost, "lease_token", "the lease is no longer held", false, apiclient.ErrLeaseLost},
		{"invalid", wrap(store.ErrInvalid), 422, api.CodeInvalid, "", "", false, apiclient.ErrInvalid},
		{"validation", fmt.Errorf("enqueue: %w", &store.ValidationError{Index: -1, Field: "kind", Message: "must not be empty"}), 422, api.CodeInvalid, "kind", "must not be empty", false, apiclient.ErrInvalid},
		{"storage full", wrap(store.ErrStorageFull), 503, api.CodeUnavailable, "", "", true, apiclient.ErrUnavailable},
		{"read-only", wrap(store.ErrReadOnly), 503, api.CodeUnavailable, "", "", true, apiclient.ErrUnavailable},
		{"closed", wrap(store.ErrClosed), 503, api.CodeUnavailable, "", "the server is shutting down", false, apiclient.ErrUnavailable},
		{"bad parameter", &api.FieldError{Status: 400, Field: "limit", Message: "no"}, 400, api.CodeBadRequest, "limit", "no", false, apiclient.ErrInvalid},
		{"invalid field", &api.FieldError{Status: 422, Field: "tasks[1].delay", Message: "no"}, 422, api.CodeInvalid, "tasks[1].delay", "no", false, apiclient.ErrInvalid},
		{"batch too large", &api.FieldError{Status: 413, Field: "tasks", Message: "no"}, 413, api.CodeTooLarge, "tasks", "no", false, nil},
		{"body too large", &http.MaxBytesError{Limit: 10}, 413, api.CodeTooLarge, "", "request body exceeds 10 bytes", false, nil},
		{"cancelled", fmt.Errorf("list tasks: %w", context.Canceled), 503, api.CodeUnavailable, "", "request cancelled", false, apiclient.ErrUnavailable},
		{"deadline", fmt.Errorf("list tasks: %w", context.DeadlineExceeded), 503, api.CodeUnavailable, "", "request timed out", false, apiclient.ErrUnavailable},
		{"waitpoint closed", fmt.Errorf("waitpoint approval was resolved by timeout: %w", store.ErrWaitpointClosed), 409, api.CodeWaitpointClosed, "", "", false, nil},
		{"invalid token", weft.ErrInvalidToken, 404, api.CodeNotFound, "token", ops.InvalidTokenMessage, false, apiclient.ErrNotFound},
		{"too many", &store.ValidationError{Index: -1, Field: "name", Message: "too many signals", TooLarge: true}, 413, api.CodeTooLarge, "name", "too many signals", false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := ops.ProblemOf(tc.err)
			msg := tc.message
			if msg == "" {
				msg = tc.err.Error()
			}
			if p.Status != tc.status || p.Body.Code != tc.code || p.Body.Field != tc.field || !strings.HasPrefix(p.Body.Message, msg) || p.Internal {
				t.Fatalf("= %d %+v internal %v, want %d %s field %q message %q", p.Status, p.Body, p.Internal, tc.status, tc.code, tc.field, msg)
			}
			if (p.RetryAfter > 0) != tc.retryAfter {
				t.Errorf("retry after %v", p.RetryAfter)
			}
			// The code is what a client reading the status alone would
			// assume, but for those that must be told apart.
			if p.Body.Code != api.CodeForStatus(p.Status) && api.StatusForCode(p.Body.Code) != p.Status {
				t.Errorf("code %s, but status %d means %s", p.Body.Code, p.Status, api.CodeForStatus(p.Status))
			}
			if tc.client != nil && !errors.Is(&apiclient.Error{Status: p.Status, Code: p.Body.Code}, tc.client) {
				t.Errorf("a client does not read the answer as %v", tc.client)
			}
		})
	}

	// Anything else is the server's trouble, and its text is not shown.
	p := ops.ProblemOf(errors.New("pq: password authentication failed for user weft"))
	if p.Status != 500 || p.Body.Code != api.CodeInternal || !p.Internal || strings.Contains(p.Body.Message, "password") {
		t.Fatalf("unknown error = %d %+v internal %v", p.Status, p.Body, p.Internal)
	}
}

func TestEnqueueGet(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "email", Queue: "mail", Delay: "1h", UniqueKey: "u"})
		if err != nil || e.ID == "" || e.Duplicate {
			t.Fatalf("enqueue = %+v, %v", e, err)
		}
		dup, err := svc.Enqueue(ctx, api.TaskInput{Kind: "email", UniqueKey: "u"})
		if err != nil || dup.ID != e.ID || !dup.Duplicate {
			t.Fatalf("duplicate = %+v, %v", dup, err)
		}
		task, err := svc.Get(ctx, e.ID)
		if err != nil || task.Kind != "email" || task.Queue != "mail" || task.State != "pending" || time.Until(task.RunAt) < 59*time.Minute {
			t.Fatalf("get = %+v, %v", task, err)
		}
		_, err = svc.Get(ctx, "0190a000-0000-7000-8000-000000000000")
		wantProblem(t, err, 404, api.CodeNotFound, "")

		b, err := svc.EnqueueBatch(ctx, []api.TaskInput{{Kind: "a"}, {Kind: "b"}})
		if err != nil || len(b.Tasks) != 2 {
			t.Fatalf("batch = %+v, %v", b, err)
		}
		// The store's validation names the field as the request did.
		_, err = svc.EnqueueBatch(ctx, []api.TaskInput{{Kind: "a"}, {Kind: "no spaces"}})
		wantProblem(t, err, 422, api.CodeInvalid, "tasks[1].kind")
		_, err = svc.Enqueue(ctx, api.TaskInput{Kind: "a", MaxAttempts: -1})
		wantProblem(t, err, 422, api.CodeInvalid, "max_attempts")
		_, err = svc.EnqueueBatch(ctx, nil)
		wantProblem(t, err, 422, api.CodeInvalid, "tasks")
	})
}

// TestPageSizes holds the service's page sizes within what both backends
// return in one call, so that a full page reliably means "maybe more".
func TestPageSizes(t *testing.T) {
	if ops.MaxPage > sqlite.MaxListLimit || ops.MaxPage > postgres.MaxListLimit || ops.DefaultPage > ops.MaxPage {
		t.Fatalf("pages %d/%d exceed the backends' %d, %d", ops.DefaultPage, ops.MaxPage, sqlite.MaxListLimit, postgres.MaxListLimit)
	}
}

func TestListLimits(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		in := make([]api.TaskInput, ops.DefaultPage+1)
		for i := range in {
			in[i] = api.TaskInput{Kind: "k"}
		}
		if _, err := svc.EnqueueBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		page, err := svc.List(ctx, api.ListParams{})
		if err != nil || len(page.Tasks) != ops.DefaultPage || page.NextCursor != page.Tasks[ops.DefaultPage-1].ID {
			t.Fatalf("default page: %d tasks, cursor %q, %v", len(page.Tasks), page.NextCursor, err)
		}
		rest, err := svc.List(ctx, api.ListParams{Cursor: page.NextCursor})
		if err != nil || len(rest.Tasks) != 1 || rest.NextCursor != "" {
			t.Fatalf("second page: %d tasks, cursor %q, %v", len(rest.Tasks), rest.NextCursor, err)
		}
		all, err := svc.List(ctx, api.ListParams{Limit: ops.MaxPage})
		if err != nil || len(all.Tasks) != ops.DefaultPage+1 || all.NextCursor != "" {
			t.Fatalf("max page: %d tasks, cursor %q, %v", len(all.Tasks), all.NextCursor, err)
		}
		for _, limit := range []int{-1, ops.MaxPage + 1} {
			_, err := svc.List(ctx, api.ListParams{Limit: limit})
			wantProblem(t, err, 400, api.CodeBadRequest, "limit")
		}
		_, err = svc.List(ctx, api.ListParams{States: []string{"pending", "done"}})
		wantProblem(t, err, 400, api.CodeBadRequest, "state")
		_, err = svc.List(ctx, api.ListParams{Queue: "a b"})
		wantProblem(t, err, 400, api.CodeBadRequest, "queue")
	})
}

// A cursor that is not a task id would list nothing (or, on some
// backends, fail in the database): it is refused as such instead.
func TestListBadCursor(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		if _, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k"}); err != nil {
			t.Fatal(err)
		}
		for _, cursor := range []string{"zzz", "next", "'; DROP TABLE weft_tasks; --", "0190a000\x00", strings.Repeat("f", 100)} {
			page, err := svc.List(ctx, api.ListParams{Cursor: cursor})
			if err == nil {
				t.Fatalf("cursor %q listed %d tasks, want an error", cursor, len(page.Tasks))
			}
			wantProblem(t, err, 400, api.CodeBadRequest, "cursor")
		}
		// A well-formed cursor past every task is an empty last page.
		page, err := svc.List(ctx, api.ListParams{Cursor: "ffffffff-ffff-7fff-bfff-ffffffffffff"})
		if err != nil || len(page.Tasks) != 0 {
			t.Fatalf("cursor past the end: %+v, %v", page, err)
		}
	})
}

func TestParseListQuery(t *testing.T) {
	p, err := ops.ParseListQuery(url.Values{"queue": {"mail"}, "state": {"pending,failed"}, "limit": {"7"}, "cursor": {"c"}})
	if err != nil || p.Queue != "mail" || strings.Join(p.States, "|") != "pending|failed" || p.Limit != 7 || p.Cursor != "c" {
		t.Fatalf("= %+v, %v", p, err)
	}
	for _, tc := range []struct {
		query url.Values
		field string
	}{
		{url.Values{"sort": {"id"}}, "sort"},
		{url.Values{"limit": {"0"}}, "limit"},
		{url.Values{"limit": {"x"}}, "limit"},
		{url.Values{"limit": {"1001"}}, "limit"},
	} {
		_, err := ops.ParseListQuery(tc.query)
		wantProblem(t, err, 400, api.CodeBadRequest, tc.field)
	}
}

func TestCancelRetry(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		task, err := svc.Retry(ctx, e.ID)
		wantProblem(t, err, 409, api.CodeConflict, "")
		if task.ID != e.ID || task.State != "pending" {
			t.Errorf("a refused retry returned %+v, want the task", task)
		}
		if task, err = svc.Cancel(ctx, e.ID); err != nil || task.State != "cancelled" {
			t.Fatalf("cancel = %+v, %v", task, err)
		}
		// Cancelling a finished task is a conflict, with the task.
		task, err = svc.Cancel(ctx, e.ID)
		wantProblem(t, err, 409, api.CodeConflict, "")
		if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "already cancelled") || task.State != "cancelled" {
			t.Fatalf("second cancel = %+v, %v", task, err)
		}
		if task, err = svc.Retry(ctx, e.ID); err != nil || task.State != "pending" {
			t.Fatalf("retry = %+v, %v", task, err)
		}
		for _, op := range []func(context.Context, string) (api.Task, error){svc.Cancel, svc.Retry} {
			_, err := op(ctx, "0190a000-0000-7000-8000-000000000000")
			wantProblem(t, err, 404, api.CodeNotFound, "")
		}
	})
}

func TestQueues(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{})
		if _, err := svc.EnqueueBatch(ctx, []api.TaskInput{{Kind: "k", Queue: "mail"}, {Kind: "k", Queue: "mail"}}); err != nil {
			t.Fatal(err)
		}
		q, err := svc.PauseQueue(ctx, "mail")
		if err != nil || q.Name != "mail" || !q.Paused || q.Counts["pending"] != 2 {
			t.Fatalf("pause = %+v, %v", q, err)
		}
		// A queue may be paused before it has a task, and is listed.
		if q, err = svc.PauseQueue(ctx, "later"); err != nil || !q.Paused || q.Counts["pending"] != 0 {
			t.Fatalf("pause an empty queue = %+v, %v", q, err)
		}
		list, err := svc.Queues(ctx)
		if err != nil || len(list.Queues) != 2 || list.Queues[0].Name != "later" || !list.Queues[1].Paused {
			t.Fatalf("queues = %+v, %v", list, err)
		}
		if q, err = svc.ResumeQueue(ctx, "later"); err != nil || q.Paused || q.Name != "later" {
			t.Fatalf("resume an empty queue = %+v, %v", q, err)
		}
		_, err = svc.PauseQueue(ctx, "9bad")
		wantProblem(t, err, 400, api.CodeBadRequest, "name")
	})
}

// finish claims task id and records state as its outcome, as a worker
// would.
func finish(t *testing.T, st store.Store, id string, state store.State, event store.EventType) {
	t.Helper()
	ctx := context.Background()
	claimed, err := st.Claim(ctx, store.ClaimRequest{Owner: "test", Queues: []store.QueueClaim{{Queue: store.DefaultQueue, Limit: 1}}, LeaseTTL: time.Minute})
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	res, err := st.Finish(ctx, []store.Outcome{{TaskID: id, Epoch: claimed[0].LeaseEpoch, State: state, Event: event}})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

// collect reads a stream into a channel, closed when the stream ends; a
// failure is sent as an event of type "error: ...".
func collect(ctx context.Context, es *ops.EventStream) <-chan api.Event {
	ch := make(chan api.Event, 64)
	go func() {
		defer close(ch)
		for ev, err := range es.All(ctx) {
			if err != nil {
				ev.Type = "error: " + err.Error()
			}
			ch <- ev
		}
	}()
	return ch
}

// next waits for the stream's next event; ok is false once it ended.
func next(t *testing.T, ch <-chan api.Event) (api.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no event and no end within 10s")
	}
	return api.Event{}, false
}

func TestEventsFollow(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{Poll: 5 * time.Millisecond})
		e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Events(ctx, "0190a000-0000-7000-8000-000000000000", 0, true)
		wantProblem(t, err, 404, api.CodeNotFound, "")

		es, err := svc.Events(ctx, e.ID, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		if es.Exhausted(ctx) {
			t.Fatal("a pending task's stream is exhausted")
		}
		ch := collect(ctx, es)
		if ev, _ := next(t, ch); ev.Type != "created" || ev.TaskID != e.ID {
			t.Fatalf("first event %+v", ev)
		}
		finish(t, st, e.ID, store.StateCompleted, store.EventCompleted)
		var types []string
		var last api.Event
		for {
			ev, ok := next(t, ch)
			if !ok {
				break
			}
			types, last = append(types, ev.Type), ev
		}
		// The stream ends on its own, right after the terminal event.
		if strings.Join(types, " ") != "started completed" {
			t.Fatalf("followed events %v", types)
		}

		// Past the terminal event, a followed stream ends at once and
		// is exhausted; before it, it has the terminal event only.
		done, err := svc.Events(ctx, e.ID, last.Seq, true)
		if err != nil || !done.Exhausted(ctx) {
			t.Fatalf("stream after the end: exhausted false, %v", err)
		}
		if ev, ok := next(t, collect(ctx, done)); ok {
			t.Fatalf("stream after the end yielded %+v", ev)
		}
		tail, err := svc.Events(ctx, e.ID, last.Seq-1, false)
		if err != nil {
			t.Fatal(err)
		}
		ch = collect(ctx, tail)
		if ev, _ := next(t, ch); ev.Type != "completed" {
			t.Fatalf("tail %+v", ev)
		}
		if _, ok := next(t, ch); ok {
			t.Fatal("tail did not end")
		}
	})
}

// A followed stream marks each idle poll with an empty page, ends cleanly
// when the service's Done closes, and reports the end of its context.
func TestEventsIdleDoneAndCancel(t *testing.T) {
	_, st := testenv.SQLite(t)
	ctx := context.Background()
	done := make(chan struct{})
	svc := ops.New(st, ops.Config{Poll: 5 * time.Millisecond, Done: done})
	e, err := svc.Enqueue(ctx, api.TaskInput{Kind: "k"})
	if err != nil {
		t.Fatal(err)
	}
	es, err := svc.Events(ctx, e.ID, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	pages := 0
	var seen []int
	for page, err := range es.Pages(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, len(page))
		if pages++; pages == 3 {
			close(done)
		}
	}
	// The created event, then empty pages until Done ended the stream.
	if len(seen) < 3 || seen[0] != 1 || seen[1] != 0 || seen[2] != 0 {
		t.Fatalf("page sizes %v", seen)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	es, err = ops.New(st, ops.Config{Poll: 5 * time.Millisecond}).Events(cctx, e.ID, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for ev, err := range es.All(cctx) {
		if ev.Type == "created" {
			cancel()
		}
		last = err
	}
	if !errors.Is(last, context.Canceled) || !strings.Contains(last.Error(), e.ID) {
		t.Fatalf("a cancelled stream ended with %v", last)
	}
}
