package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

// The Tasks page searches with the store's listing (queue, kind, states,
// in id order) and filters the rest here: the time range, error text and
// an args field. Task ids are UUIDv7, whose first 48 bits are the
// creation time in milliseconds, so a time range is a range of ids, read
// on the id index; newest-first reads windows of ids backwards. A search
// examines at most a budget of tasks per page, so a filter that matches
// little never scans the table: the page then says how far it got, and
// "more" goes on from there.

// taskFilter is the Tasks page's filter.
type taskFilter struct {
	Queue, Kind  string
	States       []store.State
	Since, Until time.Time
	// Error keeps tasks with an attempt error containing it (any case).
	Error string
	// ArgPath and ArgValue keep tasks whose args have ArgValue (a JSON
	// value, or else a string) at ArgPath ("user.id", "$.items[0].sku").
	ArgPath, ArgValue string
	Newest            bool

	argPath  []any // parsed ArgPath: string keys and int indexes
	argValue any
}

// timeLayouts are the time forms the filter takes: the browser's
// datetime-local input, and RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339}

// parseFilter reads the filter from a query.
func parseFilter(q url.Values) (taskFilter, error) {
	f := taskFilter{Queue: strings.TrimSpace(q.Get("queue")), Kind: strings.TrimSpace(q.Get("kind")),
		Error: strings.TrimSpace(q.Get("error")), ArgPath: strings.TrimSpace(q.Get("arg_path")), ArgValue: strings.TrimSpace(q.Get("arg_value")),
		Newest: q.Get("order") != "oldest"}
	if f.Queue != "" && !store.ValidName(f.Queue) {
		return f, userErrorf("%q is not a valid queue name", f.Queue)
	}
	if f.Kind != "" && !store.ValidName(f.Kind) {
		return f, userErrorf("%q is not a valid kind name", f.Kind)
	}
	for _, s := range q["state"] {
		for _, name := range strings.Split(s, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			st := store.State(name)
			if !st.Valid() {
				return f, userErrorf("%q is not a state (%s)", name, store.StateNames(store.States(), ", "))
			}
			f.States = append(f.States, st)
		}
	}
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, userErrorf("the end of the time range is not after its start")
	}
	if f.ArgPath != "" {
		if f.argPath, err = parsePath(f.ArgPath); err != nil {
			return f, err
		}
		if err := json.Unmarshal([]byte(f.ArgValue), &f.argValue); err != nil {
			f.argValue = f.ArgValue // not JSON: a string
		}
	}
	return f, nil
}

func parseTime(v string) (time.Time, error) {
	if v = strings.TrimSpace(v); v == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, userErrorf("%q is not a time (2006-01-02T15:04 in UTC, or RFC 3339)", v)
}

// parsePath reads a JSON path of keys and [n] indexes, with an optional
// leading "$.".
func parsePath(p string) ([]any, error) {
	p = strings.TrimPrefix(strings.TrimPrefix(p, "$"), ".")
	var out []any
	for _, part := range strings.Split(p, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			out = append(out, key)
		}
		for rest != "" {
			n, after, ok := strings.Cut(rest, "]")
			i, err := strconv.Atoi(n)
			if !ok || err != nil || i < 0 {
				return nil, userErrorf("%q is not a path of keys and [n] indexes (user.id, items[0].sku)", p)
			}
			out = append(out, i)
			rest = strings.TrimPrefix(after, "[")
		}
		if key == "" && len(out) == 0 {
			return nil, userErrorf("%q is not a path of keys and [n] indexes (user.id, items[0].sku)", p)
		}
	}
	return out, nil
}

// values is the filter as a query, for links that keep it.
func (f taskFilter) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("queue", f.Queue)
	set("kind", f.Kind)
	for _, s := range f.States {
		v.Add("state", string(s))
	}
	if !f.Since.IsZero() {
		v.Set("since", f.Since.Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		v.Set("until", f.Until.Format(time.RFC3339))
	}
	set("error", f.Error)
	set("arg_path", f.ArgPath)
	set("arg_value", f.ArgValue)
	if !f.Newest {
		v.Set("order", "oldest")
	}
	return v
}

// HasState says whether the filter selects s.
func (f taskFilter) HasState(s store.State) bool {
	for _, x := range f.States {
		if x == s {
			return true
		}
	}
	return false
}

// SinceInput and UntilInput are the range as a datetime-local input
// shows it.
func (f taskFilter) SinceInput() string { return inputTime(f.Since) }

// UntilInput is the end of the range for its input.
func (f taskFilter) UntilInput() string { return inputTime(f.Until) }

func inputTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04")
}

// matches applies the filters the store's listing does not.
func (f taskFilter) matches(t *store.Task) bool {
	if !f.Since.IsZero() && t.CreatedAt.Before(f.Since) || !f.Until.IsZero() && !t.CreatedAt.Before(f.Until) {
		return false
	}
	if f.Error != "" {
		found := false
		for _, e := range t.Errors {
			if containsFold(e.Error, f.Error) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if f.argPath != nil {
		var args any
		if json.Unmarshal(t.Args, &args) != nil {
			return false
		}
		for _, step := range f.argPath {
			switch s := step.(type) {
			case string:
				m, ok := args.(map[string]any)
				if !ok {
					return false
				}
				args = m[s]
			case int:
				a, ok := args.([]any)
				if !ok || s >= len(a) {
					return false
				}
				args = a[s]
			}
		}
		if !reflect.DeepEqual(args, f.argValue) {
			return false
		}
	}
	return true
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// minID is the smallest UUIDv7 of the millisecond of t: every id made at
// or after t sorts after it.
func minID(t time.Time) string {
	ms := max(t.UnixMilli(), 0)
	return fmt.Sprintf("%08x-%04x-7000-8000-000000000000", uint64(ms)>>16, uint64(ms)&0xffff)
}

// idTime is the creation time a UUIDv7 carries; ok is false for ids of
// other versions (given by the application).
func idTime(id string) (time.Time, bool) {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return time.Time{}, false
	}
	var b [8]byte
	copy(b[2:], u[:6])
	ms := int64(0)
	for _, x := range b {
		ms = ms<<8 | int64(x)
	}
	return time.UnixMilli(ms).UTC(), true
}

// searchPage is one page of a search.
type searchPage struct {
	Tasks []*store.Task
	// Next is the cursor of the next page; "" at the end.
	Next string
	// Scanned counts the tasks examined; Cut is set when the budget ran
	// out before the page was full, and Reached is then how far (in
	// creation time) the search got.
	Scanned int
	Cut     bool
	Reached time.Time
	// OldestFirst is set when newest first was asked for and cannot be
	// had: the table has task ids that the application chose, which are
	// not ordered by time.
	OldestFirst bool
}

// listPage is the store's page size for scans.
const listPage = 1000

// lowestID sorts before every task id. A listing starts after it rather
// than with no cursor: with a filter and no lower bound on the id, SQLite
// may plan a scan and a sort of the whole table instead of a walk of the
// id index.
const lowestID = "00000000-0000-0000-0000-000000000000"

// search reads one page of at most limit tasks matching f after cursor,
// examining at most budget tasks.
func (d *Dashboard) search(ctx context.Context, f taskFilter, cursor string, limit, budget int) (searchPage, error) {
	if cursor != "" {
		if _, err := uuid.Parse(cursor); err != nil {
			return searchPage{}, userErrorf("not a cursor from a previous page")
		}
	}
	if f.Newest {
		return d.searchNewest(ctx, f, cursor, limit, budget)
	}
	after := cursor
	switch {
	case after == "" && !f.Since.IsZero():
		after = minID(f.Since)
	case after == "":
		after = lowestID
	}
	var untilID string
	if !f.Until.IsZero() {
		untilID = minID(f.Until)
	}
	var p searchPage
	// Without filters of its own, the store's page is the page.
	size := listPage
	if !f.postFiltered() {
		size = limit
	}
	for {
		tasks, err := d.st.List(ctx, store.ListParams{Queue: f.Queue, Kind: f.Kind, States: f.States, After: after, Limit: size})
		if err != nil {
			return p, err
		}
		for _, t := range tasks {
			if untilID != "" && t.ID >= untilID {
				return p, nil
			}
			p.Scanned++
			if f.matches(t) {
				p.Tasks = append(p.Tasks, t)
				if len(p.Tasks) == limit {
					p.Next = t.ID
					return p, nil
				}
			}
			after = t.ID
			if p.Scanned >= budget {
				p.Next, p.Cut = after, true
				p.Reached, _ = idTime(after)
				return p, nil
			}
		}
		if len(tasks) < size {
			return p, nil
		}
	}
}

// postFiltered says whether matches filters anything out.
func (f taskFilter) postFiltered() bool {
	return !f.Since.IsZero() || !f.Until.IsZero() || f.Error != "" || f.argPath != nil
}

// searchNewest reads newest first: windows of ids before the cursor (or
// the end of the range), read oldest first and taken from their end,
// each window further back and wider than the last while they come back
// sparse, narrower when one holds too many tasks.
func (d *Dashboard) searchNewest(ctx context.Context, f taskFilter, cursor string, limit, budget int) (searchPage, error) {
	var p searchPage
	hi := cursor
	hiT := time.Now().Add(time.Minute)
	if !f.Until.IsZero() {
		hiT = f.Until
	}
	if hi == "" {
		hi = minID(hiT)
	} else if t, ok := idTime(hi); ok {
		hiT = t
	}
	oldest, err := d.st.List(ctx, store.ListParams{Queue: f.Queue, Kind: f.Kind, States: f.States, After: lowestID, Limit: 1})
	if err != nil || len(oldest) == 0 {
		return p, err
	}
	// Ids the application chose are not time-ordered: windows of time
	// cannot find them, so such a table is listed oldest first.
	first, ok := idTime(oldest[0].ID)
	if !ok {
		f.Newest = false
		p, err := d.search(ctx, f, cursor, limit, budget)
		p.OldestFirst = true
		return p, err
	}
	floor := first.Add(-time.Millisecond)
	if !f.Since.IsZero() && f.Since.After(floor) {
		floor = f.Since
	}
	w := 100 * time.Millisecond
	for hiT.After(floor) {
		loT := hiT.Add(-w)
		if loT.Before(floor) {
			loT = floor
		}
		lo := minID(loT)
		capN := max(4*limit, 200)
		if w <= time.Millisecond {
			capN = 0 // as narrow as ids go: read it whole
		}
		win, n, dense, err := d.window(ctx, f, lo, hi, capN)
		p.Scanned += n
		if err != nil {
			return p, err
		}
		if dense {
			w /= 16 // too many tasks in the window: read a narrower one
			continue
		}
		for i := len(win) - 1; i >= 0; i-- {
			p.Tasks = append(p.Tasks, win[i])
			if len(p.Tasks) == limit {
				p.Next = win[i].ID
				return p, nil
			}
		}
		hi, hiT = lo, loT
		if p.Scanned >= budget {
			p.Next, p.Cut, p.Reached = hi, true, hiT
			return p, nil
		}
		if n < limit {
			w *= 4
		}
	}
	return p, nil
}

// window reads the tasks with ids in (lo, hi) matching f, oldest first.
// dense is set, with nothing read, when the window holds more than capN
// tasks (a cap of 0 has no bound).
func (d *Dashboard) window(ctx context.Context, f taskFilter, lo, hi string, capN int) (out []*store.Task, n int, dense bool, err error) {
	after := lo
	// The listing has no upper bound, so what it reads past hi is
	// wasted: pages start small and grow while they stay in the window.
	size := 64
	for {
		tasks, err := d.st.List(ctx, store.ListParams{Queue: f.Queue, Kind: f.Kind, States: f.States, After: after, Limit: size})
		if err != nil {
			return nil, n, false, err
		}
		for _, t := range tasks {
			if t.ID >= hi {
				return out, n, false, nil
			}
			n++
			if capN > 0 && n > capN {
				return nil, n, true, nil
			}
			if f.matches(t) {
				out = append(out, t)
			}
			after = t.ID
		}
		if len(tasks) < size {
			return out, n, false, nil
		}
		size = min(2*size, listPage)
	}
}
