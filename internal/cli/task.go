package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

// Exit codes of `task --monitor`, by the task's final state.
const (
	exitTaskCompleted = 0
	exitTaskFailed    = 1
	exitTaskCancelled = 2
)

// maxReconnects bounds how many times in a row a monitor reconnects to an
// event stream that dropped without delivering anything new.
const maxReconnects = 5

// resultLimit bounds how much of a result, args or error a snapshot shows.
const resultLimit = 2000

func newTaskCmd(g *globals) *cobra.Command {
	var monitor, cancel, retry, stream bool
	cmd := &cobra.Command{
		Use:   "task ID",
		Short: "Show a task; monitor, cancel or retry it",
		Long: `Show a snapshot of one task: its kind, queue, state, attempts, times, worker,
result and last error. With --format json, print the API's task object.

--monitor streams the task's events until it finishes and exits with its
outcome: 0 completed, 1 failed, 2 cancelled. Events are printed as NDJSON (one
JSON event per line) unless --format human is given explicitly, which prints
one readable line per event. A dropped stream is resumed where it stopped.
Ctrl-C stops monitoring (exit code 130) and leaves the task alone.

--cancel cancels a pending task at once, or asks the worker of a running task
to stop. --retry makes a failed or cancelled task pending again. Either can be
combined with --monitor to wait for the outcome.

--stream prints the task's output stream — the frames its handler writes —
from the first frame, live, and exits when the task is final, with the exit
codes of --monitor. Text frames are printed as written, JSON frames as one
line of JSON each; with --format json or ndjson every frame, and the end, is
a line of NDJSON.`,
		Example: `  weft task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e
  weft task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --format json
  weft task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --monitor && echo done
  weft task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --cancel
  weft task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --retry --monitor --format human
  weft task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --stream`,
		Args: exactArgs(1, "one task id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			if cancel && retry {
				return usagef("--cancel and --retry were both given: choose one")
			}
			if stream && (monitor || cancel || retry) {
				return usagef("--stream prints the task's output alone: leave out --monitor, --cancel and --retry")
			}
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			if stream {
				return streamTask(ctx, g, b, id)
			}
			switch {
			case cancel, retry:
				op, verb := b.Cancel, "cancel"
				if retry {
					op, verb = b.Retry, "retry"
				}
				t, err := op(ctx, id)
				if err != nil {
					return fmt.Errorf("%s %s: %w", verb, id, err)
				}
				if monitor {
					if g.Format == formatHuman && g.formatFlag {
						printAction(g.stderr, verb, t)
					}
					return monitorTask(ctx, g, b, id)
				}
				if g.Format != formatHuman {
					return writeJSON(g.stdout, g.Format, t)
				}
				printAction(g.stdout, verb, t)
				return nil
			case monitor:
				return monitorTask(ctx, g, b, id)
			}
			t, err := b.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("task %s: %w", id, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, t)
			}
			printTask(g.stdout, t, time.Now())
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&monitor, "monitor", false, "stream the task's events until it finishes; exit 0 completed, 1 failed, 2 cancelled")
	f.BoolVar(&cancel, "cancel", false, "cancel the task (a running task is asked to stop)")
	f.BoolVar(&retry, "retry", false, "make a failed or cancelled task pending again")
	f.BoolVar(&stream, "stream", false, "print the task's output stream live until it ends; exit codes as --monitor's")
	return cmd
}

// printAction says what cancel or retry did.
func printAction(w io.Writer, verb string, t api.Task) {
	switch {
	case verb == "cancel" && t.State == string(store.StateRunning):
		fmt.Fprintf(w, "task %s: running, cancellation requested (its worker is asked to stop)\n", t.ID)
	case verb == "retry":
		fmt.Fprintf(w, "task %s: %s again, after %s (at most %d)\n", t.ID, t.State, plural(t.Attempt, "attempt"), t.MaxAttempts)
	default:
		fmt.Fprintf(w, "task %s: %s\n", t.ID, t.State)
	}
}

// printTask prints a snapshot for people.
func printTask(w io.Writer, t api.Task, now time.Time) {
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-12s %s\n", label+":", value)
		}
	}
	line("id", t.ID)
	line("kind", t.Kind)
	line("queue", t.Queue)
	state := t.State
	if t.CancelRequested && !store.State(t.State).Terminal() {
		state += " (cancellation requested)"
	}
	line("state", state)
	line("attempt", fmt.Sprintf("%d/%d", t.Attempt, t.MaxAttempts))
	line("priority", fmt.Sprint(t.Priority))
	runAt := when(t.RunAt, now)
	if t.State == string(store.StatePending) && t.RunAt.After(now) {
		runAt += ", scheduled"
	}
	line("run at", runAt)
	line("created", when(t.CreatedAt, now))
	if t.AttemptedAt != nil {
		line("attempted", whenPtr(t.AttemptedAt, now))
	}
	if t.FinalizedAt != nil {
		line("finalized", whenPtr(t.FinalizedAt, now))
	}
	line("worker", t.Worker)
	line("timeout", t.Timeout)
	line("unique key", t.UniqueKey)
	line("args", prettyJSON(t.Args, resultLimit))
	line("metadata", prettyJSON(t.Metadata, resultLimit))
	line("result", prettyJSON(t.Result, resultLimit))
	if n := len(t.Errors); n > 0 {
		last := t.Errors[n-1]
		line("errors", fmt.Sprintf("%d (the last below)", n))
		msg := strings.ReplaceAll(truncate(last.Error, resultLimit), "\n", "\n             ")
		line("last error", fmt.Sprintf("attempt %d, %s:\n             %s", last.Attempt, when(last.At, now), msg))
	}
}

// monitorTask streams a task's events until it is terminal and returns
// its outcome as the exit code: nil for completed, an *exitCodeError for
// failed or cancelled.
func monitorTask(ctx context.Context, g *globals, b backend, id string) error {
	human := g.formatFlag && g.Format == formatHuman
	var (
		after    int64
		final    string
		failures int
		log      = g.logger(g.stderr)
	)
	for {
		got := 0
		var streamErr error
		for ev, err := range b.Events(ctx, id, after, true) {
			if err != nil {
				streamErr = err
				break
			}
			got++
			after = ev.Seq
			if err := printEvent(g.stdout, ev, human); err != nil {
				return err
			}
			// A terminal event followed by more (an operator's retry)
			// is not the end.
			final = ""
			if terminalEvent(ev.Type) {
				final = ev.Type
			}
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if streamErr != nil && !retriable(streamErr) {
			return fmt.Errorf("monitor %s: %w", id, streamErr)
		}
		if final != "" {
			return taskOutcome(ctx, b, id, final)
		}
		if streamErr == nil && got == 0 {
			// Nothing new and the stream ended: if the task is
			// terminal, its terminal event came before the cursor.
			t, err := b.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("monitor %s: %w", id, err)
			}
			if store.State(t.State).Terminal() {
				return taskOutcome(ctx, b, id, t.State)
			}
		}
		if got > 0 {
			failures = 0
		}
		failures++
		if failures > maxReconnects {
			if streamErr == nil {
				streamErr = errors.New("the server ended the stream before the task finished")
			}
			return fmt.Errorf("monitor %s: gave up after %d reconnects: %w", id, maxReconnects, streamErr)
		}
		delay := time.Duration(1<<(failures-1)) * 250 * time.Millisecond
		log.Warn("event stream interrupted; reconnecting", "task", id, "after_seq", after, "in", delay, "err", streamErr)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// retriable reports whether a failed event stream is worth resuming: not
// when the server answered that the request itself is wrong.
func retriable(err error) bool {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == 408 || ae.Status == 429
	}
	return true
}

// taskOutcome turns a final state into the monitor's exit.
func taskOutcome(ctx context.Context, b backend, id, state string) error {
	switch state {
	case string(store.StateCompleted):
		return nil
	case string(store.StateCancelled):
		return &exitCodeError{code: exitTaskCancelled, msg: fmt.Sprintf("task %s was cancelled", id)}
	}
	msg := fmt.Sprintf("task %s failed", id)
	if t, err := b.Get(ctx, id); err == nil && len(t.Errors) > 0 {
		last := t.Errors[len(t.Errors)-1].Error
		msg += ": " + truncate(strings.TrimSpace(last), 500)
	}
	return &exitCodeError{code: exitTaskFailed, msg: msg}
}

// printEvent prints one event: a JSON line, or a readable line.
func printEvent(w io.Writer, ev api.Event, human bool) error {
	if !human {
		return writeJSON(w, formatNDJSON, ev)
	}
	s := fmt.Sprintf("%s  #%-6d %-16s attempt %d", ev.At.Local().Format("2006-01-02 15:04:05.000"), ev.Seq, ev.Type, ev.Attempt)
	if len(ev.Data) > 0 && string(ev.Data) != "null" && string(ev.Data) != "{}" {
		s += "  " + truncate(string(ev.Data), 500)
	}
	if _, err := fmt.Fprintln(w, s); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
