package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

// Exit codes of `task --monitor`: the task's final state, or 3 when there
// is no such task or the server could not be reached for --timeout.
const (
	exitTaskCompleted = 0
	exitTaskFailed    = 1
	exitTaskCancelled = 2
	exitTaskUnknown   = 3
)

// defaultMonitorTimeout is how long `task --monitor` keeps trying to reach
// a server that does not answer, by default.
const defaultMonitorTimeout = time.Minute

// maxReconnectDelay bounds the wait between two reconnects of a monitor.
const maxReconnectDelay = 5 * time.Second

// resultLimit bounds how much of a result, args or error a snapshot shows.
const resultLimit = 2000

func newTaskCmd(g *globals) *cobra.Command {
	var (
		monitor, cancel, retry, del, runNow, stream bool
		timeout                                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "task ID",
		Short: "Show a task; monitor, cancel or retry it",
		Long: `Show a snapshot of one task: its kind, queue, state, attempts, times, worker,
result and last error, and its waitpoints, if it has any, with their tokens
and signals. With --format json, print the API's task object (the waitpoints
are GET /v1/tasks/{id}/waitpoints).

--monitor streams the task's events until it finishes and exits with its
outcome:

  0  completed
  1  failed
  2  cancelled
  3  no such task (or a malformed id), or the server could not be reached
     for --timeout

Events are printed as one readable line each on a terminal, and as NDJSON
(one JSON event per line) when the output is not a terminal (a pipe, a
file); --format human or --format ndjson chooses either way. A dropped
stream is resumed where it stopped; while the server cannot be reached, the
monitor tries again for up to --timeout (0: for ever). Ctrl-C stops
monitoring (exit code 130) and leaves the task alone.

--cancel cancels a pending task at once, or asks the worker of a running task
to stop. --retry makes a failed or cancelled task pending again. --run-now makes
a pending task scheduled for later ready now. Each can be combined with
--monitor to wait for the outcome. --delete deletes a finished task and its
events. (weft retry, cancel, delete and run-now do the same to many tasks.)

A pending task that nothing will run says why on a "hint" line: its queue is
paused, or no live worker works its queue, runs its kind or has the labels it
requires (see weft workers). A pending task held back says why on a "blocked"
line: a limit's key at its cap ("waiting for limit per-customer (key acme): 3
of 3 in use"), a rate limit ("rate limit openai (key default) allows the next
at 12:00:03"), its queue paused, or no live worker with its labels.

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
			var actions []string
			for _, a := range []struct {
				flag string
				set  bool
			}{{"--cancel", cancel}, {"--retry", retry}, {"--delete", del}, {"--run-now", runNow}} {
				if a.set {
					actions = append(actions, a.flag)
				}
			}
			if len(actions) > 1 {
				return usagef("%s were both given: choose one", strings.Join(actions, " and "))
			}
			if stream && (monitor || len(actions) > 0) {
				return usagef("--stream prints the task's output alone: leave out --monitor and the actions")
			}
			if del && monitor {
				return usagef("--delete and --monitor exclude each other: a deleted task has no events to follow")
			}
			if timeout < 0 {
				return usagef("--timeout: %s is negative (0 waits for ever)", timeout)
			}
			if err := checkTaskID(id); err != nil {
				if monitor {
					return &exitCodeError{code: exitTaskUnknown, msg: err.Error()}
				}
				return &usageError{err: err}
			}
			mon := monitorOptions{timeout: timeout}
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			if stream {
				return streamTask(ctx, g, b, id)
			}
			switch {
			case cancel, retry, del, runNow:
				op, verb := b.Cancel, "cancel"
				switch {
				case retry:
					op, verb = b.Retry, "retry"
				case del:
					op, verb = b.DeleteTask, "delete"
				case runNow:
					op, verb = b.RunTask, "run"
				}
				t, err := op(ctx, id)
				if err != nil {
					err = fmt.Errorf("%s %s: %w", verb, id, err)
					if monitor && notFound(err) {
						return &exitCodeError{code: exitTaskUnknown, msg: err.Error()}
					}
					return err
				}
				if monitor {
					if g.Format == formatHuman && (g.formatFlag || isTerminal(g.stdout)) {
						printAction(g.stderr, verb, t)
					}
					return monitorTask(ctx, g, b, id, mon)
				}
				if g.Format != formatHuman {
					return writeJSON(g.stdout, g.Format, t)
				}
				printAction(g.stdout, verb, t)
				return nil
			case monitor:
				return monitorTask(ctx, g, b, id, mon)
			}
			t, err := b.Get(ctx, id)
			if err != nil {
				return fmt.Errorf("task %s: %w", id, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, t)
			}
			// A server older than waits has no such route: its tasks
			// have no waitpoints to show.
			wps, err := b.Waitpoints(ctx, id)
			if err != nil && !notFound(err) {
				return fmt.Errorf("task %s: waitpoints: %w", id, err)
			}
			now := time.Now()
			printTask(g.stdout, t, now)
			printWaitpoints(g.stdout, wps.Waitpoints, now)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&monitor, "monitor", false, "stream the task's events until it finishes; exit 0 completed, 1 failed, 2 cancelled, 3 no such task or server unreachable")
	f.DurationVar(&timeout, "timeout", defaultMonitorTimeout, "with --monitor: how long to keep trying to reach a server that does not answer before exiting 3 (0: for ever)")
	f.BoolVar(&cancel, "cancel", false, "cancel the task (a running task is asked to stop)")
	f.BoolVar(&retry, "retry", false, "make a failed or cancelled task pending again")
	f.BoolVar(&del, "delete", false, "delete a finished task and its events")
	f.BoolVar(&runNow, "run-now", false, "make a pending task scheduled for later ready now")
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
	case verb == "delete":
		fmt.Fprintf(w, "task %s: deleted (it was %s)\n", t.ID, t.State)
	case verb == "run":
		fmt.Fprintf(w, "task %s: %s, ready now\n", t.ID, t.State)
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
	if t.BlockedReason != nil {
		line("blocked", t.BlockedReason.Describe(time.Local))
	}
	line("hint", t.Hint)
	if t.FlowID != "" {
		line("flow", t.FlowID+" (key "+t.Key+")")
	}
	line("timeout", t.Timeout)
	line("unique key", t.UniqueKey)
	line("limits", api.KeyValues(t.Limits))
	if t.Cost > 0 {
		line("cost", strconv.Itoa(t.Cost))
	}
	line("requires", api.RequirementsText(t.Requires))
	line("fairness key", t.FairnessKey)
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

// monitorOptions tune monitorTask.
type monitorOptions struct {
	// timeout is how long the server may stay unreachable (or keep
	// dropping the stream without delivering an event) before the monitor
	// gives up; 0 is for ever.
	timeout time.Duration
}

// monitorTask streams a task's events until it is terminal and returns
// its outcome as the exit code: nil for completed, an *exitCodeError for
// failed or cancelled, and for a task that does not exist or a server
// that could not be reached for o.timeout.
func monitorTask(ctx context.Context, g *globals, b backend, id string, o monitorOptions) error {
	// Readable lines for a person at a terminal, NDJSON for a program,
	// unless a format was asked for.
	human := g.Format == formatHuman && (g.formatFlag || isTerminal(g.stdout))
	var (
		after    int64
		final    string
		failures int
		// down is when the server stopped answering, zero while it
		// answers; the timeout runs from there.
		down time.Time
		log  = g.logger(g.stderr)
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
		if notFound(streamErr) {
			return &exitCodeError{code: exitTaskUnknown, msg: fmt.Sprintf("monitor %s: %v", id, streamErr)}
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
			switch {
			case notFound(err):
				return &exitCodeError{code: exitTaskUnknown, msg: fmt.Sprintf("monitor %s: %v", id, err)}
			case err != nil && !retriable(err):
				return fmt.Errorf("monitor %s: %w", id, err)
			case err != nil:
				streamErr = err
			case store.State(t.State).Terminal():
				return taskOutcome(ctx, b, id, t.State)
			}
		}
		if got > 0 {
			failures = 0
		}
		switch {
		case got > 0 || streamErr == nil:
			down = time.Time{}
		case down.IsZero():
			down = time.Now()
		}
		if o.timeout > 0 && !down.IsZero() && time.Since(down) >= o.timeout {
			return &exitCodeError{code: exitTaskUnknown, msg: fmt.Sprintf("monitor %s: gave up after %s without reaching the server (--timeout): %v", id, o.timeout, streamErr)}
		}
		failures++
		delay := min(time.Duration(1<<min(failures-1, 5))*250*time.Millisecond, maxReconnectDelay)
		if streamErr != nil {
			log.Warn("event stream interrupted; reconnecting", "task", id, "after_seq", after, "in", delay, "err", streamErr)
		} else {
			log.Warn("the server ended the event stream before the task finished; reconnecting", "task", id, "after_seq", after, "in", delay)
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// notFound reports whether err is the API's 404: no such task.
func notFound(err error) bool {
	var ae *apiclient.Error
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// checkTaskID refuses what cannot be a task id before anything is asked
// of the server, with what one looks like.
func checkTaskID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return fmt.Errorf("malformed task id %q: a task id is a UUID such as 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e (`weft list` shows them)", id)
	}
	return nil
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
