package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

func newQueuesCmd(g *globals) *cobra.Command {
	var (
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "List queues with their task counts; pause or resume one",
		Long: `List every queue with its number of tasks in each state, whether it is paused,
how long its oldest ready task has been waiting (a growing wait means the
queue needs more workers), and how many live workers work it: a queue with
pending tasks and no worker is flagged, since nothing will run them until a
worker for it starts (see 'weft workers').

--watch refreshes the table every --interval, with the rates of the last
interval (tasks enqueued, completed and failed per second, counted from the
feed of every task's events, GET /v1/events): redrawn in place on a terminal,
otherwise one NDJSON line per refresh ({"at":..., "queues":[{..., "rates":
{"created":..., "completed":..., "failed":...}}]}). Ctrl-C stops it.

'weft queues pause NAME' stops workers on every node from claiming the queue's
tasks (tasks can still be enqueued, and running ones finish);
'weft queues resume NAME' lets them go on. 'weft queues fairness NAME' shows or
sets how the queue is shared among fairness keys (tenants).`,
		Example: `  weft queues
  weft queues --watch
  weft queues --watch --interval 10s > queues.ndjson
  weft queues --format json
  weft queues pause emails
  weft queues resume emails
  weft queues fairness reports acme=3`,
		Args: exactArgs(0, "no arguments, or a subcommand (pause, resume, fairness)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usagef("--interval: %s is not positive", interval)
			}
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			if watch {
				return watchQueues(cmd.Context(), g, b, interval)
			}
			list, err := b.Queues(cmd.Context())
			if err != nil {
				return fmt.Errorf("queues: %w", err)
			}
			switch g.Format {
			case formatJSON:
				if list.Queues == nil {
					list.Queues = []api.Queue{}
				}
				return writeJSON(g.stdout, g.Format, list)
			case formatNDJSON:
				for _, q := range list.Queues {
					if err := writeJSON(g.stdout, g.Format, q); err != nil {
						return err
					}
				}
				return nil
			}
			if len(list.Queues) == 0 {
				fmt.Fprintln(g.stdout, "no queues (a queue appears once it has a task, or is paused)")
				return nil
			}
			now := time.Now()
			tw := newTable(g.stdout)
			states := store.States()
			fmt.Fprintln(tw, "QUEUE\tPAUSED\t"+strings.ToUpper(store.StateNames(states, "\t"))+"\tOLDEST READY\tWORKERS")
			for _, q := range list.Queues {
				paused, oldest := "no", "-"
				if q.Paused {
					paused = "yes"
				}
				if q.OldestReadyAt != nil {
					oldest = "waiting " + shortDuration(max(now.Sub(*q.OldestReadyAt), 0))
				}
				fmt.Fprintf(tw, "%s\t%s\t", q.Name, paused)
				for _, st := range states {
					fmt.Fprintf(tw, "%d\t", q.Counts[string(st)])
				}
				workers := fmt.Sprint(q.Workers)
				if unserved(q) {
					workers += " (none: its pending tasks wait)"
				}
				fmt.Fprintf(tw, "%s\t%s\n", oldest, workers)
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh every --interval with rates, until Ctrl-C: in place on a terminal, NDJSON lines otherwise")
	cmd.Flags().DurationVar(&interval, "interval", defaultWatchInterval, "how often --watch refreshes")
	cmd.AddCommand(newQueuePauseCmd(g, true), newQueuePauseCmd(g, false), newQueueFairnessCmd(g))
	return cmd
}

// newQueuePauseCmd builds `queues pause` (paused true) or `queues resume`.
func newQueuePauseCmd(g *globals, paused bool) *cobra.Command {
	use, short, done := "pause", "Stop claims from a queue on every node", "paused"
	long := `Stop workers on every node from claiming the queue's tasks. Tasks can still be
enqueued into it, and tasks already running finish.

The queue must exist (hold a task, or be paused already): a misspelt name is
refused rather than paused. To pause a queue before it has any task, pass
--create.`
	example := "  weft queues pause emails\n  weft queues pause reports --create   # before its first task"
	if !paused {
		use, short, done = "resume", "Let claims from a paused queue go on", "resumed"
		long = `Let workers claim the queue's tasks again after 'weft queues pause'.`
		example = "  weft queues resume emails"
	}
	var create bool
	cmd := &cobra.Command{
		Use:     use + " NAME",
		Short:   short,
		Long:    long,
		Example: example,
		Args:    exactArgs(1, "one queue name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, name := cmd.Context(), args[0]
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			// A malformed name is the server's to refuse, as it does.
			if !create && store.ValidName(name) {
				if err := queueExists(ctx, b, name, paused); err != nil {
					return err
				}
			}
			op := b.PauseQueue
			if !paused {
				op = b.ResumeQueue
			}
			q, err := op(ctx, name)
			if err != nil {
				return fmt.Errorf("%s queue %s: %w", use, name, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, q)
			}
			fmt.Fprintf(g.stdout, "queue %s %s (%d pending, %d running)\n", q.Name, done, q.Counts["pending"], q.Counts["running"])
			return nil
		},
	}
	if paused {
		cmd.Flags().BoolVar(&create, "create", false, "pause the queue even though it has no task yet")
	}
	return cmd
}

// queueExists refuses a queue the server does not list (no task, not
// paused), naming the queues it has: most likely the name is misspelt.
func queueExists(ctx context.Context, b backend, name string, pausing bool) error {
	list, err := b.Queues(ctx)
	if err != nil {
		return fmt.Errorf("queues: %w", err)
	}
	names := make([]string, 0, len(list.Queues))
	for _, q := range list.Queues {
		if q.Name == name {
			return nil
		}
		names = append(names, q.Name)
	}
	known := "there are no queues yet"
	if len(names) > 0 {
		known = "the queues are " + strings.Join(names, ", ")
	}
	if pausing {
		return fmt.Errorf("no queue named %q (%s): check the name, or pass --create to pause it before its first task", name, known)
	}
	return fmt.Errorf("no queue named %q (%s): there is nothing to resume", name, known)
}
