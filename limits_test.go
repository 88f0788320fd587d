package weft_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// limitsClient is a client on a fresh SQLite file with the limits named
// defined (a cap of 1 each, reject for "exports"), and workers ws.
func limitsClient(t *testing.T, ws *weft.Workers, names ...string) *weft.Client {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "weft.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c, err := weft.NewClient(st, &weft.Config{Workers: ws})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		l := weft.Limit{Name: n, Concurrency: 1}
		if n == "exports" {
			l.OnLimit = weft.OnLimitReject
		}
		if _, err := c.SetLimit(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// regionArgs carry defaults of their own: the region limit under "us".
type regionArgs struct {
	Customer string `json:"customer"`
}

func (regionArgs) Kind() string { return "test.region" }

func (regionArgs) EnqueueOpts() weft.EnqueueOpts {
	return weft.EnqueueOpts{Limits: map[string]string{"region": "us"}, Requires: map[string]string{"region": "us"}}
}

// The layers of a task's limits: the kind derives keys from the args, the
// args' own defaults beat them, the enqueue's options beat both, limit by
// limit, and an empty key takes the task out of a limit.
func TestLimitKeysPrecedence(t *testing.T) {
	ctx := context.Background()
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(context.Context, *weft.Task[regionArgs]) error { return nil },
		weft.WithLimitKeys(func(a regionArgs) map[string]string {
			return map[string]string{"per-customer": a.Customer, "region": "eu", "tier": "gold"}
		}))
	c := limitsClient(t, ws, "per-customer", "region", "tier")
	for _, tc := range []struct {
		name     string
		args     weft.TaskArgs
		opts     *weft.EnqueueOpts
		limits   map[string]string
		requires []store.Requirement
	}{
		{"derived, under the args' defaults", regionArgs{Customer: "acme"}, nil,
			map[string]string{"per-customer": "acme", "region": "us", "tier": "gold"}, []store.Requirement{{Label: "region", Op: "=", Value: "us"}}},
		{"args given by pointer", &regionArgs{Customer: "globex"}, nil,
			map[string]string{"per-customer": "globex", "region": "us", "tier": "gold"}, []store.Requirement{{Label: "region", Op: "=", Value: "us"}}},
		{"the enqueue beats both, and an empty key drops a limit", regionArgs{Customer: "acme"},
			&weft.EnqueueOpts{Limits: map[string]string{"per-customer": "vip", "tier": ""}, Requires: map[string]string{"region": "", "mem": ">=64"}},
			map[string]string{"per-customer": "vip", "region": "us"}, []store.Requirement{{Label: "mem", Op: ">=", Value: "64"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Enqueue(ctx, tc.args, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, res.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.LimitKeys, tc.limits) || !reflect.DeepEqual(got.Requires, tc.requires) {
				t.Fatalf("limits %v, requires %v; want %v, %v", got.LimitKeys, got.Requires, tc.limits, tc.requires)
			}
		})
	}
	// Flow steps take the same options and derivations.
	fr, err := c.EnqueueFlow(ctx, weft.NewFlow("exports").
		Add("a", regionArgs{Customer: "acme"}).
		Add("b", regionArgs{Customer: "globex"}, weft.After("a"), weft.WithOpts(&weft.EnqueueOpts{Limits: map[string]string{"tier": ""}})))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]map[string]string{
		"a": {"per-customer": "acme", "region": "us", "tier": "gold"},
		"b": {"per-customer": "globex", "region": "us"},
	} {
		got, err := c.Get(ctx, fr.Tasks[key])
		if err != nil || !reflect.DeepEqual(got.LimitKeys, want) {
			t.Fatalf("step %s: limits %v, %v; want %v", key, got.LimitKeys, err, want)
		}
	}
	// A bad requirement in a step names the step.
	var ve *weft.ValidationError
	_, err = c.EnqueueFlow(ctx, weft.NewFlow("bad").Add("a", regionArgs{}, weft.WithOpts(&weft.EnqueueOpts{Requires: map[string]string{"mem": "<=x"}})))
	if !errors.As(err, &ve) || ve.Field != "tasks[0].requires" {
		t.Fatalf("a bad requirement in a flow: %v", err)
	}

	// A client that did not register the kind derives nothing.
	bare, err := weft.NewClient(c.Store(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bare.Enqueue(ctx, regionArgs{Customer: "acme"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := bare.Get(ctx, res.ID); !reflect.DeepEqual(got.LimitKeys, map[string]string{"region": "us"}) {
		t.Fatalf("without the kind: limits %v, want the args' defaults only", got.LimitKeys)
	}
}

func TestWithLimitKeysOfAnotherType(t *testing.T) {
	defer func() {
		if r := fmt.Sprint(recover()); !strings.Contains(r, "WithLimitKeys") || !strings.Contains(r, "weft_test.regionArgs") {
			t.Fatalf("panic %q, want one naming WithLimitKeys and the worker's args type", r)
		}
	}()
	weft.AddWorkerFunc(weft.NewWorkers(), func(context.Context, *weft.Task[regionArgs]) error { return nil },
		weft.WithLimitKeys(func(ExportArgs) map[string]string { return nil }))
}

// Bad input is refused before anything is written, naming the field; the
// store's limit errors come through the re-exported sentinels.
func TestLimitErrors(t *testing.T) {
	ctx := context.Background()
	c := limitsClient(t, nil, "exports")
	var ve *weft.ValidationError
	for _, tc := range []struct {
		opts  weft.EnqueueOpts
		field string
	}{
		{weft.EnqueueOpts{Requires: map[string]string{"mem": ">=lots"}}, "requires"},
		{weft.EnqueueOpts{Requires: map[string]string{"9gpu": "true"}}, "requires"},
		{weft.EnqueueOpts{Limits: map[string]string{"nope": "a"}}, "limits"},
		{weft.EnqueueOpts{Cost: 2}, "cost"},
		{weft.EnqueueOpts{FairnessKey: strings.Repeat("k", 300)}, "fairness_key"},
	} {
		if _, err := c.Enqueue(ctx, ExportArgs{}, &tc.opts); !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%+v: %v, want a ValidationError on %s", tc.opts, err, tc.field)
		}
	}
	if _, err := c.SetLimit(ctx, weft.Limit{Name: "x", Rate: 10}); !errors.As(err, &ve) || ve.Field != "period" {
		t.Errorf("a rate without a period: %v", err)
	}
	if _, err := c.Limit(ctx, "nope"); !errors.Is(err, weft.ErrLimitNotFound) {
		t.Errorf("Limit of an unknown name: %v", err)
	}
	if err := c.DeleteLimit(ctx, "nope"); !errors.Is(err, weft.ErrLimitNotFound) {
		t.Errorf("DeleteLimit of an unknown name: %v", err)
	}
	if _, _, err := c.LimitKeys(ctx, "exports", "", 0); !errors.As(err, &ve) || ve.Field != "limit" {
		t.Errorf("LimitKeys with a page of 0: %v", err)
	}
	if _, err := weft.NewClient(c.Store(), &weft.Config{Labels: map[string]string{"9gpu": "true"}}); !errors.As(err, &ve) || ve.Field != "labels" {
		t.Errorf("a bad label: %v", err)
	}

	// A reject limit at its cap refuses the enqueue, naming the limit and
	// the key.
	opts := &weft.EnqueueOpts{Limits: map[string]string{"exports": "acme"}}
	if _, err := c.Enqueue(ctx, ExportArgs{}, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store().Claim(ctx, store.ClaimRequest{Owner: "w", LeaseTTL: time.Minute, Queues: []store.QueueClaim{{Queue: "default", Limit: 1}}}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Enqueue(ctx, ExportArgs{}, opts)
	var lr *weft.LimitReachedError
	if !errors.Is(err, weft.ErrLimitReached) || !errors.As(err, &lr) || lr.Limit != "exports" || lr.Key != "acme" || lr.InUse != 1 || lr.Cap != 1 {
		t.Fatalf("enqueue at the cap: %v (%+v)", err, lr)
	}
}

func TestFairnessWeights(t *testing.T) {
	ctx := context.Background()
	c := limitsClient(t, nil)
	if err := c.SetFairness(ctx, "reports", map[string]int{"acme": 3, "globex": 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetFairness(ctx, "reports", map[string]int{"globex": 0}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Fairness(ctx, "reports")
	if err != nil || !reflect.DeepEqual(w, map[string]int{"acme": 3}) {
		t.Fatalf("weights %v, %v", w, err)
	}
	var ve *weft.ValidationError
	if err := c.SetFairness(ctx, "reports", map[string]int{"acme": -1}); !errors.As(err, &ve) || ve.Field != "weights" {
		t.Fatalf("a negative weight: %v", err)
	}
}
