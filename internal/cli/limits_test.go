package cli

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

func TestLimitsCLI(t *testing.T) {
	s := newTestServer(t, "")
	r := ok(t, runWeft(t, "limit", "set", "per-customer", "--concurrency", "3", "--override", "acme=10", "--server", s.url))
	if strings.TrimSpace(r.stdout) != "limit per-customer set: at most 3 running per key (acme: 10)" {
		t.Errorf("set:\n%s", r)
	}
	r = ok(t, runWeft(t, "limit", "set", "openai", "--rate", "500", "--per", "1m", "--burst", "50", "--database", s.path))
	if strings.TrimSpace(r.stdout) != "limit openai set: 500 per 1m0s, bursts of 50 per key" {
		t.Errorf("set a rate:\n%s", r)
	}
	list := decode[api.LimitList](t, s.sameBothWays(t, "limits", "--format", "json").stdout)
	if len(list.Limits) != 2 || list.Limits[0].Name != "openai" || list.Limits[1].Overrides["acme"] != 10 {
		t.Fatalf("limits = %+v", list)
	}
	r = s.sameBothWays(t, "limits")
	for _, want := range []string{"NAME", "AT THE CAP", "openai        -               500 per 1m0s, bursts of 50  queue", "per-customer  3 (1 override)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("limits table lacks %q:\n%s", want, r)
		}
	}

	// A key at its cap: the task behind it waits, and says why.
	ok(t, runWeft(t, "limit", "set", "solo", "--concurrency", "1", "--server", s.url))
	var ids []string
	for range 2 {
		ids = append(ids, strings.TrimSpace(ok(t, runWeft(t, "enqueue", "report", "--limit", "solo=acme", "--server", s.url)).stdout))
	}
	claimed, err := s.st.Claim(context.Background(), store.ClaimRequest{Owner: "w", LeaseTTL: time.Hour, Queues: []store.QueueClaim{{Queue: "default", Limit: 10}}})
	if err != nil || len(claimed) != 1 || claimed[0].ID != ids[0] {
		t.Fatalf("claimed %v, %v; want the first task only", claimed, err)
	}
	r = s.sameBothWays(t, "limit", "show", "solo")
	for _, want := range []string{"allows:      at most 1 running per key", "in use:      1", "waiting:     1", "KEY   IN USE  CAP  WAITING  NEXT ALLOWED", "acme  1       1    1        -"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("limit show lacks %q:\n%s", want, r)
		}
	}
	detail := decode[api.LimitDetail](t, s.sameBothWays(t, "limit", "show", "solo", "--format", "json").stdout)
	if len(detail.Keys) != 1 || detail.Keys[0] != (api.LimitKey{Key: "acme", InUse: 1, Cap: 1, Waiting: 1}) {
		t.Errorf("limit show --format json: %+v", detail)
	}
	r = s.sameBothWays(t, "task", ids[1])
	if !strings.Contains(r.stdout, "blocked:     waiting for limit solo (key acme): 1 of 1 in use") || !strings.Contains(r.stdout, "limits:      solo=acme") {
		t.Errorf("task:\n%s", r)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"limit", "set", "x"}, exitError, "422 invalid: concurrency: a limit needs a concurrency cap, a rate, or both"},
		{[]string{"limit", "set", "x", "--rate", "5"}, exitError, "--per: 422 invalid: period:"},
		{[]string{"limit", "set", "x", "--concurrency", "1", "--burst", "5"}, exitError, "--burst: 422 invalid: burst: given without a rate"},
		{[]string{"limit", "set", "x", "--concurrency", "1", "--on-limit", "drop"}, exitError, "--on-limit: 422 invalid: on_limit:"},
		{[]string{"limit", "set", "x", "--concurrency", "-1"}, exitError, "--concurrency: 422 invalid: concurrency: -1 is negative"},
		{[]string{"limit", "set", "x", "--override", "acme"}, exitUsage, `--override "acme": expected KEY=N`},
		{[]string{"limit", "set", "x", "--rate", "5", "--per", "soon"}, exitUsage, `--per: "soon" is not a duration`},
		{[]string{"limit", "set", "9x", "--concurrency", "1"}, exitError, "400 bad_request: name:"},
		{[]string{"limit", "set"}, exitUsage, "the limit's name"},
		{[]string{"limit", "show", "nope"}, exitError, `404 limit_not_found: limit "nope": limit not found`},
		{[]string{"limit", "show", "solo", "--keys", "0"}, exitUsage, "--keys: 0 is out of range"},
		{[]string{"limit", "delete", "nope"}, exitError, "404 limit_not_found"},
		{[]string{"enqueue", "k", "--limit", "nope=a"}, exitError, "422 invalid: limits:"},
		{[]string{"enqueue", "k", "--limit", "solo"}, exitUsage, `--limit "solo": expected NAME=KEY`},
		{[]string{"enqueue", "k", "--limit", "solo=a", "--limit", "solo=b"}, exitUsage, "limit solo given twice"},
		{[]string{"enqueue", "k", "--require", "mem>=lots"}, exitError, `422 invalid: requires: label "mem": "lots" after >= is not a number`},
		{[]string{"enqueue", "k", "--require", "gpu"}, exitUsage, `--require "gpu": expected LABEL=VALUE`},
		{[]string{"enqueue", "k", "--cost", "2"}, exitError, "422 invalid: cost: given without limits"},
	} {
		failsWith(t, s.sameBothWays(t, tc.args...), tc.code, tc.want)
	}
	if ls, err := s.st.ListLimits(context.Background()); err != nil || len(ls) != 3 {
		t.Fatalf("refused limits were stored: %+v, %v", ls, err)
	}

	// Every field of a task's gate, as enqueued and as shown.
	id := strings.TrimSpace(ok(t, runWeft(t, "enqueue", "train", "--limit", "solo=globex", "--cost", "2", "--require", "gpu=true",
		"--require", "mem>=64", "--fairness-key", "globex", "--database", s.path)).stdout)
	task := decode[api.Task](t, ok(t, runWeft(t, "task", id, "--format", "json", "--server", s.url)).stdout)
	if !reflect.DeepEqual(task.Limits, map[string]string{"solo": "globex"}) || task.Cost != 2 || task.FairnessKey != "globex" ||
		!reflect.DeepEqual(task.Requires, map[string]string{"gpu": "true", "mem": ">=64"}) {
		t.Errorf("task = %+v", task)
	}
	r = ok(t, runWeft(t, "task", id, "--server", s.url))
	for _, want := range []string{"requires:    gpu=true, mem>=64", "cost:        2", "fairness key: globex", "blocked:     no live worker has the labels it requires"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("task lacks %q:\n%s", want, r)
		}
	}

	r = ok(t, runWeft(t, "limit", "delete", "solo", "--server", s.url))
	if strings.TrimSpace(r.stdout) != "limit solo deleted (1 tasks were waiting for it and no longer wait)" {
		t.Errorf("delete:\n%s", r)
	}
	if r := ok(t, runWeft(t, "limits", "--database", s.path)); strings.Contains(r.stdout, "solo") {
		t.Errorf("deleted limit still listed:\n%s", r)
	}
}

func TestFairnessCLI(t *testing.T) {
	s := newTestServer(t, "")
	if r := s.sameBothWays(t, "queues", "fairness", "reports"); strings.TrimSpace(r.stdout) != "queue reports: every fairness key weighs 1" {
		t.Errorf("no weights:\n%s", r)
	}
	r := ok(t, runWeft(t, "queues", "fairness", "reports", "acme=3", "globex=2", "--server", s.url))
	if !strings.Contains(r.stdout, "KEY     WEIGHT\nacme    3\nglobex  2\n(other keys weigh 1)") {
		t.Errorf("set:\n%s", r)
	}
	ok(t, runWeft(t, "queues", "fairness", "reports", "globex=0", "--database", s.path))
	f := decode[api.Fairness](t, s.sameBothWays(t, "queues", "fairness", "reports", "--format", "json").stdout)
	if !reflect.DeepEqual(f, api.Fairness{Queue: "reports", Weights: map[string]int{"acme": 3}}) {
		t.Errorf("fairness = %+v", f)
	}
	failsWith(t, s.sameBothWays(t, "queues", "fairness", "reports", "acme"), exitUsage, `"acme": expected KEY=WEIGHT`)
	failsWith(t, s.sameBothWays(t, "queues", "fairness", "reports", "acme=-1"), exitError, "422 invalid: weights:")
	failsWith(t, s.sameBothWays(t, "queues", "fairness"), exitUsage, "needs the queue's name")
	failsWith(t, s.sameBothWays(t, "queues", "fairness", "9q"), exitError, "400 bad_request: name:")
}

func TestLabelFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"worker", "--label", "gpu"}, nil, `--label "gpu": expected LABEL=VALUE`},
		{[]string{"worker", "--label", "9gpu=true"}, nil, `--label: "9gpu" is not a valid label name`},
		{[]string{"worker", "--label", "gpu=a", "--label", "gpu=b"}, nil, "label gpu given twice"},
		{[]string{"worker"}, map[string]string{"WEFT_LABELS": "gpu=true,=x"}, `WEFT_LABELS "=x": expected LABEL=VALUE`},
		{[]string{"serve", "--label", "9gpu=true"}, nil, `--label: "9gpu" is not a valid label name`},
		{[]string{"serve"}, map[string]string{"WEFT_LABELS": "region"}, `WEFT_LABELS "region": expected LABEL=VALUE`},
	} {
		r := cli{t: t, env: tc.env}.run(context.Background(), tc.args...)
		failsWith(t, r, exitUsage, tc.want)
	}
	got, err := workerLabels(&globals{lookupEnv: func(k string) (string, bool) {
		return map[string]string{"WEFT_LABELS": "gpu=true, region=eu"}[k], k == "WEFT_LABELS"
	}}, false, nil)
	if err != nil || !reflect.DeepEqual(got, map[string]string{"gpu": "true", "region": "eu"}) {
		t.Errorf("WEFT_LABELS: %v, %v", got, err)
	}
}

// rateArgs names a kind whose handler meets an upstream's rate limit.
type rateArgs struct{}

func (rateArgs) Kind() string { return "rated" }

// A remote worker's labels route tasks to it and reach the registry; its
// handler's RateLimited verdict holds the task's rate limit back.
func TestWorkerLabelsAndRateLimited(t *testing.T) {
	s := newTestServer(t, "")
	ctx := context.Background()
	if _, err := s.st.SetLimit(ctx, store.Limit{Name: "upstream", Rate: 100, Period: time.Second}); err != nil {
		t.Fatal(err)
	}
	kinds := kindsOf(func(ws *weft.Workers) {
		weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[rateArgs]) error { return weft.RateLimited(time.Hour) })
	})
	gpu := []store.Requirement{{Label: "gpu", Op: "=", Value: "true"}}
	ids := enqueueStore(t, s.st,
		store.NewTask{Kind: "rated", Requires: gpu, LimitKeys: map[string]string{"upstream": "default"}},
		store.NewTask{Kind: "rated", Requires: []store.Requirement{{Label: "gpu", Op: "=", Value: "false"}}})
	startWorker(t, s, workerOptions{Kinds: kinds, Labels: map[string]string{"gpu": "true"}})
	tk := waitFor(t, s.st, ids[0], "snoozed", func(tk *store.Task) bool {
		return tk.State == store.StatePending && tk.RunAt.After(time.Now().Add(time.Minute))
	})
	if tk.Attempt != 0 {
		t.Errorf("attempt = %d: a rate-limited snooze gives it back", tk.Attempt)
	}
	evs, err := s.st.Events(ctx, ids[0], 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Type != store.EventSnoozed || !strings.Contains(string(last.Data), `"reason":"rate_limited"`) {
		t.Errorf("last event %+v, want snoozed for rate_limited", last)
	}
	if other, err := s.st.Get(ctx, ids[1]); err != nil || other.Attempt != 0 {
		t.Errorf("the task that requires gpu=false was claimed: %+v, %v", other, err)
	}
	ws, err := s.st.RemoteWorkers(ctx)
	if err != nil || len(ws) != 1 || !reflect.DeepEqual(ws[0].Labels, map[string]string{"gpu": "true"}) {
		t.Errorf("registry = %+v, %v", ws, err)
	}
	r := ok(t, runWeft(t, "workers", "--server", s.url))
	if !strings.Contains(r.stdout, "LABELS") || !strings.Contains(r.stdout, "gpu=true") {
		t.Errorf("workers:\n%s", r)
	}
}

// weft batch lines carry the task fields of limits, checked as every
// enqueue checks them.
func TestBatchLimits(t *testing.T) {
	s := newTestServer(t, "")
	ok(t, runWeft(t, "limit", "set", "per-customer", "--concurrency", "2", "--server", s.url))
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.ndjson"), filepath.Join(dir, "bad.ndjson")
	for path, content := range map[string]string{
		good: `{"kind":"report","limits":{"per-customer":"acme"},"cost":2,"requires":{"gpu":"true"},"fairness_key":"acme"}` + "\n",
		bad:  `{"kind":"report"}` + "\n" + `{"kind":"report","requires":{"mem":">=lots"}}` + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	viaServer, direct := s.both(t, "batch", good)
	ok(t, viaServer)
	ok(t, direct)
	tasks, err := s.st.List(context.Background(), store.ListParams{Limit: 10})
	if err != nil || len(tasks) != 2 {
		t.Fatalf("tasks %v, %v", tasks, err)
	}
	for _, tk := range tasks {
		if tk.LimitKeys["per-customer"] != "acme" || tk.Cost != 2 || tk.FairnessKey != "acme" || len(tk.Requires) != 1 {
			t.Errorf("batched task = %+v", tk)
		}
	}
	failsWith(t, s.sameBothWays(t, "batch", bad), exitError, `line 2: requires: label "mem": "lots" after >= is not a number`)
}
