package remote_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/internal/remote"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// serveRemote runs a real server on a SQLite file, and an engine that runs
// ws's handlers on tasks claimed from its API through a Source, as `weft
// worker` does. It returns the server's client, which runs no handler, and
// its store.
func serveRemote(t *testing.T, ws *weft.Workers) (*weft.Client, store.Store) {
	t.Helper()
	_, st := testenv.SQLite(t)
	client := testenv.Client(t, st)
	srv, err := httpapi.New(httpapi.Config{Client: client, Logger: testenv.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	src := remote.New(remote.Config{Client: apiclient.New(hs.URL, "", hs.Client()), Wait: time.Second, Logger: testenv.Logger()})
	eng, err := engine.New(engine.Config{
		Source: src, Owner: "remote", Queues: map[string]int{store.DefaultQueue: 4}, Kinds: ws.EngineKinds(), Logger: testenv.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := eng.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return client, st
}

// waitState waits until task id is in state want, and returns it.
func waitState(t *testing.T, st store.Store, id string, want store.State) *store.Task {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		task, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == want {
			return task
		}
		if task.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("task %s (%s) is %s, want %s; errors %+v", id, task.Kind, task.State, want, task.Errors)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type fetchArgs struct{}

func (fetchArgs) Kind() string { return "fetch" }

type resizeArgs struct {
	Size int `json:"size"`
}

func (resizeArgs) Kind() string { return "resize" }

type publishArgs struct{}

func (publishArgs) Kind() string { return "publish" }

type image struct {
	Path string `json:"path"`
}

// Flow members run by a remote worker read their parents' results and add
// members to their flow, as in process: fetch adds a resize per size,
// each resize reads what fetch made, and publish, which depends on fetch
// and what it adds, reads all of them.
func TestRemoteFlowParents(t *testing.T) {
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[fetchArgs]) error {
		_, err := task.AddToFlow(ctx, &weft.Flow{Steps: []weft.FlowStep{
			{Key: "small", Args: resizeArgs{Size: 64}, DependsOn: []string{"fetch"}},
			{Key: "large", Args: resizeArgs{Size: 512}, DependsOn: []string{"fetch"}},
		}})
		if err != nil {
			return weft.Permanent(err)
		}
		return task.SetResult(image{Path: "/tmp/a.png"})
	})
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[resizeArgs]) error {
		parents, err := task.Parents(ctx)
		if err != nil {
			return weft.Permanent(err)
		}
		src, err := weft.ParentResult[image](parents, "fetch")
		if err != nil {
			return weft.Permanent(err)
		}
		return task.SetResult(image{Path: fmt.Sprintf("%s@%d", src.Path, task.Args.Size)})
	})
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[publishArgs]) error {
		parents, err := task.Parents(ctx)
		if err != nil {
			return weft.Permanent(err)
		}
		var paths []string
		for _, key := range []string{"fetch", "large", "small"} {
			img, err := weft.ParentResult[image](parents, key)
			if err != nil {
				return weft.Permanent(err)
			}
			paths = append(paths, key+"="+img.Path)
		}
		if _, err := weft.ParentResult[image](parents, "thumbnail"); err == nil {
			return weft.Permanent(fmt.Errorf("a parent that is not one has a result"))
		}
		return task.SetResult(map[string]any{"key": task.FlowKey, "paths": paths})
	})
	client, st := serveRemote(t, ws)
	flow, err := client.EnqueueFlow(context.Background(), &weft.Flow{Name: "thumbnails", Steps: []weft.FlowStep{
		{Key: "fetch", Args: fetchArgs{}},
		{Key: "publish", Args: publishArgs{}, DependsOn: []string{"fetch/*"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	published := waitState(t, st, flow.Tasks["publish"], store.StateCompleted)
	var got struct {
		Key   string   `json:"key"`
		Paths []string `json:"paths"`
	}
	if err := json.Unmarshal(published.Result, &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"fetch=/tmp/a.png", "large=/tmp/a.png@512", "small=/tmp/a.png@64"}
	if got.Key != "publish" || !slices.Equal(got.Paths, want) {
		t.Errorf("publish read %+v, want key publish and paths %v", got, want)
	}
}

type approvalArgs struct{}

func (approvalArgs) Kind() string { return "approval" }

type confusedArgs struct{}

func (confusedArgs) Kind() string { return "confused" }

// approved is what the approval handler saw once resumed.
type approved struct {
	By         string    `json:"by"`
	Token      string    `json:"token"`
	Listed     string    `json:"listed"`
	Resolution string    `json:"resolution"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// A handler run by a remote worker creates a waitpoint, hands out its
// token (signed by the server) and waits; the signal sent with that token
// resumes it, and it runs again to find the signal on the same waitpoint.
// A wait that cannot be fails the task, as it does in process.
func TestRemoteWaitAndSignal(t *testing.T) {
	handed := make(chan string, 1)
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, task *weft.Task[approvalArgs]) error {
		wp, err := task.Waitpoint(ctx, "approval", &weft.WaitpointOpts{Allow: []string{"approve", "reject"}, ExpiresIn: time.Hour})
		if err != nil {
			return weft.Permanent(err)
		}
		s, ok := wp.Signal("approve")
		if !ok {
			handed <- wp.Token
			return weft.WaitAny(time.Hour, wp)
		}
		all, err := task.Waitpoints(ctx)
		if err != nil {
			return weft.Permanent(err)
		}
		by, err := weft.SignalPayload[string](s)
		if err != nil {
			return weft.Permanent(err)
		}
		return task.SetResult(approved{By: by, Token: wp.Token, Listed: all[0].Token, Resolution: all[0].Resolution, ExpiresAt: wp.ExpiresAt})
	})
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[confusedArgs]) error {
		return weft.Wait(weft.WaitFor{Waitpoints: []string{"nowhere"}})
	})
	client, st := serveRemote(t, ws)
	ctx := context.Background()
	res, err := client.Enqueue(ctx, approvalArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var token string
	select {
	case token = <-handed:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler handed out no token")
	}
	waitState(t, st, res.ID, store.StateWaiting)
	rec, err := client.Signal(ctx, token, weft.SignalParams{Name: "approve", Payload: "ada", Key: "ada-1"})
	if err != nil || !rec.Resumed || rec.TaskID != res.ID {
		t.Fatalf("signal = %+v, %v; want the task resumed", rec, err)
	}
	done := waitState(t, st, res.ID, store.StateCompleted)
	var got approved
	if err := json.Unmarshal(done.Result, &got); err != nil {
		t.Fatal(err)
	}
	if got.By != "ada" || got.Token != token || got.Listed != token || got.Resolution != store.ResolvedBySignal {
		t.Errorf("the resumed handler saw %+v; want ada's signal and the token %s", got, token)
	}
	if left := time.Until(got.ExpiresAt); left < 58*time.Minute || left > time.Hour+time.Second {
		t.Errorf("the waitpoint expires in %s, want an hour", left)
	}

	res, err = client.Enqueue(ctx, confusedArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	failed := waitState(t, st, res.ID, store.StateFailed)
	want := `invalid wait.waitpoints[0]: "nowhere" is not a waitpoint of this task (create it first)`
	if len(failed.Errors) != 1 || failed.Errors[0].Error != want {
		t.Errorf("errors = %+v, want one: %s", failed.Errors, want)
	}
}
