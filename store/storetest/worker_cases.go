package storetest

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Cases of the worker registry (store.Coordinator): the queues and kinds
// nodes serve, remote workers recorded from their claims, and the tasks
// each holds.

var workerCases = []testCase{
	{"nodes record the queues and kinds they serve and count the tasks they hold", testNodeRegistry},
	{"remote workers are recorded, updated, and forgotten after a day of silence", testRemoteWorkers},
	{"bad registrations are refused and nothing is written", testRegistryRefused},
	{"a started client registers its queues and kinds", testClientRegistersNode},
	{"nodes and remote workers record their labels, and bad labels are refused", testRegistryLabels},
}

func testNodeRegistry(t *testing.T, e *env) {
	start := e.clock.Freeze().UTC()
	for _, n := range []store.Node{
		{ID: "n1", Host: "h1", PID: 7, Queues: []string{"default", "mail"}, Kinds: []string{"http", "email.send"}},
		{ID: "n2", Host: "h2", PID: 8, Queues: []string{"default"}},
	} {
		if err := e.st.TouchNode(e.ctx, n); err != nil {
			t.Fatalf("touch %s: %v", n.ID, err)
		}
	}
	e.enqueue(t, task("k"), task("k"), task("k"))
	if got := e.claim(t, "n1", time.Minute, q("default", 2)); len(got) != 2 {
		t.Fatalf("claimed %d, want 2", len(got))
	}
	e.clock.Advance(time.Second)
	// A heartbeat keeps what the node serves, and may change it.
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "n2", Host: "h2", PID: 8, Queues: []string{"default", "bulk"}}); err != nil {
		t.Fatal(err)
	}
	nodes, err := e.open(t).Nodes(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Node{
		{ID: "n1", Host: "h1", PID: 7, StartedAt: start, HeartbeatAt: start, Queues: []string{"default", "mail"}, Kinds: []string{"http", "email.send"}, Running: 2},
		{ID: "n2", Host: "h2", PID: 8, StartedAt: start, HeartbeatAt: start.Add(time.Second), Queues: []string{"default", "bulk"}},
	}
	if !reflect.DeepEqual(nodes, want) {
		t.Fatalf("nodes =\n%+v\nwant\n%+v", nodes, want)
	}
}

func testRemoteWorkers(t *testing.T, e *env) {
	first := e.clock.Freeze().UTC()
	w := store.RemoteWorker{ID: "py-1", Host: "10.0.0.7", Queues: []string{"default"}, Kinds: []string{"py.resize"}}
	if err := e.st.TouchWorker(e.ctx, w); err != nil {
		t.Fatalf("touch: %v", err)
	}
	e.enqueue(t, task("py.resize"))
	if got := e.claim(t, "py-1", time.Minute, q("default", 1)); len(got) != 1 {
		t.Fatalf("claimed %d, want 1", len(got))
	}
	e.clock.Advance(time.Minute)
	// A later claim updates what it serves and when it was last seen.
	w.Queues, w.Kinds, w.Host = []string{"default", "images"}, nil, "10.0.0.8"
	if err := e.st.TouchWorker(e.ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := e.st.TouchWorker(e.ctx, store.RemoteWorker{ID: "go-1", Host: "10.0.0.9", Queues: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	got, err := e.open(t).RemoteWorkers(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := first.Add(time.Minute)
	want := []store.RemoteWorker{
		{ID: "go-1", Host: "10.0.0.9", Queues: []string{"default"}, FirstSeenAt: seen, LastSeenAt: seen},
		{ID: "py-1", Host: "10.0.0.8", Queues: []string{"default", "images"}, FirstSeenAt: first, LastSeenAt: seen, Running: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("remote workers =\n%+v\nwant\n%+v", got, want)
	}
	// A day later, the next record forgets the workers that fell silent.
	e.clock.Advance(store.ForgetWorkersAfter - time.Minute)
	if err := e.st.TouchWorker(e.ctx, store.RemoteWorker{ID: "go-1", Host: "10.0.0.9", Queues: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if got := workerIDs(t, e); !slices.Equal(got, []string{"go-1", "py-1"}) {
		t.Fatalf("after a day less a minute: %v", got)
	}
	e.clock.Advance(2 * time.Minute)
	if err := e.st.TouchWorker(e.ctx, store.RemoteWorker{ID: "go-1", Host: "10.0.0.9", Queues: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if got := workerIDs(t, e); !slices.Equal(got, []string{"go-1"}) {
		t.Fatalf("after a day and a minute: %v, want py-1 forgotten", got)
	}
}

func workerIDs(t *testing.T, e *env) []string {
	t.Helper()
	ws, err := e.st.RemoteWorkers(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	return ids
}

func testRegistryRefused(t *testing.T, e *env) {
	for _, tc := range []struct {
		w     store.RemoteWorker
		field string
	}{
		{store.RemoteWorker{Queues: []string{"default"}}, "worker id"},
		{store.RemoteWorker{ID: "w"}, "queues"},
		{store.RemoteWorker{ID: "w", Queues: []string{"default", "bad queue"}}, "queues[1]"},
		{store.RemoteWorker{ID: "w", Queues: []string{"default"}, Kinds: []string{"9k"}}, "kinds[0]"},
	} {
		var ve *store.ValidationError
		if err := e.st.TouchWorker(e.ctx, tc.w); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Fatalf("touch %+v: %v, want a ValidationError on %s", tc.w, err, tc.field)
		}
	}
	var ve *store.ValidationError
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "n", Queues: []string{"default"}, Kinds: []string{"ok", ""}}); !errors.As(err, &ve) || ve.Field != "kinds[1]" {
		t.Fatalf("touch node with an empty kind: %v", err)
	}
	if ws := workerIDs(t, e); len(ws) != 0 {
		t.Fatalf("refused workers were recorded: %v", ws)
	}
	if nodes, err := e.st.Nodes(e.ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("refused node was recorded: %v, %v", nodes, err)
	}
}

func testClientRegistersNode(t *testing.T, e *env) {
	c := startClient(t, e, nil, noopTickWorkers(), weft.Config{NodeID: "worker-a", Queues: map[string]weft.QueueConfig{"mail": {MaxWorkers: 1}, "default": {MaxWorkers: 2}}})
	nodes, err := e.st.Nodes(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != c.NodeID() || !slices.Equal(nodes[0].Queues, []string{"default", "mail"}) || !slices.Equal(nodes[0].Kinds, []string{tickArgs{}.Kind(), weft.WaitStepKind}) {
		t.Fatalf("nodes = %+v; want worker-a serving default and mail, kinds %s and the built-in %s", nodes, tickArgs{}.Kind(), weft.WaitStepKind)
	}
}

func testRegistryLabels(t *testing.T, e *env) {
	now := e.clock.Freeze().UTC()
	gpu := map[string]string{"gpu": "true", "mem": "64", "region": "eu-west"}
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "n1", Host: "h", PID: 1, Queues: []string{"default"}, Labels: gpu}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "n2", Host: "h", PID: 2, Queues: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.TouchWorker(e.ctx, store.RemoteWorker{ID: "py-1", Host: "10.0.0.7", Queues: []string{"default"}, Labels: map[string]string{"region": "us"}}); err != nil {
		t.Fatal(err)
	}
	nodes, err := e.open(t).Nodes(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantNodes := []store.Node{
		{ID: "n1", Host: "h", PID: 1, StartedAt: now, HeartbeatAt: now, Queues: []string{"default"}, Labels: gpu},
		{ID: "n2", Host: "h", PID: 2, StartedAt: now, HeartbeatAt: now, Queues: []string{"default"}},
	}
	if !reflect.DeepEqual(nodes, wantNodes) {
		t.Fatalf("nodes =\n%+v\nwant\n%+v", nodes, wantNodes)
	}
	// A heartbeat or a later claim replaces the labels: they are what the
	// worker says now, none included.
	e.clock.Advance(time.Second)
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "n1", Host: "h", PID: 1, StartedAt: now, Queues: []string{"default"}, Labels: map[string]string{"gpu": "false"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.TouchWorker(e.ctx, store.RemoteWorker{ID: "py-1", Host: "10.0.0.7", Queues: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	nodes, err = e.st.Nodes(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(nodes[0].Labels, map[string]string{"gpu": "false"}) {
		t.Fatalf("n1's labels after its heartbeat: %v", nodes[0].Labels)
	}
	ws, err := e.st.RemoteWorkers(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Labels != nil {
		t.Fatalf("py-1 after a claim without labels: %+v", ws)
	}
	// Labels no requirement could name are refused, and nothing changes.
	bad := map[string]string{"9gpu": "true"}
	var ve *store.ValidationError
	if err := e.st.TouchNode(e.ctx, store.Node{ID: "n1", Host: "h", PID: 1, Queues: []string{"default"}, Labels: bad}); !errors.As(err, &ve) || ve.Field != "labels" {
		t.Fatalf("touch node with label 9gpu: %v, want a ValidationError on labels", err)
	}
	if err := e.st.TouchWorker(e.ctx, store.RemoteWorker{ID: "py-2", Host: "h", Queues: []string{"default"}, Labels: bad}); !errors.As(err, &ve) || ve.Field != "labels" {
		t.Fatalf("touch worker with label 9gpu: %v, want a ValidationError on labels", err)
	}
	if got := workerIDs(t, e); !slices.Equal(got, []string{"py-1"}) {
		t.Fatalf("a refused worker was recorded: %v", got)
	}
}
