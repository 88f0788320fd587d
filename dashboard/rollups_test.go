package dashboard

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// TestRollupCache: reads through the cache give what the store gives,
// for ranges inside, before and across what was cached, while new rows
// keep coming.
func TestRollupCache(t *testing.T) {
	ctx := context.Background()
	_, st := testenv.SQLite(t)
	d, err := New(Config{Client: testenv.Client(t, st), Logger: testenv.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Minute)
	cursor := int64(0)
	add := func(from, to time.Duration) {
		var rows []store.Rollup
		for m := now.Add(-from); m.Before(now.Add(-to)) || m.Equal(now.Add(-to)); m = m.Add(time.Minute) {
			rows = append(rows, store.Rollup{Minute: m.UTC(), Queue: "q", Kind: "k", Completed: 1})
		}
		if ok, err := st.AddRollups(ctx, cursor, cursor+1, rows); err != nil || !ok {
			t.Fatal(ok, err)
		}
		cursor++
	}
	check := func(since time.Time) {
		t.Helper()
		got, err := d.rollups(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		want, err := st.ReadRollups(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 && len(want) == 0 {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("since %v: %d rows through the cache, %d from the store", since, len(got), len(want))
		}
	}
	add(60*time.Minute, 0)
	check(now.Add(-30 * time.Minute)) // fills the cache
	check(now.Add(-20 * time.Minute)) // inside it
	add(0, 0)                         // the current minute grows
	check(now.Add(-25 * time.Minute))
	check(now.Add(-50 * time.Minute)) // before it: read again
	check(now.Add(-5 * time.Minute))  // past its end: read again
	check(now.Add(-40 * time.Minute))
}
