package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Bulk carries out one batch of an action on many tasks: the tasks of
// IDs, in id order after After. It is the shape of the store's bulk
// operations (store.Operator.Bulk, on the branch that adds them), so that
// an adapter only copies fields.
type Bulk interface {
	Bulk(ctx context.Context, req BulkRequest) (BulkResult, error)
}

// StoreBulk serves Bulk with a store's bulk actions (store.Operator.Bulk),
// which change each batch in one transaction, as the API's do.
func StoreBulk(op store.Operator) Bulk { return storeBulk{op} }

type storeBulk struct{ op store.Operator }

func (b storeBulk) Bulk(ctx context.Context, req BulkRequest) (BulkResult, error) {
	r, err := b.op.Bulk(ctx, store.BulkParams{Action: store.BulkAction(req.Action), Filter: store.TaskFilter{IDs: req.IDs}, After: req.After})
	return BulkResult{Matched: r.Matched, Changed: r.Changed, Next: r.Next}, err
}

// BulkRequest asks for one batch of a bulk action.
type BulkRequest struct {
	// Action is "retry", "cancel", "delete" or "run_now".
	Action string
	// IDs are the tasks to act on.
	IDs []string
	// After is the Next of the previous batch.
	After string
}

// BulkResult is what one batch did.
type BulkResult struct {
	// Matched counts the tasks of the batch the action applies to;
	// Changed those it changed.
	Matched, Changed int
	// Next is where the next batch starts; "" after the last.
	Next string
}

// maxFilterAction bounds the tasks one action "on everything matching"
// changes; the page says so, and the action can be repeated.
const maxFilterAction = 10_000

// actions lists the task actions on offer.
func (d *Dashboard) actions() []string {
	if d.cfg.Bulk != nil {
		return []string{"retry", "cancel", "run_now", "delete"}
	}
	return []string{"retry", "cancel"}
}

// actionStates are the states each action applies to.
var actionStates = map[string][]store.State{
	"retry":   {store.StateFailed, store.StateCancelled, store.StateSkipped},
	"cancel":  {store.StatePending, store.StateBlocked, store.StateRunning, store.StateWaiting},
	"run_now": {store.StatePending},
	"delete":  {store.StateCompleted, store.StateFailed, store.StateCancelled, store.StateSkipped},
}

// matching collects the ids of the tasks f matches that action applies
// to, at most maxFilterAction of them; atLeast is set when there may be
// more (or the search's budget ran out first).
func (d *Dashboard) matching(ctx context.Context, f taskFilter, action string) (ids []string, atLeast bool, err error) {
	applies := actionStates[action]
	if len(f.States) == 0 {
		f.States = applies
	} else {
		var keep []store.State
		for _, s := range f.States {
			for _, a := range applies {
				if s == a {
					keep = append(keep, s)
				}
			}
		}
		if len(keep) == 0 {
			return nil, false, nil
		}
		f.States = keep
	}
	f.Newest = false
	cursor := ""
	for {
		p, err := d.search(ctx, f, cursor, maxFilterAction-len(ids), 10*maxFilterAction)
		if err != nil {
			return nil, false, err
		}
		for _, t := range p.Tasks {
			if action == "run_now" && !t.RunAt.After(time.Now()) {
				continue
			}
			ids = append(ids, t.ID)
		}
		if p.Cut || len(ids) >= maxFilterAction {
			return ids, true, nil
		}
		if p.Next == "" {
			return ids, false, nil
		}
		cursor = p.Next
	}
}

// apply carries out action on ids: through Bulk when there is one, else
// task by task (retry and cancel). It says how many tasks changed, and how
// many were refused with the first reason.
func (d *Dashboard) apply(ctx context.Context, action string, ids []string) (changed, refused int, reason error, err error) {
	if d.cfg.Bulk != nil {
		after := ""
		for {
			res, err := d.cfg.Bulk.Bulk(ctx, BulkRequest{Action: action, IDs: ids, After: after})
			if err != nil {
				return changed, refused, reason, err
			}
			changed += res.Changed
			refused += res.Matched - res.Changed
			if res.Next == "" {
				return changed, refused, reason, nil
			}
			after = res.Next
		}
	}
	for _, id := range ids {
		var err error
		switch action {
		case "retry":
			_, err = d.cfg.Client.Retry(ctx, id)
		case "cancel":
			_, err = d.cfg.Client.Cancel(ctx, id)
		default:
			return 0, 0, nil, userErrorf("%q is not available on this server", action)
		}
		switch {
		case err == nil:
			changed++
		case isUserError(err):
			refused++
			if reason == nil {
				reason = err
			}
		default:
			return changed, refused, reason, err
		}
	}
	return changed, refused, reason, nil
}

// tasksAction acts on the selected tasks (ids) or, with scope=filter and
// confirm=yes, on every task the filter matches.
func (d *Dashboard) tasksAction(r *http.Request) (string, string, error) {
	f := r.PostForm
	action := f.Get("action")
	back := d.cfg.Base + "/tasks?" + f.Get("query")
	if _, ok := actionStates[action]; !ok || !contains(d.actions(), action) {
		return back, "", userErrorf("%q is not an action here (%s)", action, strings.Join(d.actions(), ", "))
	}
	var ids []string
	more := false
	if f.Get("scope") == "filter" {
		q, err := url.ParseQuery(f.Get("query"))
		if err != nil {
			return back, "", userErrorf("bad filter: %v", err)
		}
		filter, err := parseFilter(q)
		if err != nil {
			return back, "", err
		}
		if f.Get("confirm") != "yes" {
			return back + "&preview=" + url.QueryEscape(action), "", nil
		}
		if ids, more, err = d.matching(r.Context(), filter, action); err != nil {
			return back, "", err
		}
	} else {
		for _, id := range f["id"] {
			if _, err := uuid.Parse(id); err != nil {
				return back, "", userErrorf("%q is not a task id", id)
			}
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			return back, "", userErrorf("no task selected")
		}
	}
	changed, refused, reason, err := d.apply(r.Context(), action, ids)
	if err != nil {
		return back, "", err
	}
	msg := fmt.Sprintf("%s: %d task(s) changed", strings.ReplaceAll(action, "_", " "), changed)
	if refused > 0 {
		msg += fmt.Sprintf(", %d left as they were", refused)
		if reason != nil {
			msg += " (" + reason.Error() + ")"
		}
	}
	if more {
		msg += fmt.Sprintf("; stopped at %d: repeat for the rest", maxFilterAction)
	}
	return back, msg, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// taskAction cancels or retries one task.
func (d *Dashboard) taskAction(r *http.Request) (string, string, error) {
	id, op := r.PathValue("id"), r.PathValue("op")
	back := d.cfg.Base + "/tasks/" + url.PathEscape(id)
	var err error
	switch op {
	case "cancel":
		_, err = d.cfg.Client.Cancel(r.Context(), id)
	case "retry":
		_, err = d.cfg.Client.Retry(r.Context(), id)
	case "run_now", "delete":
		if d.cfg.Bulk == nil {
			return back, "", userErrorf("%s is not available on this server", op)
		}
		_, _, reason, berr := d.apply(r.Context(), op, []string{id})
		err = errors.Join(berr, reason)
		if op == "delete" && err == nil {
			return d.cfg.Base + "/tasks", "deleted task " + id, nil
		}
	default:
		return back, "", userErrorf("%q is not a task action", op)
	}
	if err != nil {
		return back, "", err
	}
	return back, strings.ReplaceAll(op, "_", " ") + ": done", nil
}

// queueAction pauses or resumes a queue.
func (d *Dashboard) queueAction(r *http.Request) (string, string, error) {
	name, op := r.PathValue("name"), r.PathValue("op")
	back := d.cfg.Base + "/queues"
	if !store.ValidName(name) {
		return back, "", userErrorf("%q is not a valid queue name", name)
	}
	switch op {
	case "pause":
		return back, "paused " + name, d.st.PauseQueue(r.Context(), name, true)
	case "resume":
		return back, "resumed " + name, d.st.PauseQueue(r.Context(), name, false)
	}
	return back, "", userErrorf("%q is not a queue action", op)
}

// rawArgs are a schedule's args as the form gives them.
type rawArgs struct {
	kind string
	args json.RawMessage
}

func (a rawArgs) Kind() string                 { return a.kind }
func (a rawArgs) MarshalJSON() ([]byte, error) { return a.args, nil }

// createSchedule creates (or replaces) a schedule from the form.
func (d *Dashboard) createSchedule(r *http.Request) (string, string, error) {
	f := r.PostForm
	back := d.cfg.Base + "/schedules"
	args := json.RawMessage(strings.TrimSpace(f.Get("args")))
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	if !json.Valid(args) {
		return back, "", userErrorf("args: not valid JSON")
	}
	opts := &weft.ScheduleOpts{Queue: strings.TrimSpace(f.Get("queue")), Missed: weft.Missed(f.Get("missed"))}
	for field, dst := range map[string]*int{"priority": &opts.Priority, "max_attempts": &opts.MaxAttempts} {
		if v := strings.TrimSpace(f.Get(field)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return back, "", userErrorf("%s: %q is not a number", field, v)
			}
			*dst = n
		}
	}
	name := strings.TrimSpace(f.Get("name"))
	err := d.cfg.Client.Schedule(r.Context(), name, strings.TrimSpace(f.Get("spec")), rawArgs{kind: strings.TrimSpace(f.Get("kind")), args: args}, opts)
	var ve *weft.ValidationError
	if errors.As(err, &ve) {
		return back, "", userErrorf("%s", ve.Error())
	}
	if err != nil {
		return back, "", err
	}
	return back, "saved schedule " + name, nil
}

// scheduleAction pauses, resumes, deletes or runs a schedule now (its
// task, enqueued at once, apart from its slots).
func (d *Dashboard) scheduleAction(r *http.Request) (string, string, error) {
	ctx := r.Context()
	name, op := r.PathValue("name"), r.PathValue("op")
	back := d.cfg.Base + "/schedules"
	switch op {
	case "pause":
		return back, "paused " + name, d.st.PauseSchedule(ctx, name, true)
	case "resume":
		return back, "resumed " + name, d.st.PauseSchedule(ctx, name, false)
	case "delete":
		return back, "deleted " + name, d.st.DeleteSchedule(ctx, name)
	case "run":
		scs, err := d.st.Schedules(ctx)
		if err != nil {
			return back, "", err
		}
		for _, sc := range scs {
			if sc.Name != name {
				continue
			}
			res, err := d.st.Enqueue(ctx, []store.NewTask{{Kind: sc.Kind, Queue: sc.Queue, Args: sc.Args, Priority: sc.Priority,
				MaxAttempts: sc.MaxAttempts, Metadata: sc.Metadata}})
			if err != nil {
				return back, "", err
			}
			return d.cfg.Base + "/tasks/" + res[0].ID, "enqueued " + name + "'s task now", nil
		}
		return back, "", fmt.Errorf("schedule %s: %w", name, store.ErrNotFound)
	}
	return back, "", userErrorf("%q is not a schedule action", op)
}

// flowAction cancels or retries a flow.
func (d *Dashboard) flowAction(r *http.Request) (string, string, error) {
	id, op := r.PathValue("id"), r.PathValue("op")
	back := d.cfg.Base + "/flows/" + url.PathEscape(id)
	var err error
	switch op {
	case "cancel":
		_, err = d.st.CancelFlow(r.Context(), id)
	case "retry":
		_, err = d.st.RetryFlow(r.Context(), id)
	default:
		return back, "", userErrorf("%q is not a flow action", op)
	}
	if err != nil {
		return back, "", err
	}
	return back, op + ": done", nil
}
