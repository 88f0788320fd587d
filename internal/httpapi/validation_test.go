package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

type agreeArgs struct{}

func (agreeArgs) Kind() string { return "agree" }

// outcome is what one entry path made of a task: the stored task, or the
// refused field (a JSON path, as the HTTP API names it) and why.
type outcome struct {
	task         *store.Task
	field, error string
}

// TestEntryPathsAgree enqueues each case through the Go client, the HTTP
// API and the conversion the CLI uses on a database, alone and as the
// second task of a batch, and wants the same outcome from all three.
func TestEntryPathsAgree(t *testing.T) {
	a := newTestAPI(t, Config{})
	ctx := context.Background()
	client := a.api.cfg.Client
	runAt := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	cases := []struct {
		name  string
		opts  weft.EnqueueOpts
		input api.TaskInput
		// field is the refused field, or "" when the task is stored and
		// check holds for it.
		field string
		check func(*store.Task) bool
	}{
		{"max_attempts 0 is the default", weft.EnqueueOpts{MaxAttempts: 0}, api.TaskInput{MaxAttempts: 0}, "",
			func(tk *store.Task) bool { return tk.MaxAttempts == store.DefaultMaxAttempts }},
		{"max_attempts -1", weft.EnqueueOpts{MaxAttempts: -1}, api.TaskInput{MaxAttempts: -1}, "max_attempts", nil},
		{"max_attempts over the limit", weft.EnqueueOpts{MaxAttempts: 10001}, api.TaskInput{MaxAttempts: 10001}, "max_attempts", nil},
		{"timeout 0 is none", weft.EnqueueOpts{Timeout: 0}, api.TaskInput{Timeout: "0s"}, "",
			func(tk *store.Task) bool { return tk.AttemptTimeout == 0 }},
		{"timeout", weft.EnqueueOpts{Timeout: 90 * time.Second}, api.TaskInput{Timeout: "1m30s"}, "",
			func(tk *store.Task) bool { return tk.AttemptTimeout == 90*time.Second }},
		{"negative timeout", weft.EnqueueOpts{Timeout: -time.Second}, api.TaskInput{Timeout: "-1s"}, "timeout", nil},
		{"negative delay", weft.EnqueueOpts{Delay: -time.Second}, api.TaskInput{Delay: "-1s"}, "delay", nil},
		{"delay and run_at", weft.EnqueueOpts{Delay: time.Second, RunAt: runAt}, api.TaskInput{Delay: "1s", RunAt: &runAt}, "delay", nil},
		{"delay", weft.EnqueueOpts{Delay: time.Hour}, api.TaskInput{Delay: "1h"}, "",
			func(tk *store.Task) bool { d := time.Until(tk.RunAt); return d > 59*time.Minute && d <= time.Hour }},
		{"run_at", weft.EnqueueOpts{RunAt: runAt}, api.TaskInput{RunAt: &runAt}, "",
			func(tk *store.Task) bool { return tk.RunAt.Equal(runAt) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input
			in.Kind = agreeArgs{}.Kind()
			for _, batch := range []bool{false, true} {
				got := map[string]outcome{
					"go":      goPath(ctx, t, a, client, tc.opts, batch),
					"http":    httpPath(t, a, in, batch),
					"convert": convertPath(ctx, t, a, in, batch),
				}
				want := tc.field
				if batch && want != "" {
					want = "tasks[1]." + want
				}
				for path, o := range got {
					switch {
					case want == "" && (o.task == nil || !tc.check(o.task)):
						t.Errorf("batch %v, %s: %+v, want it stored", batch, path, o)
					case want != "" && (o.field != want || o.task != nil):
						t.Errorf("batch %v, %s: %+v, want field %s refused", batch, path, o, want)
					case o.error != got["go"].error:
						t.Errorf("batch %v: %s says %q, the Go client %q", batch, path, o.error, got["go"].error)
					}
				}
			}
		})
	}
}

func goPath(ctx context.Context, t *testing.T, a *testAPI, c *weft.Client, opts weft.EnqueueOpts, batch bool) outcome {
	t.Helper()
	params := []weft.EnqueueParams{{Args: agreeArgs{}, Opts: &opts}}
	if batch {
		params = append([]weft.EnqueueParams{{Args: agreeArgs{}}}, params...)
	}
	res, err := c.EnqueueMany(ctx, params)
	var ve *weft.ValidationError
	if errors.As(err, &ve) {
		field := ve.Field
		if ve.Index >= 0 {
			field = "tasks[" + itoa(int64(ve.Index)) + "]." + field
		}
		return outcome{field: field, error: ve.Message}
	}
	if err != nil {
		t.Fatal(err)
	}
	return stored(ctx, t, a, res[len(res)-1].ID)
}

func httpPath(t *testing.T, a *testAPI, in api.TaskInput, batch bool) outcome {
	t.Helper()
	var body any = in
	if batch {
		body = api.BatchInput{Tasks: []api.TaskInput{{Kind: in.Kind}, in}}
	}
	status, b := a.do(t, "POST", "/v1/tasks", body)
	if status == 422 {
		var e api.Error
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		return outcome{field: e.Error.Field, error: e.Error.Message}
	}
	if status != 201 {
		t.Fatalf("POST /v1/tasks = %d %s", status, b)
	}
	var id string
	if batch {
		var res api.BatchEnqueued
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		id = res.Tasks[1].ID
	} else {
		var res api.Enqueued
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		id = res.ID
	}
	return stored(context.Background(), t, a, id)
}

// convertPath is how the CLI enqueues straight on a database: the API's
// conversion, then the store.
func convertPath(ctx context.Context, t *testing.T, a *testAPI, in api.TaskInput, batch bool) outcome {
	t.Helper()
	inputs, prefix := []api.TaskInput{in}, ""
	if batch {
		inputs, prefix = []api.TaskInput{{Kind: in.Kind}, in}, "tasks"
	}
	tasks, err := api.ToNewTasks(inputs, prefix)
	var fe *api.FieldError
	if errors.As(err, &fe) {
		return outcome{field: fe.Field, error: fe.Message}
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.st.Enqueue(ctx, tasks)
	var ve *store.ValidationError
	if errors.As(err, &ve) {
		return outcome{field: api.FieldOf(ve, prefix), error: ve.Message}
	}
	if err != nil {
		t.Fatal(err)
	}
	return stored(ctx, t, a, res[len(res)-1].ID)
}

func stored(ctx context.Context, t *testing.T, a *testAPI, id string) outcome {
	t.Helper()
	tk, err := a.st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return outcome{task: tk}
}
