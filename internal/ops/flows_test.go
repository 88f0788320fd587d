package ops_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// member is a flow member whose queue is its key.
func member(key string, deps ...string) api.FlowTaskInput {
	return api.FlowTaskInput{TaskInput: api.TaskInput{Kind: "step", Queue: key, MaxAttempts: 1}, Key: key, DependsOn: deps}
}

// claimKey claims the member of queue key.
func claimKey(t *testing.T, st store.Store, key string) *store.Task {
	t.Helper()
	c, err := st.Claim(context.Background(), store.ClaimRequest{Owner: "test", Queues: []store.QueueClaim{{Queue: key, Limit: 1}}, LeaseTTL: time.Minute})
	if err != nil || len(c) != 1 {
		t.Fatalf("claim %s: %v, %v", key, c, err)
	}
	return c[0]
}

func complete(t *testing.T, st store.Store, c *store.Task) {
	t.Helper()
	res, err := st.Finish(context.Background(), []store.Outcome{{TaskID: c.ID, Epoch: c.LeaseEpoch, State: store.StateCompleted, Event: store.EventCompleted}})
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestFlowService(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		svc := ops.New(st, ops.Config{Poll: 5 * time.Millisecond})

		// Refused whole, each with its status and path.
		bad := member("b")
		bad.Delay = "soon"
		many := make([]api.FlowTaskInput, store.DefaultMaxFlowMembers+1)
		for i := range many {
			many[i] = api.FlowTaskInput{TaskInput: api.TaskInput{Kind: "k"}, Key: fmt.Sprintf("m%d", i)}
		}
		for _, tc := range []struct {
			tasks       []api.FlowTaskInput
			status      int
			code, field string
		}{
			{[]api.FlowTaskInput{member("a", "b"), member("b", "a")}, 422, api.CodeInvalid, "tasks[0].depends_on"},
			{[]api.FlowTaskInput{member("a"), member("a")}, 422, api.CodeInvalid, "tasks[1].key"},
			{[]api.FlowTaskInput{member("a"), bad}, 422, api.CodeInvalid, "tasks[1].delay"},
			{nil, 422, api.CodeInvalid, "tasks"},
			{many, 413, api.CodeTooLarge, "tasks"},
		} {
			_, err := svc.SubmitFlow(ctx, api.FlowInput{Tasks: tc.tasks})
			wantProblem(t, err, tc.status, tc.code, tc.field)
		}
		if list, err := svc.ListFlows(ctx, api.FlowListParams{}); err != nil || len(list.Flows) != 0 {
			t.Fatalf("refused flows were written: %+v, %v", list, err)
		}

		res, err := svc.SubmitFlow(ctx, api.FlowInput{Name: "fan", Tasks: []api.FlowTaskInput{member("split"), member("merge", "split/*")}})
		if err != nil {
			t.Fatal(err)
		}
		f, err := svc.Flow(ctx, res.ID, true)
		if err != nil || f.State != "running" || len(f.Members) != 2 || f.Members[1].DependsOn[0] != "split" || f.Members[1].Join != "all_succeeded" {
			t.Fatalf("flow = %+v, %v", f, err)
		}
		if lean, err := svc.Flow(ctx, res.ID, false); err != nil || lean.Members != nil || lean.Counts != f.Counts {
			t.Fatalf("flow without members = %+v, %v", lean, err)
		}

		es, err := svc.FlowEvents(ctx, res.ID, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		ch := collect(ctx, es)
		split := claimKey(t, st, "split")
		added, err := svc.AddMembers(ctx, split.ID, split.LeaseEpoch, []api.FlowTaskInput{member("part", "split")})
		if err != nil || added.ID != res.ID || added.Tasks["part"] == "" {
			t.Fatalf("added = %+v, %v", added, err)
		}
		_, err = svc.AddMembers(ctx, split.ID, split.LeaseEpoch+1, []api.FlowTaskInput{member("late")})
		wantProblem(t, err, 409, api.CodeLeaseLost, "lease_token")
		_, err = svc.AddMembers(ctx, split.ID, split.LeaseEpoch, []api.FlowTaskInput{member("part")})
		wantProblem(t, err, 422, api.CodeInvalid, "tasks[0].key")
		complete(t, st, split)
		complete(t, st, claimKey(t, st, "part"))
		complete(t, st, claimKey(t, st, "merge"))
		var got []string
		for {
			ev, ok := next(t, ch)
			if !ok {
				break
			}
			got = append(got, ev.Key+":"+ev.Type)
		}
		// Ends on its own once the flow is final, each event named by
		// its member, the one added at run time included.
		want := "split:created merge:created split:started part:created split:completed part:unblocked part:started part:completed merge:unblocked merge:started merge:completed"
		if strings.Join(got, " ") != want {
			t.Fatalf("flow events\n%v\nwant\n%s", got, want)
		}
		if done, err := svc.FlowEvents(ctx, res.ID, 0, false); err != nil || done.Exhausted(ctx) {
			t.Fatalf("a finished flow's stream from the start: exhausted, %v", err)
		}

		_, err = svc.CancelFlow(ctx, res.ID)
		wantProblem(t, err, 409, api.CodeAlreadyFinished, "")
		if msg := ops.ProblemOf(err).Body.Message; !strings.Contains(msg, "already succeeded") {
			t.Fatalf("message %q", msg)
		}
		_, err = svc.RetryFlow(ctx, res.ID)
		wantProblem(t, err, 409, api.CodeConflict, "")

		other, err := svc.SubmitFlow(ctx, api.FlowInput{Tasks: []api.FlowTaskInput{member("x")}})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := svc.CancelFlow(ctx, other.ID); err != nil || c.State != "cancelled" || c.Counts.Cancelled != 1 {
			t.Fatalf("cancel = %+v, %v", c, err)
		}
		if r, err := svc.RetryFlow(ctx, other.ID); err != nil || r.State != "running" || r.Counts.Active != 1 {
			t.Fatalf("retry = %+v, %v", r, err)
		}
		page, err := svc.ListFlows(ctx, api.FlowListParams{Limit: 1})
		if err != nil || len(page.Flows) != 1 || page.Flows[0].ID != res.ID || page.NextCursor != res.ID {
			t.Fatalf("first page = %+v, %v", page, err)
		}
		running, err := svc.ListFlows(ctx, api.FlowListParams{States: []string{"running"}})
		if err != nil || len(running.Flows) != 1 || running.Flows[0].ID != other.ID || running.NextCursor != "" {
			t.Fatalf("running flows = %+v, %v", running, err)
		}
		_, err = svc.ListFlows(ctx, api.FlowListParams{States: []string{"done"}})
		wantProblem(t, err, 400, api.CodeBadRequest, "state")
		_, err = svc.ListFlows(ctx, api.FlowListParams{Cursor: "x"})
		wantProblem(t, err, 400, api.CodeBadRequest, "cursor")
		_, err = svc.ListFlows(ctx, api.FlowListParams{Limit: ops.MaxPage + 1})
		wantProblem(t, err, 400, api.CodeBadRequest, "limit")

		unknown := "0190a000-0000-7000-8000-000000000000"
		_, err = svc.Flow(ctx, unknown, true)
		wantProblem(t, err, 404, api.CodeFlowNotFound, "")
		_, err = svc.FlowEvents(ctx, unknown, 0, true)
		wantProblem(t, err, 404, api.CodeFlowNotFound, "")
		_, err = svc.CancelFlow(ctx, unknown)
		wantProblem(t, err, 404, api.CodeFlowNotFound, "")
	})
}

func TestParseFlowListQuery(t *testing.T) {
	p, err := ops.ParseFlowListQuery(map[string][]string{"state": {"running,failed"}, "limit": {"5"}, "cursor": {"c"}})
	if err != nil || strings.Join(p.States, ",") != "running,failed" || p.Limit != 5 || p.Cursor != "c" {
		t.Fatalf("= %+v, %v", p, err)
	}
	if q := p.Query(); q.Get("state") != "running,failed" || q.Get("limit") != "5" || q.Get("cursor") != "c" {
		t.Fatalf("query = %v", q)
	}
	for _, q := range []map[string][]string{{"limit": {"0"}}, {"limit": {"x"}}, {"queue": {"a"}}} {
		if _, err := ops.ParseFlowListQuery(q); err == nil {
			t.Errorf("%v was accepted", q)
		}
	}
}
