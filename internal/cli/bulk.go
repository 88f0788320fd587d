package cli

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// bulkCommand describes one bulk command: the action, and how its output
// speaks of it.
type bulkCommand struct {
	use, action string
	// done and would are the verbs of the summary: "retried", "would
	// retry".
	done, would string
	// matches says which tasks the action applies to.
	matches     string
	short, long string
	example     string
}

// bulkCommands are weft retry, cancel, delete and run-now.
var bulkCommands = []bulkCommand{{
	use: "retry", action: api.BulkRetry, done: "retried", would: "would retry", matches: "failed, cancelled or skipped",
	short: "Make failed, cancelled or skipped tasks pending again",
	long: `Make failed, cancelled and skipped tasks pending again, ready now, as
'weft task ID --retry' does for one: the error history is kept, a task with no
attempt left gets one more, and a retried event is written. A task whose unique
key another task holds now is left as it is.`,
	example: `  weft retry --state failed --queue emails
  weft retry --kind report.build --since 2h --dry-run
  weft retry 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5f`,
}, {
	use: "cancel", action: api.BulkCancel, done: "cancelled", would: "would cancel", matches: "pending, blocked, waiting or running",
	short: "Cancel pending tasks; ask running ones to stop",
	long: `Cancel pending, blocked and waiting tasks at once, and ask the workers of
running ones to stop (their attempt then ends cancelled unless it completes), as
'weft task ID --cancel' does for one. Finished tasks are left alone.`,
	example: `  weft cancel --queue emails
  weft cancel --kind http --state pending --dry-run
  weft cancel 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e`,
}, {
	use: "delete", action: api.BulkDelete, done: "deleted", would: "would delete", matches: "finished (completed, failed, cancelled or skipped)",
	short: "Delete finished tasks and their events",
	long: `Delete finished tasks — completed, failed, cancelled or skipped — with their
event logs. Pending, blocked, running and waiting tasks are never deleted:
cancel them first. (Retention deletes finished tasks on its own after a while:
24 hours for completed ones, 7 days for failed and cancelled ones.)`,
	example: `  weft delete --state completed --queue emails
  weft delete --kind http --until 2030-01-01 --dry-run
  weft delete 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e`,
}, {
	use: "run-now", action: api.BulkRunNow, done: "made ready", would: "would make ready", matches: "pending and scheduled for later",
	short: "Run pending tasks that are scheduled for later now",
	long: `Make pending tasks that are scheduled for later (--delay, --at, a retry's
backoff, a snooze) ready now: the next free worker takes them. Tasks that are
ready already, or not pending, are left alone.`,
	example: `  weft run-now --queue reports
  weft run-now 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e`,
}}

// selectFlags are the flags that select tasks, as `weft list` filters them.
type selectFlags struct {
	queue, kind, states, since, until string
}

func (s *selectFlags) register(cmd *cobra.Command, states string) {
	f := cmd.Flags()
	f.StringVar(&s.queue, "queue", "", "only tasks of this queue")
	f.StringVar(&s.kind, "kind", "", "only tasks of this kind")
	f.StringVar(&s.states, "state", "", "only tasks in these states, comma-separated ("+states+")")
	f.StringVar(&s.since, "since", "", "only tasks created at or after this time: RFC 3339, a date (2030-01-02), or a duration ago (2h)")
	f.StringVar(&s.until, "until", "", "only tasks created before this time (the same forms as --since)")
}

// given reports whether any selecting flag was given.
func (s *selectFlags) given() bool {
	return s.queue != "" || s.kind != "" || s.states != "" || s.since != "" || s.until != ""
}

// filter reads the flags at now, checking the states against allowed.
func (s *selectFlags) filter(now time.Time, allowed []store.State, action string) (api.TaskFilter, error) {
	f := api.TaskFilter{Queue: s.queue, Kind: s.kind, States: splitList(s.states)}
	for _, st := range f.States {
		if !store.State(st).Valid() {
			return f, usagef("--state: %q is not a state (use %s)", st, store.StateNames(store.States(), ", "))
		}
		if !slices.Contains(allowed, store.State(st)) {
			return f, usagef("--state: %s applies to %s tasks, not %s ones", action, store.StateNames(allowed, ", "), st)
		}
	}
	for _, b := range []struct {
		flag, value string
		dst         *string
	}{{"since", s.since, &f.Since}, {"until", s.until, &f.Until}} {
		if b.value == "" {
			continue
		}
		t, err := parseTimeFlag(b.flag, b.value, now)
		if err != nil {
			return f, err
		}
		*b.dst = t.UTC().Format(time.RFC3339Nano)
	}
	return f, nil
}

// parseTimeFlag reads a time flag: an RFC 3339 time, a date (midnight,
// local time), or a duration meaning that long before now.
func parseTimeFlag(flag, v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, time.Local); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--%s: %q is not a time: give an RFC 3339 time (2030-01-02T15:04:05Z), a date (2030-01-02) or a duration ago (90m, 2h)", flag, v)
}

func newBulkCmd(g *globals, bc bulkCommand) *cobra.Command {
	var (
		sel         selectFlags
		all, dryRun bool
	)
	applies := store.BulkAction(bc.action).States()
	cmd := &cobra.Command{
		Use:   bc.use + " [ID...]",
		Short: bc.short,
		Long: bc.long + `

Select the tasks by id, or with --queue, --kind, --state, --since and --until
(the filters of 'weft list'; --state defaults to every state the action applies
to: ` + store.StateNames(applies, ", ") + `), or every task with --all. The
tasks are worked through in batches of 1,000, each in one transaction, and the
command says how many tasks it matched and how many it changed; --dry-run only
counts. With task ids, a task that is unknown or in another state is not
matched, and the command exits 1 after saying so. --format json prints
{"action", "dry_run", "matched", "changed"}.`,
		Example: bc.example,
		RunE: func(cmd *cobra.Command, ids []string) error {
			ctx := cmd.Context()
			req := api.BulkRequest{Action: bc.action, DryRun: dryRun}
			switch {
			case len(ids) > 0 && (sel.given() || all):
				return usagef("task ids and --queue/--kind/--state/--since/--until/--all exclude each other: give one or the other")
			case len(ids) > 0:
				req.IDs = ids
			case !sel.given() && !all:
				return usagef("select the tasks to %s: give task ids, --queue, --kind, --state, --since or --until, or --all for every task", bc.use)
			default:
				f, err := sel.filter(time.Now(), applies, bc.use)
				if err != nil {
					return err
				}
				req.Filter = &f
			}
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.Bulk(ctx, req)
			if err != nil {
				return fmt.Errorf("%s: %w", bc.use, err)
			}
			if g.Format != formatHuman {
				if err := writeJSON(g.stdout, g.Format, res); err != nil {
					return err
				}
			} else {
				printBulk(g, bc, res)
			}
			if missing := distinct(ids) - res.Matched; len(ids) > 0 && missing > 0 {
				return &exitCodeError{code: exitError, msg: fmt.Sprintf("%s: %s of the %s given not matched: unknown, or not %s",
					bc.use, plural(missing, "task"), plural(distinct(ids), "id"), bc.matches)}
			}
			return nil
		},
	}
	sel.register(cmd, store.StateNames(applies, ","))
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "every task the action applies to")
	f.BoolVar(&dryRun, "dry-run", false, "only count the tasks the action would look at; change nothing")
	return cmd
}

// printBulk says what a bulk command did, for people.
func printBulk(g *globals, bc bulkCommand, res api.BulkResult) {
	switch {
	case res.DryRun:
		fmt.Fprintf(g.stdout, "%s %s (dry run: nothing changed)\n", bc.would, plural(res.Matched, "task"))
	case res.Changed == res.Matched:
		fmt.Fprintf(g.stdout, "%s %s\n", bc.done, plural(res.Changed, "task"))
	default:
		why := ""
		switch bc.action {
		case api.BulkRetry:
			why = " (the others' unique keys are held by other tasks)"
		case api.BulkCancel:
			why = " (the others were running and already asked to stop)"
		}
		fmt.Fprintf(g.stdout, "%s %d of %s matched%s\n", bc.done, res.Changed, plural(res.Matched, "task"), why)
	}
}

// distinct counts the distinct tasks ids name, as the server reads them
// (in their canonical form).
func distinct(ids []string) int {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if u, err := uuid.Parse(id); err == nil {
			id = u.String()
		}
		seen[id] = true
	}
	return len(seen)
}
