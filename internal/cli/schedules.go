package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

func newSchedulesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "schedules",
		Aliases: []string{"schedule"},
		Short:   "List cron schedules; set, pause, resume, trigger or delete one",
		Long: `List the schedules with their next run. A schedule enqueues one task at every
slot of its spec — a cron expression ("0 3 * * *", in the server's time zone
unless it starts with CRON_TZ=Zone), a descriptor (@hourly, @daily, @weekly,
@monthly) or "@every <duration>" — at most once per slot across all servers on
the database. 'weft serve' runs them (its maintenance leader does).

'weft schedule' is the same command: 'weft schedule set ...' reads well too.`,
		Example: `  weft schedules
  weft schedule set nightly-report "0 3 * * *" report.build --args '{"scope":"daily"}'
  weft schedule trigger nightly-report
  weft schedule pause nightly-report
  weft schedules --format json`,
		Args: exactArgs(0, "no arguments, or a subcommand (set, show, pause, resume, trigger, delete)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			list, err := b.Schedules(cmd.Context())
			if err != nil {
				return fmt.Errorf("schedules: %w", err)
			}
			switch g.Format {
			case formatJSON:
				if list.Schedules == nil {
					list.Schedules = []api.Schedule{}
				}
				return writeJSON(g.stdout, g.Format, list)
			case formatNDJSON:
				for _, sc := range list.Schedules {
					if err := writeJSON(g.stdout, g.Format, sc); err != nil {
						return err
					}
				}
				return nil
			}
			if len(list.Schedules) == 0 {
				fmt.Fprintln(g.stdout, "no schedules (add one with: weft schedule set NAME SPEC KIND)")
				return nil
			}
			now := time.Now()
			tw := newTable(g.stdout)
			fmt.Fprintln(tw, "NAME\tSPEC\tKIND\tQUEUE\tNEXT RUN\tMISSED")
			for _, sc := range list.Schedules {
				next := when(sc.NextAt, now)
				if sc.Paused {
					next = "paused"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, sc.Spec, sc.Kind, sc.Queue, next, sc.Missed)
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		},
	}
	cmd.AddCommand(newScheduleSetCmd(g), newScheduleShowCmd(g))
	for _, a := range []scheduleAction{
		{use: "pause", short: "Stop a schedule from enqueueing", done: "paused",
			long: "Stop the schedule from enqueueing until 'weft schedule resume'. Tasks it enqueued already are not touched."},
		{use: "resume", short: "Let a paused schedule enqueue again", done: "resumed",
			long: "Let a paused schedule enqueue again. The slots it missed meanwhile follow its --missed policy: skipped (the default), or one task for the latest."},
		{use: "delete", short: "Delete a schedule", done: "deleted",
			long: "Delete the schedule. Tasks it enqueued already stay."},
	} {
		cmd.AddCommand(newScheduleActionCmd(g, a))
	}
	cmd.AddCommand(newScheduleTriggerCmd(g))
	return cmd
}

func newScheduleSetCmd(g *globals) *cobra.Command {
	var (
		argsFlag, metadataFlag, queue, missed string
		priority, maxAttempts                 int
		paused                                bool
	)
	cmd := &cobra.Command{
		Use:   "set NAME SPEC KIND",
		Short: "Create or replace a schedule",
		Long: `Create the schedule NAME, or replace it whole: at every slot of SPEC, one task
of KIND with --args is enqueued. SPEC is a cron expression ("0 3 * * *", "*/15
* * * *"; quote it), a descriptor (@hourly, @daily, @weekly, @monthly) or
"@every <duration>" (at least 1s). Its first run is the first slot from now.

--missed says what happens to slots that pass while no server runs the
schedule: skip them (the default), or run_once: one task for the latest.`,
		Example: `  weft schedule set nightly-report "0 3 * * *" report.build --args '{"scope":"daily"}' --queue reports
  weft schedule set heartbeat "@every 30s" http --args '{"url":"https://example.com/ping"}'
  weft schedule set weekly-digest @weekly digest.send --missed run_once --max-attempts 3`,
		Args: exactArgs(3, "NAME, SPEC and KIND (for example: weft schedule set nightly \"0 3 * * *\" report.build)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := api.ScheduleInput{Spec: args[1], Kind: args[2], Queue: queue, Priority: priority,
				MaxAttempts: maxAttempts, Missed: missed, Paused: paused}
			var err error
			if in.Args, err = readJSONFlag("args", argsFlag, g.stdin); err != nil {
				return err
			}
			if in.Metadata, err = readJSONFlag("metadata", metadataFlag, g.stdin); err != nil {
				return err
			}
			switch store.Missed(missed) {
			case "", store.MissedSkip, store.MissedRunOnce:
			default:
				return usagef("--missed: %q is not a policy (use skip or run_once)", missed)
			}
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			sc, err := b.PutSchedule(cmd.Context(), args[0], in)
			if err != nil {
				return fmt.Errorf("schedule %s: %w", args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, sc)
			}
			next := "next run " + when(sc.NextAt, time.Now())
			if sc.Paused {
				next = "paused"
			}
			fmt.Fprintf(g.stdout, "schedule %s set: %s on queue %s at %q; %s\n", sc.Name, sc.Kind, sc.Queue, sc.Spec, next)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&argsFlag, "args", "", "arguments of every task: JSON, @FILE, or - for standard input (default {})")
	f.StringVar(&queue, "queue", "", "queue of its tasks (default \"default\")")
	f.IntVar(&priority, "priority", 0, "priority of its tasks within the queue")
	f.IntVar(&maxAttempts, "max-attempts", 0, "attempts of each task, 1 to 10000 (default 25)")
	f.StringVar(&metadataFlag, "metadata", "", "metadata of its tasks: a JSON object, @FILE, or -")
	f.StringVar(&missed, "missed", "", "slots missed while no server ran it: skip (default) or run_once")
	f.BoolVar(&paused, "paused", false, "create it paused")
	return cmd
}

func newScheduleShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one schedule",
		Long:    "Show one schedule: its spec, the task it enqueues, and its next run. With --format json, print the API's schedule object.",
		Example: "  weft schedule show nightly-report",
		Args:    exactArgs(1, "one schedule name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			sc, err := b.Schedule(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("schedule %s: %w", args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, sc)
			}
			printSchedule(g.stdout, sc, time.Now())
			return nil
		},
	}
}

// printSchedule prints a schedule for people.
func printSchedule(w io.Writer, sc api.Schedule, now time.Time) {
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-12s %s\n", label+":", value)
		}
	}
	line("name", sc.Name)
	line("spec", sc.Spec)
	line("kind", sc.Kind)
	line("queue", sc.Queue)
	line("args", prettyJSON(sc.Args, resultLimit))
	line("priority", fmt.Sprint(sc.Priority))
	line("attempts", fmt.Sprint(sc.MaxAttempts))
	line("metadata", prettyJSON(sc.Metadata, resultLimit))
	line("missed", sc.Missed)
	next := when(sc.NextAt, now)
	if sc.Paused {
		next = "paused (its next slot was " + next + ")"
	}
	line("next run", next)
	line("created", when(sc.CreatedAt, now))
	line("updated", when(sc.UpdatedAt, now))
}

// scheduleAction is weft schedule pause, resume or delete.
type scheduleAction struct {
	use, short, long, done string
}

func newScheduleActionCmd(g *globals, a scheduleAction) *cobra.Command {
	return &cobra.Command{
		Use:     a.use + " NAME",
		Short:   a.short,
		Long:    a.long,
		Example: "  weft schedule " + a.use + " nightly-report",
		Args:    exactArgs(1, "one schedule name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			op := b.PauseSchedule
			switch a.use {
			case "resume":
				op = b.ResumeSchedule
			case "delete":
				op = b.DeleteSchedule
			}
			sc, err := op(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("%s schedule %s: %w", a.use, args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, sc)
			}
			switch a.use {
			case "resume":
				fmt.Fprintf(g.stdout, "schedule %s resumed; next run %s\n", sc.Name, when(sc.NextAt, time.Now()))
			case "delete":
				fmt.Fprintf(g.stdout, "schedule %s deleted (the tasks it enqueued stay)\n", sc.Name)
			default:
				fmt.Fprintf(g.stdout, "schedule %s %s\n", sc.Name, a.done)
			}
			return nil
		},
	}
}

func newScheduleTriggerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "trigger NAME",
		Short: "Enqueue one task from a schedule now",
		Long: `Enqueue one task from the schedule now, as its slots do, and print its id. Its
next run does not move, and a paused schedule can be triggered too. With
--format json the answer is {"schedule": ..., "id": ...}.`,
		Example: "  weft schedule trigger nightly-report\n  weft task $(weft schedule trigger nightly-report) --monitor",
		Args:    exactArgs(1, "one schedule name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			t, err := b.TriggerSchedule(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("trigger schedule %s: %w", args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, t)
			}
			fmt.Fprintln(g.stdout, t.ID)
			return nil
		},
	}
}
