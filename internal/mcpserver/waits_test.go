package mcpserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

type approvalArgs struct{}

func (approvalArgs) Kind() string { return "approval" }

// handedOut is a waitpoint token a handler handed out, and its task.
type handedOut struct{ task, token string }

// Tasks whose handlers wait on a waitpoint are resumed by the tool's
// signals, by token and by task id and name, and complete with what the
// signal carried; a repeated key answers the first receipt.
func TestMCPSignalWaitpoint(t *testing.T) {
	_, st := testenv.SQLite(t)
	handed := make(chan handedOut, 2)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[approvalArgs]) error {
		wp, err := task.Waitpoint(ctx, "approval", &weft.WaitpointOpts{Allow: []string{"approve", "reject"}})
		if err != nil {
			return err
		}
		if s, ok := wp.Signal("approve"); ok {
			return task.SetResult(s.Payload)
		}
		handed <- handedOut{task.ID, wp.Token}
		return weft.WaitAny(0, wp)
	})
	client, err := weft.NewClient(st, &weft.Config{Workers: ws, Logger: testenv.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	cs := connect(t, service(client), nil)
	byToken := ok[api.Enqueued](t, cs, "enqueue_task", map[string]any{"kind": "approval"})
	byName := ok[api.Enqueued](t, cs, "enqueue_task", map[string]any{"kind": "approval"})
	if err := client.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Stop(context.Background()) })
	tokens := map[string]string{}
	for len(tokens) < 2 {
		select {
		case h := <-handed:
			tokens[h.task] = h.token
		case <-time.After(10 * time.Second):
			t.Fatalf("handlers handed out %d tokens, want 2", len(tokens))
		}
	}
	waitState(t, st, byToken.ID, store.StateWaiting)
	waitState(t, st, byName.ID, store.StateWaiting)

	// By token, without a key: one is made and returned.
	rec := ok[api.SignalReceipt](t, cs, "signal_waitpoint", map[string]any{
		"token": tokens[byToken.ID], "name": "approve", "payload": map[string]any{"by": "ada"},
	})
	if !rec.Resumed || rec.Duplicate || rec.TaskID != byToken.ID || rec.Signal.Waitpoint != "approval" ||
		rec.Signal.Name != "approve" || string(rec.Signal.Payload) != `{"by":"ada"}` || rec.Signal.IdempotencyKey == "" {
		t.Errorf("signal by token = %+v", rec)
	}
	// That key again: the first receipt, and nothing more.
	dup := ok[api.SignalReceipt](t, cs, "signal_waitpoint", map[string]any{
		"token": tokens[byToken.ID], "name": "approve", "payload": map[string]any{"by": "bob"}, "idempotency_key": rec.Signal.IdempotencyKey,
	})
	if !dup.Duplicate || dup.Signal.ID != rec.Signal.ID || string(dup.Signal.Payload) != `{"by":"ada"}` {
		t.Errorf("repeated signal = %+v, want the first receipt %+v as a duplicate", dup, rec)
	}

	// By task id and waitpoint name, as an operator.
	rec = ok[api.SignalReceipt](t, cs, "signal_waitpoint", map[string]any{
		"task_id": byName.ID, "waitpoint": "approval", "name": "approve", "payload": map[string]any{"by": "grace"}, "idempotency_key": "grace-1",
	})
	if !rec.Resumed || rec.Duplicate || rec.TaskID != byName.ID || rec.Signal.IdempotencyKey != "grace-1" {
		t.Errorf("signal by task and name = %+v", rec)
	}
	// The waitpoint named both ways, or half of the second.
	if e := toolError(t, cs, "signal_waitpoint", map[string]any{"token": tokens[byName.ID], "task_id": byName.ID, "waitpoint": "approval", "name": "approve"}); e.Code != api.CodeBadRequest || e.Field != "token" {
		t.Errorf("token and task_id = %+v", e)
	}
	if e := toolError(t, cs, "signal_waitpoint", map[string]any{"waitpoint": "approval", "name": "approve"}); e.Code != api.CodeBadRequest || e.Field != "task_id" {
		t.Errorf("waitpoint without task_id = %+v", e)
	}

	for id, by := range map[string]string{byToken.ID: "ada", byName.ID: "grace"} {
		w := ok[waitOutput](t, cs, "wait_for_task", map[string]any{"id": id, "timeout": "30s"})
		if !w.Finished || w.Task.State != "completed" || string(w.Task.Result) != `{"by":"`+by+`"}` {
			t.Errorf("task %s after its signal = %+v", id, w)
		}
	}
	// Another key, once the task finished.
	if e := toolError(t, cs, "signal_waitpoint", map[string]any{"token": tokens[byToken.ID], "name": "approve", "idempotency_key": "late"}); e.Code != api.CodeAlreadyFinished {
		t.Errorf("a signal after the task finished = %+v, want %s", e, api.CodeAlreadyFinished)
	}
}

// waitState waits until task id is in state want.
func waitState(t *testing.T, st store.Store, id string, want store.State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		task, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s, want %s", id, task.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
