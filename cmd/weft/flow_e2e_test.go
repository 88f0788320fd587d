package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/pgtest"
	"github.com/weftworks/weft/internal/weftproc"
)

// Flows end to end: `weft flow submit`, a remote worker that claims the
// members over HTTP, reads their parents' outcomes and fans out under its
// lease, `weft flow --monitor` with its exit codes, cancel and retry.

func TestFlowsSQLite(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--database", filepath.Join(t.TempDir(), "weft.db"))
	flowCases(t, s)
}

func TestFlowsPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewSchema(t, pgtest.ServerURL(t))
	s := startServer(t, []string{"WEFT_DATABASE_URL=" + dsn})
	flowCases(t, s)
}

// flowQueue is the queue the remote worker serves; heldQueue holds members
// nothing runs until a test says so.
const (
	flowQueue = "e2e-flows"
	heldQueue = "e2e-held"
)

func flowCases(t *testing.T, s *weftproc.Server) {
	c := apiclient.New(s.URL, "", nil)
	startFlowWorker(t, c)

	t.Run("fan-out under the lease, fan-in, parents", func(t *testing.T) {
		id, tasks := submitFlow(t, s, `{"name": "crawl", "tasks": [
		  {"key": "split", "kind": "split", "queue": "e2e-flows", "args": {"n": 3}},
		  {"key": "merge", "kind": "merge", "queue": "e2e-flows", "depends_on": ["split/*"]},
		  {"key": "undo", "kind": "undo", "queue": "e2e-flows", "depends_on": ["merge"], "join": "none_succeeded"}]}`)
		r := s.Run(t, "", "flow", id, "--monitor")
		if r.Code != 0 {
			t.Fatalf("monitor: exit %d, want 0 (succeeded)\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if !strings.Contains(r.Stdout, `"type":"created","attempt":0`) || !strings.Contains(r.Stdout, `"key":"part-3"`) {
			t.Fatalf("monitor did not print the added members' events:\n%s", r.Stdout)
		}
		f := getFlow(t, s, id)
		members := map[string]api.FlowMember{}
		for _, m := range f.Members {
			members[m.Key] = m
		}
		if f.State != "succeeded" || f.Counts.Total != 6 || f.Counts.Completed != 5 || f.Counts.Skipped != 1 || f.Progress != 1 {
			t.Fatalf("flow = %+v", f)
		}
		if u := members["undo"]; u.State != "skipped" || u.Reason != "dependency_succeeded" || u.ReasonKey != "merge" {
			t.Fatalf("undo = %+v, want skipped because merge succeeded", u)
		}
		if p := members["part-2"]; p.AddedBy != "split" || strings.Join(p.DependsOn, ",") != "split" {
			t.Fatalf("part-2 = %+v", p)
		}
		if deps := members["merge"].DependsOn; strings.Join(deps, ",") != "part-1,part-2,part-3,split" {
			t.Fatalf("merge depends on %v, want split and all it added", deps)
		}
		merge := getTask(t, s, tasks["merge"])
		var sum struct{ Sum, Parents int }
		if err := json.Unmarshal(merge.Result, &sum); err != nil || merge.FlowID != id || merge.Key != "merge" || sum.Sum != 12 || sum.Parents != 4 {
			t.Fatalf("merge = %+v (result %s)", merge, merge.Result)
		}
		table := s.Must(t, "", "flow", id)
		if !strings.Contains(table, "added by split") || !strings.Contains(table, "dependency_succeeded (merge)") {
			t.Fatalf("flow table:\n%s", table)
		}
	})

	t.Run("compensation absorbs a failure", func(t *testing.T) {
		id, _ := submitFlow(t, s, `{"tasks": [
		  {"key": "pay", "kind": "pay", "queue": "e2e-flows", "max_attempts": 1},
		  {"key": "ship", "kind": "ship", "queue": "e2e-flows", "depends_on": ["pay"]},
		  {"key": "refund", "kind": "refund", "queue": "e2e-flows", "depends_on": ["pay"], "join": "none_succeeded"}]}`)
		if r := s.Run(t, "", "flow", id, "--monitor"); r.Code != 0 {
			t.Fatalf("monitor: exit %d, want 0 (the refund absorbed the failure)\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		states := memberStates(getFlow(t, s, id))
		if states["pay"] != "failed" || states["ship"] != "skipped" || states["refund"] != "completed" {
			t.Fatalf("members = %v", states)
		}
	})

	t.Run("a failure nothing absorbs", func(t *testing.T) {
		id, _ := submitFlow(t, s, `{"tasks": [{"key": "pay", "kind": "pay", "queue": "e2e-flows", "max_attempts": 1},
		  {"key": "ship", "kind": "ship", "queue": "e2e-flows", "depends_on": ["pay"]}]}`)
		if r := s.Run(t, "", "flow", id, "--monitor"); r.Code != 1 || !strings.Contains(r.Stderr, "failed") {
			t.Fatalf("monitor: exit %d, want 1 (failed)\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("a batch with a completion callback", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`{"name": "nightly", "tasks": [{"key": "report", "kind": "report", "queue": "e2e-flows", "depends_on": ["*"], "join": "all_done"}`)
		for i := range 20 {
			fmt.Fprintf(&b, `, {"key": "item-%d", "kind": "item", "queue": "e2e-flows", "args": {"i": %d}}`, i, i)
		}
		b.WriteString("]}")
		id, tasks := submitFlow(t, s, b.String())
		r := s.Run(t, "", "flow", id, "--monitor", "--format", "human")
		if r.Code != 0 || !strings.Contains(r.Stdout, "] succeeded 21/21 done (100%): 21 completed") {
			t.Fatalf("monitor: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if report := getTask(t, s, tasks["report"]); string(report.Result) != `{"parents":20}` {
			t.Fatalf("report = %s, want every item as a parent", report.Result)
		}
	})

	t.Run("cancel and retry", func(t *testing.T) {
		id, tasks := submitFlow(t, s, `{"tasks": [
		  {"key": "hold", "kind": "hold", "queue": "e2e-held"},
		  {"key": "after", "kind": "after", "queue": "e2e-flows", "depends_on": ["hold"]}]}`)
		out := s.Must(t, "", "flow", "cancel", id)
		if strings.TrimSpace(out) != "flow "+id+": cancelled" {
			t.Fatalf("cancel printed %q", out)
		}
		if r := s.Run(t, "", "flow", id, "--monitor"); r.Code != 2 {
			t.Fatalf("monitor of a cancelled flow: exit %d, want 2\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if out := s.Must(t, "", "flow", "retry", id); !strings.Contains(out, "running again (1 pending, 1 blocked") {
			t.Fatalf("retry printed %q", out)
		}
		// Now run the held member, as another remote worker would.
		claim, err := c.Claim(context.Background(), api.ClaimRequest{WorkerID: "e2e-held", Queues: []string{heldQueue}, Wait: "10s"})
		if err != nil || len(claim.Tasks) != 1 || claim.Tasks[0].ID != tasks["hold"] {
			t.Fatalf("claim of the held member: %+v, %v", claim, err)
		}
		if _, err := c.Complete(context.Background(), claim.Tasks[0].ID, api.CompleteRequest{LeaseToken: claim.Tasks[0].LeaseToken}); err != nil {
			t.Fatal(err)
		}
		if r := s.Run(t, "", "flow", id, "--monitor"); r.Code != 0 {
			t.Fatalf("monitor after the retry: exit %d, want 0\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if r := s.Run(t, "", "flow", "cancel", id); r.Code != 1 || !strings.Contains(r.Stderr, "409 already_finished") {
			t.Fatalf("cancel of a succeeded flow: exit %d\n%s", r.Code, r.Stderr)
		}
	})

	t.Run("refused and unknown flows", func(t *testing.T) {
		r := s.Run(t, `{"tasks": [{"key": "a", "kind": "k", "depends_on": ["b"]}, {"key": "b", "kind": "k", "depends_on": ["a"]}]}`, "flow", "submit", "-")
		if r.Code != 1 || !strings.Contains(r.Stderr, "422 invalid: tasks[0].depends_on: dependency cycle: a -> b -> a") {
			t.Fatalf("a cycle: exit %d\n%s", r.Code, r.Stderr)
		}
		unknown := "01a20000-0000-7000-8000-000000000000"
		if r := s.Run(t, "", "flow", unknown, "--monitor"); r.Code != 3 || !strings.Contains(r.Stderr, "flow_not_found") {
			t.Fatalf("monitor of an unknown flow: exit %d, want 3\n%s", r.Code, r.Stderr)
		}
		var list api.FlowList
		if err := json.Unmarshal([]byte(s.Must(t, "", "flows", "--format", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Flows) != 5 {
			t.Fatalf("%d flows listed, want the 5 submitted (and not the refused one)", len(list.Flows))
		}
	})
}

// submitFlow submits a flow through `weft flow submit -` and returns its
// id and task ids by key.
func submitFlow(t *testing.T, s *weftproc.Server, body string) (string, map[string]string) {
	t.Helper()
	var res api.FlowEnqueued
	if err := json.Unmarshal([]byte(s.Must(t, body, "flow", "submit", "-", "--format", "json")), &res); err != nil || res.ID == "" {
		t.Fatalf("flow submit: %+v, %v", res, err)
	}
	return res.ID, res.Tasks
}

func getFlow(t *testing.T, s *weftproc.Server, id string) api.Flow {
	t.Helper()
	var f api.Flow
	if err := json.Unmarshal([]byte(s.Must(t, "", "flow", id, "--format", "json")), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func memberStates(f api.Flow) map[string]string {
	out := map[string]string{}
	for _, m := range f.Members {
		out[m.Key] = m.State
	}
	return out
}

// startFlowWorker runs a remote worker on flowQueue until the test ends.
func startFlowWorker(t *testing.T, c *apiclient.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			claim, err := c.Claim(ctx, api.ClaimRequest{WorkerID: "e2e-flows", Queues: []string{flowQueue}, Max: 10, Wait: "5s"})
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("claim: %v", err)
				}
				return
			}
			for _, task := range claim.Tasks {
				if err := runFlowMember(ctx, c, task); err != nil && ctx.Err() == nil {
					t.Errorf("member %s (%s): %v", task.Key, task.Kind, err)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// runFlowMember does what a member of kind asks, reading its parents'
// outcomes from the claim.
func runFlowMember(ctx context.Context, c *apiclient.Client, task api.ClaimedTask) error {
	var args struct{ N, I int }
	if err := json.Unmarshal(task.Args, &args); err != nil {
		return err
	}
	var result any
	switch task.Kind {
	case "split":
		// Fan out under the lease: the parts run after split completes,
		// and merge ("split/*") waits for them too.
		var parts []api.FlowTaskInput
		for i := 1; i <= args.N; i++ {
			parts = append(parts, api.FlowTaskInput{
				TaskInput: api.TaskInput{Kind: "part", Queue: flowQueue, Args: json.RawMessage(fmt.Sprintf(`{"i": %d}`, i))},
				Key:       fmt.Sprintf("part-%d", i), DependsOn: []string{"split"},
			})
		}
		added, err := c.AddMembers(ctx, task.ID, api.AddMembersRequest{LeaseToken: task.LeaseToken, Tasks: parts})
		if err != nil {
			return err
		}
		if added.ID != task.FlowID || len(added.Tasks) != args.N {
			return fmt.Errorf("added = %+v", added)
		}
		result = map[string]int{"parts": args.N}
	case "part":
		if p := task.Parents["split"]; p.State != "completed" || string(p.Result) != `{"parts":3}` {
			return fmt.Errorf("parents = %+v, want split's result", task.Parents)
		}
		result = map[string]int{"double": 2 * args.I}
	case "merge":
		sum := 0
		for _, p := range task.Parents {
			var r struct{ Double int }
			if err := json.Unmarshal(p.Result, &r); err != nil {
				return err
			}
			sum += r.Double
		}
		result = map[string]int{"sum": sum, "parents": len(task.Parents)}
	case "report":
		for k, p := range task.Parents {
			if p.State != "completed" || !strings.HasPrefix(k, "item-") {
				return fmt.Errorf("parent %s is %s", k, p.State)
			}
		}
		result = map[string]int{"parents": len(task.Parents)}
	case "pay":
		_, err := c.Fail(ctx, task.ID, api.FailRequest{LeaseToken: task.LeaseToken, Error: "card declined", Permanent: true})
		return err
	case "refund":
		if p := task.Parents["pay"]; p.State != "failed" || len(p.Errors) != 1 || p.Errors[0].Error != "card declined" {
			return fmt.Errorf("refund's parents = %+v", task.Parents)
		}
	}
	if _, err := c.Complete(ctx, task.ID, api.CompleteRequest{LeaseToken: task.LeaseToken, Result: mustRaw(result)}); err != nil {
		return err
	}
	if task.Kind == "split" {
		// The attempt is over, and so is its right to add members.
		_, err := c.AddMembers(ctx, task.ID, api.AddMembersRequest{LeaseToken: task.LeaseToken, Tasks: []api.FlowTaskInput{{TaskInput: api.TaskInput{Kind: "late"}, Key: "late"}}})
		if !errors.Is(err, apiclient.ErrLeaseLost) {
			return fmt.Errorf("adding after the attempt: %v, want lease lost", err)
		}
	}
	return nil
}

func mustRaw(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
