package dashboard_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/dashboard"
	"github.com/weftworks/weft/store"
)

// The Limits pages, the task panel's blocked reasons and the workers'
// labels, read from a real store.
func TestLimitsPages(t *testing.T) {
	srv, st, _ := serve(t, dashboard.Config{})
	ctx := context.Background()
	s := newSession(t, srv.URL)
	if code, body := s.get("/ui/limits"); code != 200 || !strings.Contains(body, "No limit is defined.") || !strings.Contains(body, `href="/ui/limits" class="active"`) {
		t.Fatalf("empty limits page: %d\n%s", code, body)
	}
	for _, l := range []store.Limit{
		{Name: "per-customer", Concurrency: 1, Overrides: map[string]int{"vip": 5}},
		{Name: "openai", Rate: 500, Period: time.Minute, Burst: 50},
	} {
		if _, err := st.SetLimit(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, nt := range []store.NewTask{
		{Kind: "export", LimitKeys: map[string]string{"per-customer": "acme"}},
		{Kind: "export", LimitKeys: map[string]string{"per-customer": "acme"}},
		{Kind: "train", Requires: []store.Requirement{{Label: "gpu", Op: "=", Value: "true"}, {Label: "mem", Op: ">=", Value: "64"}}},
	} {
		res, err := st.Enqueue(ctx, []store.NewTask{nt})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res[0].ID)
	}
	if err := st.TouchWorker(ctx, store.RemoteWorker{ID: "py-1", Host: "10.0.0.7", Queues: []string{"default"}, Labels: map[string]string{"gpu": "false", "region": "eu"}}); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Claim(ctx, store.ClaimRequest{Owner: "py-1", LeaseTTL: time.Hour, Queues: []store.QueueClaim{{Queue: "default", Limit: 10}}}); err != nil || len(got) != 1 {
		t.Fatalf("claimed %v, %v; want the first export", got, err)
	}

	_, body := s.get("/ui/limits")
	for _, want := range []string{
		`<a href="/ui/limits/per-customer">per-customer</a>`, "(1 override)", "500 per 1m00s, bursts of 50",
		`<span class="badge warn">1</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("limits page lacks %q", want)
		}
	}
	code, body := s.get("/ui/limits/per-customer")
	if code != 200 || !strings.Contains(body, "at most 1 running per key") || !strings.Contains(body, `<td class="mono">acme</td><td class="n">1</td><td class="n">1</td><td class="n">1</td>`) {
		t.Errorf("limit page: %d\n%s", code, body)
	}
	if code, _ := s.get("/ui/limits/nope"); code != http.StatusNotFound {
		t.Errorf("an unknown limit: %d, want 404", code)
	}

	_, body = s.get("/ui/tasks/" + ids[1])
	for _, want := range []string{
		"Waiting for limit per-customer (key acme): 1 of 1 in use.", `<a href="/ui/limits/per-customer">See the limit.</a>`,
		`<dt>Limits</dt><dd><a href="/ui/limits/per-customer">per-customer</a>=<span class="mono">acme</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the task set aside lacks %q", want)
		}
	}
	_, body = s.get("/ui/tasks/" + ids[2])
	for _, want := range []string{
		"No live worker has the labels it requires (gpu=true, mem&gt;=64): see the Workers page.",
		`<dt>Requires</dt><dd class="mono">gpu=true, mem&gt;=64</dd>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the task without a worker lacks %q", want)
		}
	}
	if _, body = s.get("/ui/workers"); !strings.Contains(body, "<th>Labels</th>") || !strings.Contains(body, "gpu=false, region=eu") {
		t.Errorf("workers page lacks the labels:\n%s", body)
	}
}
