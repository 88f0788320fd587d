package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

func newQueuesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "List queues with their task counts; pause or resume one",
		Long: `List every queue with its number of tasks in each state, whether it is paused,
how long its oldest ready task has been waiting (a growing wait means the
queue needs more workers), and how many live workers work it: a queue with
pending tasks and no worker is flagged, since nothing will run them until a
worker for it starts (see 'weft workers').

'weft queues pause NAME' stops workers on every node from claiming the queue's
tasks (tasks can still be enqueued, and running ones finish);
'weft queues resume NAME' lets them go on.`,
		Example: `  weft queues
  weft queues --format json
  weft queues pause emails
  weft queues resume emails`,
		Args: exactArgs(0, "no arguments, or a subcommand (pause, resume)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
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
	cmd.AddCommand(newQueuePauseCmd(g, true), newQueuePauseCmd(g, false))
	return cmd
}

// newQueuePauseCmd builds `queues pause` (paused true) or `queues resume`.
func newQueuePauseCmd(g *globals, paused bool) *cobra.Command {
	use, short, done := "pause", "Stop claims from a queue on every node", "paused"
	long := `Stop workers on every node from claiming the queue's tasks. Tasks can still be
enqueued into it, and tasks already running finish. A queue may be paused
before it has any task.`
	if !paused {
		use, short, done = "resume", "Let claims from a paused queue go on", "resumed"
		long = `Let workers claim the queue's tasks again after 'weft queues pause'.`
	}
	return &cobra.Command{
		Use:     use + " NAME",
		Short:   short,
		Long:    long,
		Example: "  weft queues " + use + " emails",
		Args:    exactArgs(1, "one queue name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			op := b.PauseQueue
			if !paused {
				op = b.ResumeQueue
			}
			q, err := op(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("%s queue %s: %w", use, args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, q)
			}
			fmt.Fprintf(g.stdout, "queue %s %s (%d pending, %d running)\n", q.Name, done, q.Counts["pending"], q.Counts["running"])
			return nil
		},
	}
}
