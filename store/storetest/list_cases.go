package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// Cases of store.Reader's List beyond filters: the order, keyset pages
// both ways, and the creation-time range.

var listCases = []testCase{
	{"newest first, paged both ways", testListOrder},
	{"by creation time", testListCreated},
	{"bad order and time range are refused", testListRefused},
}

// listIDs lists with p and returns the ids.
func listIDs(t *testing.T, e *env, p store.ListParams) []string {
	t.Helper()
	tasks, err := e.st.List(e.ctx, p)
	if err != nil {
		t.Fatalf("list %+v: %v", p, err)
	}
	ids := make([]string, len(tasks))
	for i, task := range tasks {
		ids[i] = task.ID
	}
	return ids
}

func testListOrder(t *testing.T, e *env) {
	var ids []string
	for range 5 {
		ids = append(ids, e.enqueue(t, store.NewTask{Kind: "k", Queue: "o"})[0].ID)
	}
	e.enqueue(t, store.NewTask{Kind: "k", Queue: "other"})
	oldest := listIDs(t, e, store.ListParams{Queue: "o", Order: store.ListOldest})
	if !slices.Equal(oldest, ids) || !slices.Equal(listIDs(t, e, store.ListParams{Queue: "o"}), ids) {
		t.Fatalf("oldest first = %v, want %v", oldest, ids)
	}
	newest := slices.Clone(ids)
	slices.Reverse(newest)
	for _, order := range []store.ListOrder{store.ListNewest, store.ListOldest} {
		want := ids
		if order == store.ListNewest {
			want = newest
		}
		var got []string
		after := ""
		for {
			page := listIDs(t, e, store.ListParams{Queue: "o", Order: order, Limit: 2, After: after})
			got = append(got, page...)
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s first, paged by 2 = %v, want %v", order, got, want)
		}
	}
}

func testListCreated(t *testing.T, e *env) {
	t0 := e.clock.Freeze()
	a := e.enqueue(t, store.NewTask{Kind: "k", Queue: "t"})[0].ID
	e.clock.Advance(time.Minute)
	t1 := e.now()
	b := e.enqueue(t, store.NewTask{Kind: "k", Queue: "t"})[0].ID
	e.clock.Advance(time.Minute)
	c := e.enqueue(t, store.NewTask{Kind: "k", Queue: "t"})[0].ID
	for _, tc := range []struct {
		since, until time.Time
		want         []string
	}{
		{t0, time.Time{}, []string{a, b, c}},
		{t1, time.Time{}, []string{b, c}},
		{time.Time{}, t1, []string{a}},
		{t1, t1.Add(time.Minute), []string{b}},
		{t1.Add(time.Microsecond), t1.Add(time.Minute), nil},
	} {
		got := listIDs(t, e, store.ListParams{Queue: "t", CreatedSince: tc.since, CreatedUntil: tc.until})
		if !slices.Equal(got, tc.want) {
			t.Fatalf("created since %v until %v = %v, want %v", tc.since, tc.until, got, tc.want)
		}
	}
	if got := listIDs(t, e, store.ListParams{CreatedSince: t1, Order: store.ListNewest}); !slices.Equal(got, []string{c, b}) {
		t.Fatalf("newest since t1 = %v", got)
	}
}

func testListRefused(t *testing.T, e *env) {
	now := e.now()
	for _, tc := range []struct {
		p     store.ListParams
		field string
	}{
		{store.ListParams{Order: "sideways"}, "order"},
		{store.ListParams{CreatedSince: now, CreatedUntil: now.Add(-time.Second)}, "created_until"},
		{store.ListParams{Queue: "bad/queue"}, "queue"},
		{store.ListParams{States: []store.State{"sleeping"}}, "states"},
	} {
		tasks, err := e.st.List(e.ctx, tc.p)
		var ve *store.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || tasks != nil {
			t.Fatalf("list %+v: %v, %v; want a ValidationError on %s", tc.p, tasks, err, tc.field)
		}
	}
}
