package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
)

// waitBackend is what `signal` and the waitpoints of `task` need: the
// server's routes, or internal/ops's Waits on the database.
type waitBackend interface {
	Signal(ctx context.Context, req api.SignalRequest) (api.SignalReceipt, error)
	SignalTask(ctx context.Context, id string, req api.TaskSignalRequest) (api.SignalReceipt, error)
	Waitpoints(ctx context.Context, id string) (api.WaitpointList, error)
}

func newSignalCmd(g *globals) *cobra.Command {
	var name, payload, key, source, task, waitpoint string
	cmd := &cobra.Command{
		Use:   "signal [TOKEN]",
		Short: "Send a signal to a waitpoint of a waiting task",
		Long: `Send a signal to a waitpoint: with the waitpoint's TOKEN, as anyone it was
handed to would, or, with API access, by the task's id and the waitpoint's
name (--task and --waitpoint). When the signal completes the task's wait, the
task is pending again at once and its handler runs with the signals received.

--name is the signal's name, one the waitpoint allows; --payload its JSON
value (JSON text, @FILE, or - for standard input; default null). --key is the
idempotency key: a repeat with the same key is answered with the first
receipt and changes nothing, so a command that may have failed on its way can
be run again safely with the same key. Without --key, a random key is made
and printed, to give to --key when repeating. --source tells senders apart
for a wait on a count of distinct sources (default: the key).

A token refused for any reason (malformed, forged, expired, signed with a key
the server does not have) and one whose waitpoint no longer exists get the
same answer. A waitpoint whose wait ended (by its signals, its timeout or its
expiry) refuses signals with 409 waitpoint_closed, saying how it ended.

Given --database (and no --server), the signal is stored on the database
directly; tokens are then verified with WEFT_SIGNING_KEYS when set, as the
server's are, else with the key kept in the database.`,
		Example: `  weft signal "$TOKEN" --name approve --payload '{"by":"ada"}' --key approve-ada
  weft signal --task 0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e --waitpoint approval --name reject
  weft signal "$TOKEN" --name result --payload @result.json --format json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("expected at most one token, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			byToken := len(args) == 1
			switch {
			case byToken && (task != "" || waitpoint != ""):
				return usagef("a TOKEN names the waitpoint already: give either a TOKEN or --task and --waitpoint")
			case !byToken && (task == "" || waitpoint == ""):
				return usagef("give the waitpoint's TOKEN, or --task and --waitpoint")
			case name == "":
				return usagef("--name is required: the signal's name, one the waitpoint allows")
			}
			if !byToken {
				if err := checkTaskID(task); err != nil {
					return &usageError{err: err}
				}
			}
			body, err := readJSONFlag("payload", payload, g.stdin)
			if err != nil {
				return err
			}
			generated := key == ""
			if generated {
				key = uuid.NewString()
			}
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			var rec api.SignalReceipt
			if byToken {
				rec, err = b.Signal(ctx, api.SignalRequest{Token: args[0], Name: name, Payload: body, IdempotencyKey: key, Source: source})
			} else {
				rec, err = b.SignalTask(ctx, task, api.TaskSignalRequest{Waitpoint: waitpoint, Name: name, Payload: body, IdempotencyKey: key, Source: source})
			}
			if err != nil {
				return fmt.Errorf("signal: %w", err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, rec)
			}
			printReceipt(g.stdout, rec, generated)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the signal's name, one the waitpoint allows (required)")
	f.StringVar(&payload, "payload", "", "the signal's value: JSON, @FILE, or - for standard input (default null)")
	f.StringVar(&key, "key", "", "idempotency key: a repeat with the same key changes nothing (default: a random key, printed)")
	f.StringVar(&source, "source", "", "who sends it, for a wait on a count of distinct sources (default: the key)")
	f.StringVar(&task, "task", "", "the task's id, to signal its waitpoint by name (with --waitpoint) instead of by token")
	f.StringVar(&waitpoint, "waitpoint", "", "the name of the task's waitpoint (with --task)")
	return cmd
}

// printReceipt says what a signal did.
func printReceipt(w io.Writer, rec api.SignalReceipt, generated bool) {
	s := rec.Signal
	switch {
	case rec.Duplicate:
		fmt.Fprintf(w, "signal %s (%s) was already delivered with this key to waitpoint %s of task %s: nothing changed\n", s.ID, s.Name, s.Waitpoint, rec.TaskID)
	case rec.Resumed:
		fmt.Fprintf(w, "signal %s (%s) delivered to waitpoint %s of task %s: the task resumed\n", s.ID, s.Name, s.Waitpoint, rec.TaskID)
	default:
		fmt.Fprintf(w, "signal %s (%s) delivered to waitpoint %s of task %s: stored; the task's wait is not complete yet\n", s.ID, s.Name, s.Waitpoint, rec.TaskID)
	}
	if generated {
		fmt.Fprintf(w, "key: %s (made for this signal: give --key %s to repeat it safely)\n", s.IdempotencyKey, s.IdempotencyKey)
	}
}

// printWaitpoints shows a task's waitpoints under its snapshot, if it has
// any.
func printWaitpoints(w io.Writer, wps []api.Waitpoint, now time.Time) {
	if len(wps) == 0 {
		return
	}
	fmt.Fprintf(w, "%-12s %d\n", "waitpoints:", len(wps))
	const indent = "  "
	for _, wp := range wps {
		state := wp.State
		if wp.Resolution != "" {
			state += " by " + wp.Resolution
		}
		if wp.ResolvedAt != nil {
			state += ", " + whenPtr(wp.ResolvedAt, now)
		}
		fmt.Fprintf(w, "%s%s: %s\n", indent, wp.Name, state)
		if len(wp.Allow) > 0 {
			fmt.Fprintf(w, "%s  allows:  %s\n", indent, strings.Join(wp.Allow, ", "))
		}
		if wp.ExpiresAt != nil {
			fmt.Fprintf(w, "%s  expires: %s\n", indent, whenPtr(wp.ExpiresAt, now))
		}
		if wp.Token != "" && wp.State == "open" {
			fmt.Fprintf(w, "%s  token:   %s\n", indent, wp.Token)
		}
		for _, s := range wp.Signals {
			line := fmt.Sprintf("%s  signal:  %s, %s, key %s", indent, s.Name, when(s.ReceivedAt, now), s.IdempotencyKey)
			if s.Source != "" {
				line += ", source " + s.Source
			}
			if p := string(s.Payload); p != "" && p != "null" {
				line += ": " + truncate(p, 500)
			}
			fmt.Fprintln(w, line)
		}
	}
}

// directWaits is the waits service of a directBackend, made on first use
// with keys, the signing keys of WEFT_SIGNING_KEYS (empty: the key kept in
// the database), as the server's.
type directWaits struct {
	keys string
	svc  *ops.Waits
}

func (d *directBackend) waits() (*ops.Waits, error) {
	if d.wait.svc == nil {
		c, err := weft.NewClient(d.st, &weft.Config{SigningKeys: d.wait.keys})
		if err != nil {
			return nil, fmt.Errorf("WEFT_SIGNING_KEYS: %w", err)
		}
		d.wait.svc = ops.NewWaits(c)
	}
	return d.wait.svc, nil
}

func (d *directBackend) Signal(ctx context.Context, req api.SignalRequest) (api.SignalReceipt, error) {
	w, err := d.waits()
	if err != nil {
		return api.SignalReceipt{}, err
	}
	return wire(ctx, w.Signal, req)
}

func (d *directBackend) SignalTask(ctx context.Context, id string, req api.TaskSignalRequest) (api.SignalReceipt, error) {
	w, err := d.waits()
	if err != nil {
		return api.SignalReceipt{}, err
	}
	rec, err := w.SignalTask(ctx, id, req)
	return rec, wireError(ctx, err)
}

func (d *directBackend) Waitpoints(ctx context.Context, id string) (api.WaitpointList, error) {
	w, err := d.waits()
	if err != nil {
		return api.WaitpointList{}, err
	}
	return wire(ctx, w.Waitpoints, id)
}
