package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Page sizes and bounds.
const (
	// taskPageSize is the Tasks page's length.
	taskPageSize = 50
	// searchBudget bounds the tasks one Tasks page examines.
	searchBudget = 2_500
	// eventLimit bounds the events a task's timeline shows.
	eventLimit = 1000
	// idleAfter is how long without a started attempt of a kind makes the
	// "why is this not running?" panel say no worker took it.
	idleAfter = 10 * time.Minute
)

// overviewData is the Overview page.
type overviewData struct {
	Range       string
	Ranges      []string
	Queue, Kind string
	Queues      []string
	Kinds       []string
	Throughput  template.HTML
	Failures    template.HTML
	Wait, Run   template.HTML
	Totals      []kindTotal
	Stats       []store.QueueStats
}

// kindTotal sums one queue and kind over the range.
type kindTotal struct {
	Queue, Kind                                     string
	Enqueued, Completed, Failed, Retried, Cancelled int64
	WaitP50, WaitP95, RunP50, RunP95, RunP99        time.Duration
}

var ranges = map[string]time.Duration{"1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func (d *Dashboard) overview(r *http.Request) (*view, error) {
	ctx := r.Context()
	q := r.URL.Query()
	rng := q.Get("range")
	span, ok := ranges[rng]
	if !ok {
		rng, span = "1h", time.Hour
	}
	data := overviewData{Range: rng, Ranges: []string{"1h", "6h", "24h", "7d"}, Queue: q.Get("queue"), Kind: q.Get("kind")}
	now := time.Now().UTC()
	// Points: 60 per chart, each a whole number of minutes.
	step := max(span/60, time.Minute)
	start := now.Add(-span).Truncate(step)
	rows, err := d.rollups(ctx, start)
	if err != nil {
		return nil, err
	}
	stats, err := d.st.Stats(ctx)
	if err != nil {
		return nil, err
	}
	data.Stats = stats
	n := int(now.Sub(start)/step) + 1
	buckets := make([]store.Rollup, n)
	totals := map[[2]string]*store.Rollup{}
	queues, kinds := map[string]bool{}, map[string]bool{}
	for _, ro := range rows {
		queues[ro.Queue], kinds[ro.Kind] = true, true
		if data.Queue != "" && ro.Queue != data.Queue || data.Kind != "" && ro.Kind != data.Kind {
			continue
		}
		i := int(ro.Minute.Sub(start) / step)
		if i < 0 || i >= n {
			continue
		}
		buckets[i].Add(ro)
		k := [2]string{ro.Queue, ro.Kind}
		if totals[k] == nil {
			totals[k] = &store.Rollup{Queue: ro.Queue, Kind: ro.Kind}
		}
		totals[k].Add(ro)
	}
	for _, qs := range stats {
		queues[qs.Queue] = true
	}
	data.Queues, data.Kinds = sortedKeys(queues), sortedKeys(kinds)
	xs := make([]time.Time, n)
	perMin := float64(step / time.Minute)
	rate := func(f func(store.Rollup) int64) []float64 {
		out := make([]float64, n)
		for i, b := range buckets {
			out[i] = float64(f(b)) / perMin
		}
		return out
	}
	quant := func(f func(store.Rollup) store.Histogram, p float64) []float64 {
		out := make([]float64, n)
		for i, b := range buckets {
			out[i] = f(b).Quantile(p).Seconds()
		}
		return out
	}
	for i := range xs {
		xs[i] = start.Add(time.Duration(i) * step)
	}
	data.Throughput = chartSVG(xs, "per minute", []series{
		{"enqueued", rate(func(r store.Rollup) int64 { return r.Enqueued })},
		{"completed", rate(func(r store.Rollup) int64 { return r.Completed })},
	}, false)
	data.Failures = chartSVG(xs, "per minute", []series{
		{"failed", rate(func(r store.Rollup) int64 { return r.Failed })},
		{"retried", rate(func(r store.Rollup) int64 { return r.Retried })},
		{"cancelled", rate(func(r store.Rollup) int64 { return r.Cancelled })},
	}, false)
	wait := func(r store.Rollup) store.Histogram { return r.Wait }
	run := func(r store.Rollup) store.Histogram { return r.Run }
	data.Wait = chartSVG(xs, "seconds", []series{{"p50", quant(wait, 0.5)}, {"p95", quant(wait, 0.95)}, {"p99", quant(wait, 0.99)}}, true)
	data.Run = chartSVG(xs, "seconds", []series{{"p50", quant(run, 0.5)}, {"p95", quant(run, 0.95)}, {"p99", quant(run, 0.99)}}, true)
	for _, t := range totals {
		data.Totals = append(data.Totals, kindTotal{Queue: t.Queue, Kind: t.Kind, Enqueued: t.Enqueued, Completed: t.Completed,
			Failed: t.Failed, Retried: t.Retried, Cancelled: t.Cancelled,
			WaitP50: t.Wait.Quantile(0.5), WaitP95: t.Wait.Quantile(0.95),
			RunP50: t.Run.Quantile(0.5), RunP95: t.Run.Quantile(0.95), RunP99: t.Run.Quantile(0.99)})
	}
	sort.Slice(data.Totals, func(i, j int) bool {
		a, b := data.Totals[i], data.Totals[j]
		return a.Queue < b.Queue || a.Queue == b.Queue && a.Kind < b.Kind
	})
	return &view{Title: "Overview", Nav: "overview", Live: "*", Data: data}, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// queueRow is one line of the Queues page.
type queueRow struct {
	store.QueueStats
	Total     int64
	OldestAge time.Duration
	// PerMinute is the completions per minute over the last five minutes.
	PerMinute float64
}

func (d *Dashboard) queuesPage(r *http.Request) (*view, error) {
	ctx := r.Context()
	stats, err := d.st.Stats(ctx)
	if err != nil {
		return nil, err
	}
	const rateSpan = 5 * time.Minute
	rows, err := d.st.ReadRollups(ctx, time.Now().Add(-rateSpan).Truncate(time.Minute))
	if err != nil {
		return nil, err
	}
	done := map[string]int64{}
	for _, ro := range rows {
		done[ro.Queue] += ro.Completed + ro.Failed
	}
	out := make([]queueRow, len(stats))
	for i, qs := range stats {
		out[i] = queueRow{QueueStats: qs, PerMinute: float64(done[qs.Queue]) / rateSpan.Minutes()}
		for _, n := range qs.Counts {
			out[i].Total += n
		}
		if !qs.OldestReadyAt.IsZero() {
			out[i].OldestAge = time.Since(qs.OldestReadyAt)
		}
	}
	return &view{Title: "Queues", Nav: "queues", Live: "*", Data: out}, nil
}

// tasksData is the Tasks page.
type tasksData struct {
	Filter taskFilter
	Query  string // the filter as a query string
	Page   searchPage
	Cursor string
	// Preview, when set, asks to confirm an action on everything the
	// filter matches: Count tasks (AtLeast when the count stopped).
	Preview *preview
	Actions []string
}

type preview struct {
	Action  string
	Count   int
	AtLeast bool
}

func (d *Dashboard) tasksPage(r *http.Request) (*view, error) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		return nil, err
	}
	cursor := q.Get("cursor")
	page, err := d.search(r.Context(), f, cursor, taskPageSize, searchBudget)
	if err != nil {
		return nil, err
	}
	data := tasksData{Filter: f, Query: f.values().Encode(), Page: page, Cursor: cursor, Actions: d.actions()}
	if a := q.Get("preview"); a != "" {
		if !slices.Contains(data.Actions, a) {
			return nil, userErrorf("%q is not an action (%v)", a, data.Actions)
		}
		ids, atLeast, err := d.matching(r.Context(), f, a)
		if err != nil {
			return nil, err
		}
		data.Preview = &preview{Action: a, Count: len(ids), AtLeast: atLeast}
	}
	return &view{Title: "Tasks", Nav: "tasks", Live: "*", Data: data}, nil
}

// why is one reason the "why is this not running?" panel gives.
type why struct {
	Text string
	// Tasks are related tasks to link to (a flow's unfinished parents).
	Tasks []store.FlowMember
	// Limit names a limit to link to (the one holding the task back).
	Limit string
}

// taskData is the task page.
type taskData struct {
	Task       *store.Task
	Events     []store.Event
	Progress   json.RawMessage
	Why        []why
	Waitpoints []store.Waitpoint
	Flow       *store.Flow
}

func (d *Dashboard) taskPage(r *http.Request) (*view, error) {
	ctx := r.Context()
	id := r.PathValue("id")
	t, err := d.st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	evs, err := d.st.Events(ctx, id, 0, eventLimit)
	if err != nil {
		return nil, err
	}
	data := taskData{Task: t, Events: evs}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == store.EventProgress {
			data.Progress = evs[i].Data
			break
		}
	}
	if data.Waitpoints, err = d.st.Waitpoints(ctx, id); err != nil {
		return nil, err
	}
	if t.FlowID != "" {
		if data.Flow, err = d.st.Flow(ctx, t.FlowID); err != nil && !errors.Is(err, store.ErrFlowNotFound) {
			return nil, err
		}
	}
	if data.Why, err = d.whyNotRunning(ctx, t, data.Waitpoints); err != nil {
		return nil, err
	}
	return &view{Title: "Task " + shortID(id), Nav: "task", Live: id, Data: data}, nil
}

// whyNotRunning explains what a task that is not running waits for.
func (d *Dashboard) whyNotRunning(ctx context.Context, t *store.Task, wps []store.Waitpoint) ([]why, error) {
	var out []why
	now := time.Now()
	switch t.State {
	case store.StatePending:
		if t.RunAt.After(now) {
			out = append(out, why{Text: "Scheduled for later: it becomes ready at " + fmtTime(t.RunAt) + " (in " + fmtDur(t.RunAt.Sub(now)) + ")."})
		}
		stats, err := d.st.Stats(ctx)
		if err != nil {
			return nil, err
		}
		for _, qs := range stats {
			if qs.Queue == t.Queue && qs.Paused {
				out = append(out, why{Text: "Its queue, " + t.Queue + ", is paused: resume it on the Queues page."})
			}
		}
		rows, err := d.st.ReadRollups(ctx, now.Add(-idleAfter))
		if err != nil {
			return nil, err
		}
		var started int64
		for _, ro := range rows {
			if ro.Queue == t.Queue && ro.Kind == t.Kind {
				started += ro.Wait.Count()
			}
		}
		if started == 0 && !t.RunAt.After(now) {
			out = append(out, why{Text: "No worker has started a task of kind " + t.Kind + " on queue " + t.Queue + " in the last " + fmtDur(idleAfter) + ": is a worker running for this kind and queue?"})
		}
		held, err := d.heldBack(ctx, t)
		if err != nil {
			return nil, err
		}
		if held != nil {
			out = append(out, *held)
		}
		if t.CancelRequested {
			out = append(out, why{Text: "Its cancellation was requested."})
		}
	case store.StateBlocked:
		members, err := d.st.FlowMembers(ctx, t.FlowID)
		if err != nil {
			return nil, err
		}
		byKey := map[string]store.FlowMember{}
		var self store.FlowMember
		for _, m := range members {
			byKey[m.Key] = m
			if m.TaskID == t.ID {
				self = m
			}
		}
		var open []store.FlowMember
		for _, k := range self.DependsOn {
			if p, ok := byKey[k]; ok && !p.State.Terminal() {
				open = append(open, p)
			}
		}
		out = append(out, why{Text: "Waiting for its dependencies (join " + string(self.Join) + "); these parents are not final yet:", Tasks: open})
	case store.StateWaiting:
		for _, wp := range wps {
			if wp.State != store.WaitpointOpen {
				continue
			}
			s := "Waiting for a signal on waitpoint " + wp.Name
			if len(wp.Allow) > 0 {
				s += " (takes " + joinStrings(wp.Allow) + ")"
			}
			if !wp.ExpiresAt.IsZero() {
				s += ", until " + fmtTime(wp.ExpiresAt)
			}
			out = append(out, why{Text: s + "; " + strconv.Itoa(len(wp.Signals)) + " signal(s) received."})
		}
		if len(out) == 0 {
			out = append(out, why{Text: "Waiting for a signal."})
		}
	}
	return out, nil
}

// heldBack is the reason a limit, a rate or the lack of a worker with its
// labels holds the pending task t back, as the API's blocked_reason says
// it (ops.Service.Explain); nil when none does. A paused queue is said
// already.
func (d *Dashboard) heldBack(ctx context.Context, t *store.Task) (*why, error) {
	_, b, err := d.ops.Explain(ctx, t)
	if err != nil || b == nil {
		return nil, err
	}
	text := b.Describe(time.UTC)
	switch b.Reason {
	case store.BlockedLimit, store.BlockedRate:
		if b.Until != nil {
			text += " (in " + fmtDur(time.Until(*b.Until)) + ")"
		}
		return &why{Text: upperFirst(text) + ".", Limit: b.Limit}, nil
	case store.BlockedNoMatchingWorker:
		return &why{Text: upperFirst(text) + " (" + api.RequirementsText(api.FromRequirements(t.Requires)) + "): see the Workers page."}, nil
	}
	return nil, nil
}

// upperFirst capitalises a sentence's first letter.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func joinStrings(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

func (d *Dashboard) schedulesPage(r *http.Request) (*view, error) {
	scs, err := d.st.Schedules(r.Context())
	if err != nil {
		return nil, err
	}
	return &view{Title: "Schedules", Nav: "schedules", Live: "*", Data: scs}, nil
}

// workersData is the Workers page.
type workersData struct {
	Nodes []nodeRow
	// Remote are the remote workers seen recently, from their claims.
	Remote []store.RemoteWorker
	// Owners are the lease owners of running tasks, nodes and remote
	// workers alike, with how many each holds.
	Owners []ownerRow
}

type nodeRow struct {
	store.Node
	Alive bool
}

type ownerRow struct {
	Owner   string
	Running int
}

func (d *Dashboard) workersPage(r *http.Request) (*view, error) {
	ctx := r.Context()
	nodes, err := d.st.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var data workersData
	for _, n := range nodes {
		data.Nodes = append(data.Nodes, nodeRow{Node: n, Alive: time.Since(n.HeartbeatAt) < time.Minute})
	}
	if data.Remote, err = d.st.RemoteWorkers(ctx); err != nil {
		return nil, err
	}
	running, err := d.st.List(ctx, store.ListParams{States: []store.State{store.StateRunning}, Limit: listPage})
	if err != nil {
		return nil, err
	}
	owners := map[string]int{}
	for _, t := range running {
		owners[t.LeaseOwner]++
	}
	for o, n := range owners {
		data.Owners = append(data.Owners, ownerRow{Owner: o, Running: n})
	}
	sort.Slice(data.Owners, func(i, j int) bool { return data.Owners[i].Owner < data.Owners[j].Owner })
	return &view{Title: "Workers", Nav: "workers", Live: "*", Data: data}, nil
}

// flowsData is the Flows page.
type flowsData struct {
	Flows  []*store.Flow
	Next   string
	Cursor string
	State  string
}

func (d *Dashboard) flowsPage(r *http.Request) (*view, error) {
	q := r.URL.Query()
	p := store.FlowListParams{After: q.Get("cursor"), Limit: taskPageSize}
	if s := q.Get("state"); s != "" {
		if !store.FlowState(s).Valid() {
			return nil, userErrorf("%q is not a flow state", s)
		}
		p.States = []store.FlowState{store.FlowState(s)}
	}
	flows, err := d.st.ListFlows(r.Context(), p)
	if err != nil {
		return nil, err
	}
	data := flowsData{Flows: flows, Cursor: p.After, State: q.Get("state")}
	if len(flows) == p.Limit {
		data.Next = flows[len(flows)-1].ID
	}
	return &view{Title: "Flows", Nav: "flows", Live: "*", Data: data}, nil
}

// flowData is a flow's page.
type flowData struct {
	Flow    *store.Flow
	Members []store.FlowMember
	Graph   template.HTML
}

func (d *Dashboard) flowPage(r *http.Request) (*view, error) {
	ctx := r.Context()
	id := r.PathValue("id")
	f, err := d.st.Flow(ctx, id)
	if err != nil {
		return nil, err
	}
	members, err := d.st.FlowMembers(ctx, id)
	if err != nil {
		return nil, err
	}
	return &view{Title: "Flow " + shortID(id), Nav: "flow", Live: "*", Data: flowData{Flow: f, Members: members, Graph: dagSVG(d.cfg.Base, members)}}, nil
}

// waitRow is a waiting task with its waitpoints.
type waitRow struct {
	Task       *store.Task
	Waitpoints []store.Waitpoint
}

func (d *Dashboard) waitsPage(r *http.Request) (*view, error) {
	ctx := r.Context()
	tasks, err := d.st.List(ctx, store.ListParams{States: []store.State{store.StateWaiting}, After: r.URL.Query().Get("cursor"), Limit: taskPageSize})
	if err != nil {
		return nil, err
	}
	rows := make([]waitRow, len(tasks))
	for i, t := range tasks {
		wps, err := d.st.Waitpoints(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		rows[i] = waitRow{Task: t, Waitpoints: wps}
	}
	return &view{Title: "Waits", Nav: "waits", Live: "*", Data: rows}, nil
}

// limitKeysShown bounds the keys a limit's page shows: its hottest.
const limitKeysShown = 50

func (d *Dashboard) limitsPage(r *http.Request) (*view, error) {
	ls, err := d.st.ListLimits(r.Context())
	if err != nil {
		return nil, err
	}
	return &view{Title: "Limits", Nav: "limits", Live: "*", Data: ls}, nil
}

// limitData is a limit's page.
type limitData struct {
	Limit store.LimitInfo
	// Keys are its keys with the most tasks waiting, at most
	// limitKeysShown; More says there are others.
	Keys []store.LimitKeyState
	More bool
}

func (d *Dashboard) limitPage(r *http.Request) (*view, error) {
	ctx := r.Context()
	name := r.PathValue("name")
	info, err := d.st.GetLimit(ctx, name)
	if err != nil {
		return nil, err
	}
	keys, next, err := d.st.LimitKeyStates(ctx, name, "", limitKeysShown)
	if err != nil {
		return nil, err
	}
	return &view{Title: "Limit " + name, Nav: "limit", Live: "*", Data: limitData{Limit: info, Keys: keys, More: next != ""}}, nil
}
