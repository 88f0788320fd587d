package store

import (
	"errors"
	"testing"
	"time"
)

func TestAdmitConcurrency(t *testing.T) {
	a := LimitRef{Limit: "a", Key: "x"}
	b := LimitRef{Limit: "b", Key: "y"}
	state := map[LimitRef]*Admission{
		a: {Limit: Limit{Name: "a", Concurrency: 2}, Defined: true, InUse: 1},
		b: {Limit: Limit{Name: "b", Concurrency: 1, Overrides: map[string]int{"y": 0}}, Defined: true},
	}
	if why := Admit(state, []LimitRef{a}, 1, 0); why != nil {
		t.Fatalf("a:x has room: %+v", why)
	}
	if state[a].InUse != 2 {
		t.Fatalf("admission did not take the slot: %d", state[a].InUse)
	}
	why := Admit(state, []LimitRef{a}, 1, 0)
	if why == nil || why.Reason != BlockedLimit || why.Limit != "a" || why.Key != "x" {
		t.Fatalf("a:x is full: %+v", why)
	}
	// An override of 0 stops the key; a refusal takes nothing.
	state[a].InUse = 0
	why = Admit(state, []LimitRef{a, b}, 1, 0)
	if why == nil || why.Limit != "b" || state[a].InUse != 0 {
		t.Fatalf("b:y is stopped: %+v, a in use %d", why, state[a].InUse)
	}
	// A deleted limit holds nothing back.
	state[b].Defined = false
	if why := Admit(state, []LimitRef{a, b}, 1, 0); why != nil {
		t.Fatalf("an undefined limit refused: %+v", why)
	}
}

func TestAdmitRate(t *testing.T) {
	r := LimitRef{Limit: "api", Key: "k"}
	l := Limit{Name: "api", Rate: 10, Period: time.Second, Burst: 3} // one unit per 100ms
	state := map[LimitRef]*Admission{r: {Limit: l, Defined: true}}
	now := int64(1_000_000_000)
	for i := range 3 {
		if why := Admit(state, []LimitRef{r}, 1, now); why != nil {
			t.Fatalf("burst unit %d refused: %+v", i, why)
		}
	}
	why := Admit(state, []LimitRef{r}, 1, now)
	if why == nil || why.Reason != BlockedRate || !why.Until.Equal(time.UnixMicro(now+100_000).UTC()) {
		t.Fatalf("after the burst: %+v, want the next unit in 100ms", why)
	}
	if got := NextAllowed(l, state[r].TAT, now); !got.Equal(why.Until) {
		t.Fatalf("NextAllowed = %v, want %v", got, why.Until)
	}
	if why := Admit(state, []LimitRef{r}, 1, now+99_999); why == nil {
		t.Fatal("admitted a microsecond early")
	}
	if why := Admit(state, []LimitRef{r}, 1, now+100_000); why != nil {
		t.Fatalf("refused at the exact time: %+v", why)
	}
	// A cost of 2 needs two units' room.
	if why := Admit(state, []LimitRef{r}, 2, now+200_000); why == nil || !why.Until.Equal(time.UnixMicro(now+300_000).UTC()) {
		t.Fatalf("cost 2 with one unit back: %+v", why)
	}
	// No double burst at a window edge: after a long idle spell, the
	// burst is 3, not more.
	later := now + 10_000_000
	n := 0
	for Admit(state, []LimitRef{r}, 1, later) == nil {
		n++
	}
	if n != 3 {
		t.Fatalf("after idling, %d at once, want the burst of 3", n)
	}
}

func TestHoldTAT(t *testing.T) {
	l := Limit{Name: "api", Rate: 10, Period: time.Second, Burst: 3}
	r := LimitRef{Limit: "api", Key: "k"}
	until := int64(5_000_000)
	state := map[LimitRef]*Admission{r: {Limit: l, Defined: true, TAT: HoldTAT(l, 0, until)}}
	if why := Admit(state, []LimitRef{r}, 1, until-1); why == nil || !why.Until.Equal(time.UnixMicro(until).UTC()) {
		t.Fatalf("during the hold: %+v", why)
	}
	if why := Admit(state, []LimitRef{r}, 1, until); why != nil {
		t.Fatalf("at the hold's end: %+v", why)
	}
}

func TestPrepareLimit(t *testing.T) {
	l, err := PrepareLimit(Limit{Name: "api", Rate: 5, Period: time.Minute})
	if err != nil || l.Burst != 1 || l.OnLimit != OnLimitQueue {
		t.Fatalf("defaults: %+v %v", l, err)
	}
	if _, err := PrepareLimit(Limit{Name: "api", Rate: 2_000_000, Period: time.Second}); err == nil {
		t.Fatal("a rate over one per microsecond was accepted")
	}
	if _, err := PrepareLimit(Limit{Name: "x", Concurrency: 1, Overrides: map[string]int{"a\x1fb": 1}}); err == nil {
		t.Fatal("a key with the separator was accepted")
	}
}

func TestRequirements(t *testing.T) {
	for _, c := range []struct {
		label, expr string
		labels      map[string]string
		want        bool
	}{
		{"gpu", "true", map[string]string{"gpu": "true"}, true},
		{"gpu", "true", map[string]string{"gpu": "false"}, false},
		{"gpu", "true", nil, false},
		{"mem", ">=64", map[string]string{"mem": "64"}, true},
		{"mem", ">= 64", map[string]string{"mem": "63.5"}, false},
		{"mem", "<=8", map[string]string{"mem": "8"}, true},
		{"mem", "<=8", map[string]string{"mem": "lots"}, false},
	} {
		r, err := ParseRequirement(c.label, c.expr)
		if err != nil {
			t.Fatalf("parse %s %q: %v", c.label, c.expr, err)
		}
		if got := r.Satisfied(c.labels); got != c.want {
			t.Errorf("%s %q with %v: %v, want %v", c.label, c.expr, c.labels, got, c.want)
		}
	}
	if _, err := ParseRequirement("mem", ">=lots"); err == nil {
		t.Fatal("a non-number after >= was accepted")
	}
	if _, err := ParseRequirement("bad label", "x"); err == nil {
		t.Fatal("a bad label was accepted")
	}
}

func TestFairStart(t *testing.T) {
	// A key that was idle starts at the virtual time, not at its old tag.
	start, finish := FairStart(50*FairnessQuantum, 3*FairnessQuantum, 1, 1)
	if start != 50*FairnessQuantum || finish != 51*FairnessQuantum {
		t.Fatalf("idle key: %d %d", start, finish)
	}
	// A heavier key advances more slowly.
	_, finish = FairStart(0, 0, 4, 1)
	if finish != FairnessQuantum/4 {
		t.Fatalf("weight 4: finish %d", finish)
	}
}

func TestCheckGate(t *testing.T) {
	for _, c := range []struct {
		task  NewTask
		field string
	}{
		{NewTask{Kind: "k", Cost: 1}, "cost"},
		{NewTask{Kind: "k", LimitKeys: map[string]string{"a": "x"}, Cost: MaxCost + 1}, "cost"},
		{NewTask{Kind: "k", LimitKeys: map[string]string{"9": "x"}}, "limits"},
		{NewTask{Kind: "k", Requires: []Requirement{{Label: "a", Op: "=", Value: "1"}, {Label: "a", Op: "=", Value: "2"}}}, "requires"},
		{NewTask{Kind: "k", Requires: []Requirement{{Label: "a", Op: "<", Value: "1"}}}, "requires"},
		{NewTask{Kind: "k", FairnessKey: string(make([]byte, MaxLimitKeyLength+1))}, "fairness_key"},
	} {
		_, err := Prepare([]NewTask{c.task}, Limits{}, time.Now())
		var verr *ValidationError
		if !errors.As(err, &verr) || verr.Field != c.field {
			t.Errorf("%+v: %v, want an error on %q", c.task, err, c.field)
		}
	}
	g := GateOf(NewTask{Kind: "k", Requires: []Requirement{{Label: "mem", Op: ">=", Value: "0"}}})
	if g == nil || len(g.Requires) != 1 || g.Requires[0].Num != 0 {
		t.Fatalf("gate: %+v", g)
	}
	if GateOf(NewTask{Kind: "k"}) != nil {
		t.Fatal("a plain task has a gate")
	}
}
