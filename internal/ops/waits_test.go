package ops_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// waitingTask enqueues a task, claims it, gives it the waitpoints named,
// and suspends it on the first of them; it returns the task's id.
func waitingTask(t *testing.T, st store.Store, names ...string) string {
	t.Helper()
	ctx := context.Background()
	res, err := st.Enqueue(ctx, []store.NewTask{{Kind: "approval", Queue: "waits"}})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := st.Claim(ctx, store.ClaimRequest{Owner: "w", LeaseTTL: time.Minute, Queues: []store.QueueClaim{{Queue: "waits", Limit: 1}}})
	if err != nil || len(tasks) != 1 || tasks[0].ID != res[0].ID {
		t.Fatalf("claim = %v, %v", tasks, err)
	}
	for _, n := range names {
		if _, err := st.CreateWaitpoint(ctx, tasks[0].ID, tasks[0].LeaseEpoch, store.NewWaitpoint{Name: n, Allow: []string{"approve", "reject"}}); err != nil {
			t.Fatal(err)
		}
	}
	fin, err := st.Finish(ctx, []store.Outcome{{TaskID: tasks[0].ID, Epoch: tasks[0].LeaseEpoch, State: store.StateWaiting,
		Event: store.EventWaiting, Refund: true, Wait: &store.WaitSpec{Waitpoints: names[:1], Mode: store.WaitAny}}})
	if err != nil || fin[0].Err != nil || fin[0].State != store.StateWaiting {
		t.Fatalf("suspend = %+v, %v", fin, err)
	}
	return tasks[0].ID
}

// The waits service on both backends: signals by token and by name, their
// repeats, the waitpoints with their tokens, and every refusal answered as
// the API documents it.
func TestWaits(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c, err := weft.NewClient(st, &weft.Config{SigningKeys: "k1:0123456789abcdef0123"})
		if err != nil {
			t.Fatal(err)
		}
		w := ops.NewWaits(c)
		id := waitingTask(t, st, "approval", "later")

		list, err := w.Waitpoints(ctx, id)
		if err != nil || len(list.Waitpoints) != 2 || list.Waitpoints[0].Name != "approval" || list.Waitpoints[0].Token == "" ||
			list.Waitpoints[0].State != "open" || len(list.Waitpoints[0].Signals) != 0 {
			t.Fatalf("waitpoints = %+v, %v", list, err)
		}
		tok, later := list.Waitpoints[0].Token, list.Waitpoints[1].Token

		// Refused before anything is stored.
		_, err = w.Signal(ctx, api.SignalRequest{Token: tok, Name: "approve"})
		wantProblem(t, err, 400, api.CodeBadRequest, "idempotency_key")
		_, err = w.Signal(ctx, api.SignalRequest{Name: "approve", IdempotencyKey: "k"})
		wantProblem(t, err, 400, api.CodeBadRequest, "token")
		_, err = w.Signal(ctx, api.SignalRequest{Token: tok, Name: "maybe", IdempotencyKey: "k"})
		wantProblem(t, err, 422, api.CodeInvalid, "name")
		_, err = w.SignalTask(ctx, id, api.TaskSignalRequest{Name: "approve", IdempotencyKey: "k"})
		wantProblem(t, err, 400, api.CodeBadRequest, "waitpoint")
		_, err = w.SignalTask(ctx, id, api.TaskSignalRequest{Waitpoint: "nope", Name: "approve", IdempotencyKey: "k"})
		wantProblem(t, err, 404, api.CodeNotFound, "")

		// A token this deployment did not sign, and one it signed for a
		// waitpoint that does not exist, get the same answer.
		other, err := weft.NewClient(st, &weft.Config{SigningKeys: "k2:0123456789abcdef0123"})
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := other.WaitpointToken(ctx, store.Waitpoint{ID: list.Waitpoints[0].ID, Allow: []string{"approve", "reject"}})
		if err != nil {
			t.Fatal(err)
		}
		ghost, err := c.WaitpointToken(ctx, store.Waitpoint{ID: "01a20000-0000-7000-8000-000000000000"})
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{foreign, ghost, tok[:len(tok)-2], "wp1.x.y.z.0.mac"} {
			_, err := w.Signal(ctx, api.SignalRequest{Token: bad, Name: "approve", IdempotencyKey: "k"})
			wantProblem(t, err, 404, api.CodeNotFound, "token")
			if p := ops.ProblemOf(err); p.Body.Message != ops.InvalidTokenMessage {
				t.Fatalf("token %q answered %q", bad, p.Body.Message)
			}
		}
		if list, _ := w.Waitpoints(ctx, id); len(list.Waitpoints[0].Signals)+len(list.Waitpoints[1].Signals) != 0 {
			t.Fatalf("a refused signal was stored: %+v", list)
		}

		// An early signal to the other waitpoint is kept; the one waited
		// on resumes the task; its repeat changes nothing.
		rec, err := w.SignalTask(ctx, id, api.TaskSignalRequest{Waitpoint: "later", Name: "reject", IdempotencyKey: "early"})
		if err != nil || rec.Resumed || rec.Duplicate || rec.TaskID != id || rec.Signal.Waitpoint != "later" || string(rec.Signal.Payload) != "null" {
			t.Fatalf("early signal = %+v, %v", rec, err)
		}
		rec, err = w.Signal(ctx, api.SignalRequest{Token: tok, Name: "approve", Payload: json.RawMessage(`{"by":"ada"}`), IdempotencyKey: "k", Source: "ada"})
		if err != nil || !rec.Resumed || rec.Duplicate || rec.Signal.Name != "approve" || rec.Signal.Source != "ada" {
			t.Fatalf("signal = %+v, %v", rec, err)
		}
		again, err := w.Signal(ctx, api.SignalRequest{Token: tok, Name: "reject", IdempotencyKey: "k"})
		if err != nil || !again.Duplicate || again.Resumed || again.Signal.ID != rec.Signal.ID || again.Signal.Name != "approve" {
			t.Fatalf("repeat = %+v, %v", again, err)
		}
		if task, err := st.Get(ctx, id); err != nil || task.State != store.StatePending {
			t.Fatalf("task after the signal = %+v, %v", task, err)
		}
		_, err = w.Signal(ctx, api.SignalRequest{Token: tok, Name: "approve", IdempotencyKey: "k2"})
		wantProblem(t, err, 409, api.CodeWaitpointClosed, "")
		list, err = w.Waitpoints(ctx, id)
		if err != nil || list.Waitpoints[0].State != "resolved" || list.Waitpoints[0].Resolution != "signal" || list.Waitpoints[0].ResolvedAt == nil ||
			len(list.Waitpoints[0].Signals) != 1 || compactJSON(t, list.Waitpoints[0].Signals[0].Payload) != `{"by":"ada"}` || len(list.Waitpoints[1].Signals) != 1 {
			t.Fatalf("waitpoints after = %+v, %v", list, err)
		}

		// Once the task is final, its open waitpoint refuses signals too.
		if _, err := st.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		_, err = w.Signal(ctx, api.SignalRequest{Token: later, Name: "approve", IdempotencyKey: "k3"})
		wantProblem(t, err, 409, api.CodeAlreadyFinished, "")

		// Waitpoints of a task that has none, and of no task.
		plain, err := st.Enqueue(ctx, []store.NewTask{{Kind: "plain"}})
		if err != nil {
			t.Fatal(err)
		}
		if list, err := w.Waitpoints(ctx, plain[0].ID); err != nil || list.Waitpoints == nil || len(list.Waitpoints) != 0 {
			t.Fatalf("no waitpoints = %+v, %v", list, err)
		}
		_, err = w.Waitpoints(ctx, "01a20000-0000-7000-8000-000000000000")
		wantProblem(t, err, 404, api.CodeNotFound, "")
	})
}
