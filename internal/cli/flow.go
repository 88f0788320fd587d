package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// flowBackend is what the flow commands need, over the HTTP API
// (apiclient.Client implements it) or on a store (directBackend).
type flowBackend interface {
	SubmitFlow(ctx context.Context, in api.FlowInput) (api.FlowEnqueued, error)
	Flow(ctx context.Context, id string, members bool) (api.Flow, error)
	ListFlows(ctx context.Context, p api.FlowListParams) (api.FlowList, error)
	CancelFlow(ctx context.Context, id string) (api.Flow, error)
	RetryFlow(ctx context.Context, id string) (api.Flow, error)
	// FlowEvents yields the events of a flow's members after the cursor
	// after; with follow, it ends once the flow is final. A failure is
	// the last element.
	FlowEvents(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error]
}

// exitFlowNotFound ends `flow --monitor` for a flow that does not exist;
// one that succeeded exits 0, failed 1 and cancelled 2, as `task
// --monitor` does for tasks.
const exitFlowNotFound = 3

// flowPoll is how often the progress view of `flow --monitor` reads the
// flow; a non-terminal gets a line only when the counts change.
const flowPoll = 250 * time.Millisecond

func newFlowCmd(g *globals) *cobra.Command {
	var monitor bool
	cmd := &cobra.Command{
		Use:   "flow ID",
		Short: "Show a flow and its members; submit, monitor, cancel or retry flows",
		Long: `Show a flow: its state, progress, ETA and a table of its members (key, state,
kind, what it depends on, and why the flow skipped or cancelled it). With
--format json, print the API's flow object.

--monitor follows the flow until every member is final, and exits with its
outcome: 0 succeeded, 1 failed, 2 cancelled (3 when there is no such flow). On
a terminal it shows a live progress line with counts and ETA; otherwise it
prints the members' events as NDJSON (one JSON event per line, with the
member's key). --format human shows the progress view anywhere, one line per
change when not on a terminal; --format ndjson the events anywhere.

A flow is a set of tasks submitted together with dependencies between them:
see 'weft flow submit'.`,
		Example: `  weft flow 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e
  weft flow 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --monitor && echo done
  weft flow submit flow.json
  weft flow cancel 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e
  weft flows --state failed`,
		Args: exactArgs(1, "one flow id, or a subcommand (submit, cancel, retry)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			if monitor {
				return monitorFlow(ctx, g, b, id)
			}
			f, err := b.Flow(ctx, id, true)
			if err != nil {
				return fmt.Errorf("flow %s: %w", id, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, f)
			}
			return printFlow(g.stdout, f, time.Now())
		},
	}
	cmd.Flags().BoolVar(&monitor, "monitor", false, "follow the flow until it is final; exit 0 succeeded, 1 failed, 2 cancelled, 3 not found")
	cmd.AddCommand(newFlowSubmitCmd(g), newFlowActionCmd(g, "cancel"), newFlowActionCmd(g, "retry"))
	return cmd
}

func newFlowSubmitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "submit FILE|-",
		Short: "Submit a flow from a JSON file",
		Long: fmt.Sprintf(`Submit the flow in FILE (or standard input, with -): every member is stored, or
none is. FILE holds the JSON that POST /v1/flows takes:

  {"name": "...", "metadata": {...}, "tasks": [
    {"key": "fetch", "kind": "fetch", "args": {...}},
    {"key": "parse", "kind": "parse", "depends_on": ["fetch"]},
    {"key": "undo", "kind": "cleanup", "depends_on": ["parse"], "join": "none_succeeded"}]}

Each task takes every field of a task (kind, args, queue, priority, delay,
run_at, max_attempts, timeout, unique_key, metadata), a key unique in the
flow, depends_on (keys; "key/*" for a member and all it adds while it runs;
"*" for every other member, a completion callback), join (all_succeeded, the
default; any_succeeded; quorum, with quorum; all_done; none_succeeded) and
let_run. A flow holds at most %d tasks. A bad member is reported by its path
(tasks[2].depends_on[0]) and nothing is stored.

Prints the flow id and each member's task id by key; with --format json, the
API's answer {"id": ..., "tasks": {key: id}}.`, store.DefaultMaxFlowMembers),
		Example: `  weft flow submit flow.json
  weft flow submit - --format json < flow.json`,
		Args: exactArgs(1, "one file name, or - for standard input"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var (
				raw []byte
				err error
			)
			if name == "-" {
				name = "standard input"
				raw, err = io.ReadAll(g.stdin)
			} else {
				raw, err = os.ReadFile(name)
			}
			if err != nil {
				return fmt.Errorf("flow submit: %w", err)
			}
			in, err := readFlow(raw, name)
			if err != nil {
				return err
			}
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.SubmitFlow(cmd.Context(), in)
			if err != nil {
				return fmt.Errorf("flow submit %s: %w", name, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, res)
			}
			fmt.Fprintf(g.stdout, "flow %s: %s\n", res.ID, plural(len(res.Tasks), "task"))
			tw := newTable(g.stdout)
			fmt.Fprintln(tw, "KEY\tTASK")
			for _, t := range in.Tasks {
				fmt.Fprintf(tw, "%s\t%s\n", t.Key, res.Tasks[t.Key])
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		},
	}
}

// readFlow decodes a flow file strictly: an unknown field would otherwise
// be dropped, and a misspelt "depends_ob" would run a member too early.
// Members are decoded one by one, so that an error names its path.
func readFlow(raw []byte, name string) (api.FlowInput, error) {
	var top struct {
		Name     string            `json:"name"`
		Metadata json.RawMessage   `json:"metadata"`
		Tasks    []json.RawMessage `json:"tasks"`
	}
	if err := strictJSON(raw, &top); err != nil {
		return api.FlowInput{}, fmt.Errorf("%s: %s", name, describeJSONError(err))
	}
	if top.Tasks == nil {
		return api.FlowInput{}, fmt.Errorf(`%s: tasks: missing; expected {"tasks": [{"key": ..., "kind": ...}, ...]}`, name)
	}
	in := api.FlowInput{Name: top.Name, Metadata: top.Metadata, Tasks: make([]api.FlowTaskInput, len(top.Tasks))}
	for i, t := range top.Tasks {
		if err := strictJSON(t, &in.Tasks[i]); err != nil {
			return api.FlowInput{}, fmt.Errorf("%s: tasks[%d]: %s", name, i, describeJSONError(err))
		}
	}
	return in, nil
}

// strictJSON decodes one JSON value, refusing unknown fields and trailing
// data.
func strictJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if !errors.Is(tokenErr(dec), io.EOF) {
		return errors.New("extra data after the JSON value")
	}
	return nil
}

// newFlowActionCmd builds `flow cancel` and `flow retry`.
func newFlowActionCmd(g *globals, verb string) *cobra.Command {
	short := "Cancel a flow: its waiting members at once, running ones by request"
	long := `Cancel a flow in one transaction: its pending and blocked members are cancelled
at once, and the workers of its running members are asked to stop; the flow is
cancelled once they have. Cancelling a cancelled flow again is fine; one that
succeeded or failed is refused.`
	if verb == "retry" {
		short = "Retry a flow's failed and cancelled members"
		long = `Run a flow's failed and cancelled members again, and reopen the members that
were skipped or cancelled because of them (they wait on their dependencies
again). Completed members keep their results. Refused when no member can run
again.`
	}
	return &cobra.Command{
		Use:     verb + " ID",
		Short:   short,
		Long:    long,
		Example: "  weft flow " + verb + " 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e",
		Args:    exactArgs(1, "one flow id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			op := b.CancelFlow
			if verb == "retry" {
				op = b.RetryFlow
			}
			f, err := op(ctx, id)
			if err != nil {
				return fmt.Errorf("%s flow %s: %w", verb, id, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, f)
			}
			c := f.Counts
			switch {
			case verb == "retry":
				fmt.Fprintf(g.stdout, "flow %s: running again (%d pending, %d blocked; %d completed kept)\n", f.ID, c.Active, c.Blocked, c.Completed)
			case f.State == string(store.FlowRunning):
				fmt.Fprintf(g.stdout, "flow %s: cancelling (%d running asked to stop; %d cancelled)\n", f.ID, c.Active, c.Cancelled)
			default:
				fmt.Fprintf(g.stdout, "flow %s: %s\n", f.ID, f.State)
			}
			return nil
		},
	}
}

func newFlowsCmd(g *globals) *cobra.Command {
	var (
		p      api.FlowListParams
		states string
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "List flows, oldest first",
		Long: `List flows in creation order with their state and progress, filtered by state.

One page of --limit flows is printed; when there are more, the command says
how to get the next page (--cursor), or --all pages through every one.
--format json prints the API's page; --format ndjson one flow per line.`,
		Example: `  weft flows
  weft flows --state running,failed
  weft flows --all --format ndjson`,
		Args: exactArgs(0, "no arguments (filter with --state)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p.States = splitList(states)
			for _, s := range p.States {
				if !store.FlowState(s).Valid() {
					return usagef("--state: %q is not a flow state (use %s)", s, ops.FlowStateNames())
				}
			}
			if p.Limit < 1 || p.Limit > ops.MaxPage {
				return usagef("--limit: %d is out of range (1 to %d)", p.Limit, ops.MaxPage)
			}
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			var (
				collected []api.Flow
				tw        = newTable(g.stdout)
				header    = true
				now       = time.Now()
			)
			for {
				page, err := b.ListFlows(ctx, p)
				if err != nil {
					return fmt.Errorf("flows: %w", err)
				}
				switch g.Format {
				case formatJSON:
					if !all {
						return writeJSON(g.stdout, g.Format, page)
					}
					collected = append(collected, page.Flows...)
				case formatNDJSON:
					for _, f := range page.Flows {
						if err := writeJSON(g.stdout, g.Format, f); err != nil {
							return err
						}
					}
				default:
					if header && len(page.Flows) > 0 {
						fmt.Fprintln(tw, "ID\tNAME\tSTATE\tDONE\tFAILED\tCREATED")
						header = false
					}
					for _, f := range page.Flows {
						name := f.Name
						if name == "" {
							name = "-"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%s\n", f.ID, truncate(name, 40), f.State,
							f.Counts.Completed+f.Counts.Failed+f.Counts.Cancelled+f.Counts.Skipped, f.Counts.Total, f.Counts.Failed, relative(f.CreatedAt, now))
					}
					if err := tw.Flush(); err != nil {
						return fmt.Errorf("write output: %w", err)
					}
				}
				if page.NextCursor == "" || !all {
					if page.NextCursor != "" && g.Format == formatHuman {
						fmt.Fprintf(g.stderr, "more flows: add --cursor %s for the next page, or --all for every one\n", page.NextCursor)
					}
					break
				}
				p.Cursor = page.NextCursor
			}
			switch {
			case g.Format == formatJSON:
				if collected == nil {
					collected = []api.Flow{}
				}
				return writeJSON(g.stdout, g.Format, api.FlowList{Flows: collected})
			case g.Format == formatHuman && header:
				fmt.Fprintln(g.stdout, "no flows")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&states, "state", "", "only flows in these states, comma-separated ("+ops.FlowStateNames()+")")
	f.IntVar(&p.Limit, "limit", ops.DefaultPage, fmt.Sprintf("flows per page (at most %d)", ops.MaxPage))
	f.StringVar(&p.Cursor, "cursor", "", "continue after this cursor (printed when there are more flows)")
	f.BoolVar(&all, "all", false, "page through every matching flow")
	return cmd
}

// maxDepsShown bounds the parents the members table lists by key: a
// completion callback depends on every other member.
const maxDepsShown = 4

// printFlow prints a flow and its members for people.
func printFlow(w io.Writer, f api.Flow, now time.Time) error {
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-10s %s\n", label+":", value)
		}
	}
	line("id", f.ID)
	line("name", f.Name)
	state := f.State
	if f.CancelRequested && f.State == string(store.FlowRunning) {
		state += " (cancellation requested)"
	}
	line("state", state)
	line("progress", progressText(f))
	if f.ETA != "" {
		line("eta", fmt.Sprintf("%s at %.3g tasks/s", f.ETA, f.Rate))
	}
	line("created", when(f.CreatedAt, now))
	line("finalized", whenPtr(f.FinalizedAt, now))
	line("metadata", prettyJSON(f.Metadata, resultLimit))
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tSTATE\tKIND\tDEPENDS ON\tREASON")
	for _, m := range f.Members {
		deps := "-"
		if n := len(m.DependsOn); n > 0 {
			deps = strings.Join(m.DependsOn[:min(n, maxDepsShown)], ",")
			if n > maxDepsShown {
				deps += fmt.Sprintf(",… (%d in all)", n)
			}
			switch store.Join(m.Join) {
			case store.JoinAllSucceeded:
			case store.JoinQuorum:
				deps += fmt.Sprintf(" (quorum %d)", m.Quorum)
			default:
				deps += " (" + m.Join + ")"
			}
		}
		reason := "-"
		if m.Reason != "" {
			reason = m.Reason
			if m.ReasonKey != "" {
				reason += " (" + m.ReasonKey + ")"
			}
		}
		if m.AddedBy != "" {
			reason = strings.TrimPrefix(reason+"; added by "+m.AddedBy, "-; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Key, m.State, m.Kind, deps, reason)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// progressText is "3/10 done (30%): 2 completed, 1 failed; 4 active,
// 3 blocked", leaving out the counts that are zero.
func progressText(f api.Flow) string {
	c := f.Counts
	done := c.Completed + c.Failed + c.Cancelled + c.Skipped
	var parts, waiting []string
	for _, n := range []struct {
		v    int64
		what string
	}{{c.Completed, "completed"}, {c.Failed, "failed"}, {c.Cancelled, "cancelled"}, {c.Skipped, "skipped"}} {
		if n.v > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n.v, n.what))
		}
	}
	if c.Active > 0 {
		waiting = append(waiting, fmt.Sprintf("%d active", c.Active))
	}
	if c.Blocked > 0 {
		waiting = append(waiting, fmt.Sprintf("%d blocked", c.Blocked))
	}
	s := fmt.Sprintf("%d/%d done (%d%%)", done, c.Total, int(f.Progress*100))
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	if len(waiting) > 0 {
		s += "; " + strings.Join(waiting, ", ")
	}
	return s
}

// monitorFlow follows a flow until it is final and returns its outcome as
// the exit code: nil for succeeded, an *exitCodeError otherwise.
func monitorFlow(ctx context.Context, g *globals, b backend, id string) error {
	progress := g.Format == formatHuman && (g.formatFlag || isTerminal(g.stdout))
	var err error
	if progress {
		err = watchFlowProgress(ctx, g, b, id)
	} else {
		err = followFlowEvents(ctx, g, b, id)
	}
	if errors.Is(err, apiclient.ErrNotFound) {
		return &exitCodeError{code: exitFlowNotFound, msg: err.Error()}
	}
	if err != nil {
		return err
	}
	// Final: read how it ended.
	f, err := b.Flow(ctx, id, false)
	if err != nil {
		return fmt.Errorf("monitor flow %s: %w", id, err)
	}
	return flowOutcome(f)
}

// flowOutcome turns a final flow into the monitor's exit.
func flowOutcome(f api.Flow) error {
	switch store.FlowState(f.State) {
	case store.FlowSucceeded:
		return nil
	case store.FlowCancelled:
		return &exitCodeError{code: exitTaskCancelled, msg: fmt.Sprintf("flow %s was cancelled", f.ID)}
	}
	return &exitCodeError{code: exitTaskFailed, msg: fmt.Sprintf("flow %s failed: %s", f.ID, progressText(f))}
}

// followFlowEvents prints the flow's events as NDJSON until the flow is
// final, resuming a dropped stream where it stopped. The server ends a
// followed stream when the flow is final, or when it shuts down: a clean
// end is checked against the flow.
func followFlowEvents(ctx context.Context, g *globals, b backend, id string) error {
	var (
		after    int64
		failures int
		log      = g.logger(g.stderr)
	)
	for {
		got := 0
		var streamErr error
		for ev, err := range b.FlowEvents(ctx, id, after, true) {
			if err != nil {
				streamErr = err
				break
			}
			got++
			after = ev.Seq
			if err := writeJSON(g.stdout, formatNDJSON, ev); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if streamErr != nil && !retriable(streamErr) {
			return fmt.Errorf("monitor flow %s: %w", id, streamErr)
		}
		if streamErr == nil {
			f, err := b.Flow(ctx, id, false)
			if err != nil {
				return fmt.Errorf("monitor flow %s: %w", id, err)
			}
			if f.State != string(store.FlowRunning) {
				return nil
			}
		}
		if got > 0 {
			failures = 0
		}
		failures++
		if failures > maxReconnects {
			if streamErr == nil {
				streamErr = errors.New("the server ended the stream before the flow was final")
			}
			return fmt.Errorf("monitor flow %s: gave up after %d reconnects: %w", id, maxReconnects, streamErr)
		}
		delay := time.Duration(1<<(failures-1)) * 250 * time.Millisecond
		log.Warn("flow event stream interrupted; reconnecting", "flow", id, "after_seq", after, "in", delay, "err", streamErr)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// maxReconnects bounds how many times in a row a flow monitor reconnects
// to a server that stopped answering before it gives up (exit 3).
const maxReconnects = 5

// watchFlowProgress shows the flow's progress until it is final: a line
// redrawn in place on a terminal, else a line whenever the flow's state or
// counts change.
func watchFlowProgress(ctx context.Context, g *globals, b backend, id string) error {
	tty := isTerminal(g.stdout)
	p := &progressLine{w: g.stdout, tty: tty}
	var (
		shown    bool
		last     string
		failures int
	)
	end := func(err error) error {
		if tty && shown {
			fmt.Fprintln(g.stdout)
		}
		return err
	}
	for {
		wait := flowPoll
		f, err := b.Flow(ctx, id, false)
		switch {
		case ctx.Err() != nil:
			return end(context.Cause(ctx))
		case err != nil:
			failures++
			if !retriable(err) || failures > maxReconnects {
				return end(fmt.Errorf("monitor flow %s: %w", id, err))
			}
			wait = max(wait, time.Duration(1<<(failures-1))*250*time.Millisecond)
		default:
			failures = 0
			text := progressBar(f)
			if seen := fmt.Sprint(f.State, f.Counts); tty {
				p.redraw(text)
			} else if seen != last {
				fmt.Fprintln(g.stdout, text)
				last = seen
			}
			shown = true
			if f.State != string(store.FlowRunning) {
				return end(nil)
			}
		}
		if err := sleep(ctx, wait); err != nil {
			return end(err)
		}
	}
}

// progressBar is the monitor's progress line: a bar, the counts, the ETA.
func progressBar(f api.Flow) string {
	const width = 24
	filled := min(int(f.Progress*width+0.5), width)
	s := "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] " + f.State + " " + progressText(f)
	if f.ETA != "" {
		s += fmt.Sprintf("; eta %s (%.3g/s)", f.ETA, f.Rate)
	}
	return s
}

// Flow commands on a store, through the service the server runs.

func (d *directBackend) SubmitFlow(ctx context.Context, in api.FlowInput) (api.FlowEnqueued, error) {
	return wire(ctx, d.svc.SubmitFlow, in)
}

func (d *directBackend) Flow(ctx context.Context, id string, members bool) (api.Flow, error) {
	f, err := d.svc.Flow(ctx, id, members)
	return f, wireError(ctx, err)
}

func (d *directBackend) ListFlows(ctx context.Context, p api.FlowListParams) (api.FlowList, error) {
	return wire(ctx, d.svc.ListFlows, p)
}

func (d *directBackend) CancelFlow(ctx context.Context, id string) (api.Flow, error) {
	return wire(ctx, d.svc.CancelFlow, id)
}

func (d *directBackend) RetryFlow(ctx context.Context, id string) (api.Flow, error) {
	return wire(ctx, d.svc.RetryFlow, id)
}

func (d *directBackend) FlowEvents(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	return directEvents(ctx, func() (*ops.EventStream, error) { return d.svc.FlowEvents(ctx, id, after, follow) })
}
