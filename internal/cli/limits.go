package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// limitsBackend is the part of backend behind the limit and fairness
// commands, over the HTTP API (apiclient's methods of the same names) or
// straight on a store (directBackend, below).
type limitsBackend interface {
	Limits(ctx context.Context) (api.LimitList, error)
	Limit(ctx context.Context, name, cursor string, limit int) (api.LimitDetail, error)
	SetLimit(ctx context.Context, name string, in api.LimitInput) (api.Limit, error)
	DeleteLimit(ctx context.Context, name string) (api.Limit, error)
	Fairness(ctx context.Context, queue string) (api.Fairness, error)
	SetFairness(ctx context.Context, queue string, in api.FairnessInput) (api.Fairness, error)
}

func (d *directBackend) Limits(ctx context.Context) (api.LimitList, error) {
	l, err := d.svc.Limits(ctx)
	return l, wireError(ctx, err)
}

func (d *directBackend) Limit(ctx context.Context, name, cursor string, limit int) (api.LimitDetail, error) {
	l, err := d.svc.Limit(ctx, name, ops.KeyPage{Cursor: cursor, Limit: limit})
	return l, wireError(ctx, err)
}

func (d *directBackend) SetLimit(ctx context.Context, name string, in api.LimitInput) (api.Limit, error) {
	l, err := d.svc.SetLimit(ctx, name, in)
	return l, wireError(ctx, err)
}

func (d *directBackend) DeleteLimit(ctx context.Context, name string) (api.Limit, error) {
	return wire(ctx, d.svc.DeleteLimit, name)
}

func (d *directBackend) Fairness(ctx context.Context, queue string) (api.Fairness, error) {
	return wire(ctx, d.svc.Fairness, queue)
}

func (d *directBackend) SetFairness(ctx context.Context, queue string, in api.FairnessInput) (api.Fairness, error) {
	f, err := d.svc.SetFairness(ctx, queue, in)
	return f, wireError(ctx, err)
}

func newLimitsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "limits",
		Aliases: []string{"limit"},
		Short:   "List limits; set, show or delete one",
		Long: `List the limits with their totals. A limit is named and shared by every task
that names it, whatever its kind or queue: a task says which limits it draws on
and under which key (weft enqueue --limit per-customer=acme), and each key has
its own counters. A limit caps how many tasks of one key run at once
(--concurrency, with per-key --override), how fast a key's tasks start (--rate
per --per, with bursts of --burst), or both. Every claim on every node and
remote worker honours it; a task that must wait is set aside and says why in
'weft task ID', while the tasks behind it go on.

'weft limit' is the same command: 'weft limit set ...' reads well too.`,
		Example: `  weft limits
  weft limit set per-customer --concurrency 3 --override acme=10
  weft limit set openai --rate 500 --per 1m --burst 50
  weft limit show per-customer
  weft limit delete per-customer
  weft limits --format json`,
		Args: exactArgs(0, "no arguments, or a subcommand (set, show, delete)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			list, err := b.Limits(cmd.Context())
			if err != nil {
				return fmt.Errorf("limits: %w", err)
			}
			switch g.Format {
			case formatJSON:
				if list.Limits == nil {
					list.Limits = []api.Limit{}
				}
				return writeJSON(g.stdout, g.Format, list)
			case formatNDJSON:
				for _, l := range list.Limits {
					if err := writeJSON(g.stdout, g.Format, l); err != nil {
						return err
					}
				}
				return nil
			}
			if len(list.Limits) == 0 {
				fmt.Fprintln(g.stdout, "no limits (add one with: weft limit set NAME --concurrency N)")
				return nil
			}
			tw := newTable(g.stdout)
			fmt.Fprintln(tw, "NAME\tCONCURRENCY\tRATE\tAT THE CAP\tIN USE\tWAITING\tKEYS")
			for _, l := range list.Limits {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", l.Name, concurrencyText(l), rateText(l), l.OnLimit, l.InUse, l.Waiting, l.KeyCount)
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		},
	}
	cmd.AddCommand(newLimitSetCmd(g), newLimitShowCmd(g), newLimitDeleteCmd(g))
	return cmd
}

// concurrencyText is a limit's cap for people: "3", "3 (1 override)", or
// "-" without one.
func concurrencyText(l api.Limit) string {
	s := "-"
	if l.Concurrency > 0 {
		s = strconv.Itoa(l.Concurrency)
	}
	switch n := len(l.Overrides); n {
	case 0:
	case 1:
		s += " (1 override)"
	default:
		s += fmt.Sprintf(" (%d overrides)", n)
	}
	return s
}

// rateText is a limit's rate for people: "500 per 1m0s, bursts of 50",
// or "-" without one.
func rateText(l api.Limit) string {
	if l.Rate == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d per %s", l.Rate, l.Period)
	if l.Burst > 1 {
		s += fmt.Sprintf(", bursts of %d", l.Burst)
	}
	return s
}

func newLimitSetCmd(g *globals) *cobra.Command {
	var (
		concurrency, rate, burst int
		overrides                []string
		per, onLimit             string
	)
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Create or replace a limit",
		Long: `Create the limit NAME, or replace it whole. It applies from the next claim on
every node; tasks waiting under the old values are reconsidered.

--concurrency N lets at most N tasks of one key run at once; --override KEY=N
gives one key its own cap (repeatable; 0 stops the key). --rate N --per
DURATION lets each key start N units of work per DURATION (a task costs 1
unless enqueued with --cost), evenly spaced unless --burst allows that many at
once. A limit needs a cap, a rate, or both.

--on-limit says what a new task does when its key is at its cap: queue (the
default: it waits), reject (the enqueue is refused with an error naming the
limit and the key), cancel_in_progress (the key's running tasks are cancelled:
the newest wins) or keep_latest (an older pending task of the key is
cancelled: a debounce). The last three need --concurrency.`,
		Example: `  weft limit set per-customer --concurrency 3 --override acme=10
  weft limit set openai --rate 500 --per 1m --burst 50
  weft limit set exports --concurrency 1 --on-limit reject
  weft limit set deploys --concurrency 1 --on-limit keep_latest`,
		Args: exactArgs(1, "the limit's name (for example: weft limit set per-customer --concurrency 3)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := api.LimitInput{Concurrency: concurrency, Rate: rate, Burst: burst, OnLimit: onLimit}
			for _, o := range overrides {
				key, n, ok := strings.Cut(o, "=")
				v, err := strconv.Atoi(n)
				if !ok || key == "" || err != nil {
					return usagef("--override %q: expected KEY=N, as acme=10", o)
				}
				if in.Overrides == nil {
					in.Overrides = map[string]int{}
				}
				in.Overrides[key] = v
			}
			if per != "" {
				d, err := time.ParseDuration(per)
				if err != nil {
					return usagef("--per: %q is not a duration (for example 1s, 1m or 1h)", per)
				}
				in.Period = d.String()
			}
			// What the values may be (a rate without --per, a burst without a
			// rate) is the store's to say, as for every other way in; its
			// messages name the fields, and usage maps them to the flags.
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			l, err := b.SetLimit(cmd.Context(), args[0], in)
			if err != nil {
				return fmt.Errorf("limit %s: %w", args[0], limitFlagError(err))
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, l)
			}
			fmt.Fprintf(g.stdout, "limit %s set: %s\n", l.Name, limitSummary(l))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&concurrency, "concurrency", 0, "at most this many tasks of one key run at once")
	f.StringArrayVar(&overrides, "override", nil, "a key's own cap, as KEY=N (repeatable; 0 stops the key)")
	f.IntVar(&rate, "rate", 0, "units each key may start per --per (a task costs 1 unless enqueued with --cost)")
	f.StringVar(&per, "per", "", "the period of --rate, as a duration (for example 1s, 1m, 1h)")
	f.IntVar(&burst, "burst", 0, "units a key may start at once after a quiet spell (default 1: evenly spaced)")
	f.StringVar(&onLimit, "on-limit", "", "what a new task does at the cap: queue (default), reject, cancel_in_progress or keep_latest")
	return cmd
}

// limitFlags maps the API's fields of a limit to the flags of limit set.
var limitFlags = map[string]string{
	"concurrency": "--concurrency", "overrides": "--override", "rate": "--rate", "period": "--per",
	"burst": "--burst", "on_limit": "--on-limit",
}

// limitFlagError names the flag behind a refused field of limit set.
func limitFlagError(err error) error {
	var ae *apiclient.Error
	if errors.As(err, &ae) && limitFlags[ae.Field] != "" {
		return fmt.Errorf("%s: %w", limitFlags[ae.Field], err)
	}
	return err
}

// limitSummary says what a limit does in a line.
func limitSummary(l api.Limit) string {
	var parts []string
	if l.Concurrency > 0 || len(l.Overrides) > 0 {
		s := fmt.Sprintf("at most %d running per key", l.Concurrency)
		if l.Concurrency == 0 {
			s = "no cap but the overrides"
		}
		if len(l.Overrides) > 0 {
			var o []string
			for _, k := range slices.Sorted(maps.Keys(l.Overrides)) {
				o = append(o, fmt.Sprintf("%s: %d", k, l.Overrides[k]))
			}
			s += " (" + strings.Join(o, ", ") + ")"
		}
		parts = append(parts, s)
	}
	if l.Rate > 0 {
		parts = append(parts, rateText(l)+" per key")
	}
	if l.OnLimit != string(store.OnLimitQueue) {
		parts = append(parts, "at the cap: "+l.OnLimit)
	}
	return strings.Join(parts, "; ")
}

func newLimitShowCmd(g *globals) *cobra.Command {
	var (
		keys   int
		cursor string
	)
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a limit and its busiest keys",
		Long: `Show a limit: what it allows, its totals (slots in use, tasks waiting, keys),
and its keys in use or with tasks waiting, those with the most waiting first:
each with its slots in use, its cap, the tasks waiting for it, and when its
rate allows the next task. --keys sets how many keys to show; when there are
more, the command prints the --cursor that shows the next ones. With --format
json, print the API's limit object with its page of keys.`,
		Example: "  weft limit show per-customer\n  weft limit show openai --keys 50",
		Args:    exactArgs(1, "one limit name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keys < 1 || keys > 1000 {
				return usagef("--keys: %d is out of range (1 to 1000)", keys)
			}
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			l, err := b.Limit(cmd.Context(), args[0], cursor, keys)
			if err != nil {
				return fmt.Errorf("limit %s: %w", args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, l)
			}
			return printLimit(g.stdout, l, time.Now())
		},
	}
	cmd.Flags().IntVar(&keys, "keys", 20, "how many keys to show, 1 to 1000")
	cmd.Flags().StringVar(&cursor, "cursor", "", "show the keys after this cursor (printed when there are more)")
	return cmd
}

// printLimit prints a limit and its page of keys for people.
func printLimit(w io.Writer, l api.LimitDetail, now time.Time) error {
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-12s %s\n", label+":", value)
		}
	}
	line("name", l.Name)
	line("allows", limitSummary(l.Limit))
	line("on limit", l.OnLimit)
	line("in use", strconv.Itoa(l.InUse))
	line("waiting", strconv.Itoa(l.Waiting))
	line("keys", strconv.Itoa(l.KeyCount))
	line("updated", when(l.UpdatedAt, now))
	if len(l.Keys) == 0 {
		fmt.Fprintln(w, "\nno key is in use or has tasks waiting")
		return nil
	}
	fmt.Fprintln(w)
	tw := newTable(w)
	fmt.Fprintln(tw, "KEY\tIN USE\tCAP\tWAITING\tNEXT ALLOWED")
	for _, k := range l.Keys {
		capText, next := "-", "now"
		if k.Cap > 0 || l.Concurrency > 0 || len(l.Overrides) > 0 {
			capText = strconv.Itoa(k.Cap)
		}
		if k.NextAllowedAt != nil {
			next = when(*k.NextAllowedAt, now)
		} else if l.Rate == 0 {
			next = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", k.Key, k.InUse, capText, k.Waiting, next)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if l.NextCursor != "" {
		fmt.Fprintf(w, "\nmore keys: weft limit show %s --cursor %q\n", l.Name, l.NextCursor)
	}
	return nil
}

func newLimitDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a limit",
		Long: `Delete the limit and its keys' counters. Tasks that name it stay, and no longer
wait for it: those it held back become claimable. With --format json, print
the API's limit object as it was.`,
		Example: "  weft limit delete per-customer",
		Args:    exactArgs(1, "one limit name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			l, err := b.DeleteLimit(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("delete limit %s: %w", args[0], err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, l)
			}
			fmt.Fprintf(g.stdout, "limit %s deleted (%d tasks were waiting for it and no longer wait)\n", l.Name, l.Waiting)
			return nil
		},
	}
}

func newQueueFairnessCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fairness QUEUE [KEY=WEIGHT ...]",
		Short: "Show or set a queue's fairness weights",
		Long: `Show the fairness weights of a queue, or set those of the keys given as
KEY=WEIGHT. Tasks enqueued with a fairness key (weft enqueue --fairness-key
acme) share their queue fairly: within one priority, claims go to the keys with
pending tasks in proportion to their weights, so one key's backlog does not
starve the others; a key alone gets the whole queue. A key not set weighs 1;
WEIGHT is 1 to 10000, and 0 puts a key back to 1. Keys not given keep their
weights.`,
		Example: `  weft queues fairness reports
  weft queues fairness reports acme=3 globex=1
  weft queues fairness reports acme=0     # back to the default`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("weft queues fairness needs the queue's name (for example: weft queues fairness reports acme=3)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			queue := args[0]
			var weights map[string]int
			for _, a := range args[1:] {
				key, n, ok := strings.Cut(a, "=")
				v, err := strconv.Atoi(n)
				if !ok || key == "" || err != nil {
					return usagef("%q: expected KEY=WEIGHT, as acme=3", a)
				}
				if weights == nil {
					weights = map[string]int{}
				}
				weights[key] = v
			}
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			var f api.Fairness
			if weights == nil {
				f, err = b.Fairness(cmd.Context(), queue)
			} else {
				f, err = b.SetFairness(cmd.Context(), queue, api.FairnessInput{Weights: weights})
			}
			if err != nil {
				return fmt.Errorf("fairness of queue %s: %w", queue, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, f)
			}
			if len(f.Weights) == 0 {
				fmt.Fprintf(g.stdout, "queue %s: every fairness key weighs 1\n", f.Queue)
				return nil
			}
			tw := newTable(g.stdout)
			fmt.Fprintln(tw, "KEY\tWEIGHT")
			for _, k := range slices.Sorted(maps.Keys(f.Weights)) {
				fmt.Fprintf(tw, "%s\t%d\n", k, f.Weights[k])
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			fmt.Fprintln(g.stdout, "(other keys weigh 1)")
			return nil
		},
	}
}

// parseLabels reads worker labels given as KEY=VALUE (--label, or
// WEFT_LABELS split at commas), refusing what no requirement could name;
// source names them in errors.
func parseLabels(source string, specs []string) (map[string]string, error) {
	var out map[string]string
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		k, v, ok := strings.Cut(spec, "=")
		if !ok || k == "" {
			return nil, usagef("%s %q: expected LABEL=VALUE, as gpu=true or mem=64", source, spec)
		}
		if out == nil {
			out = map[string]string{}
		}
		if _, dup := out[k]; dup {
			return nil, usagef("%s %q: label %s given twice", source, spec, k)
		}
		out[k] = v
	}
	if err := store.CheckLabels(out); err != nil {
		var ve *store.ValidationError
		if errors.As(err, &ve) {
			return nil, usagef("%s: %s", source, ve.Message)
		}
		return nil, usagef("%s: %v", source, err)
	}
	return out, nil
}

// parseRequirement reads one --require: LABEL=VALUE, LABEL>=N or
// LABEL<=N, as the API's requires object takes it (label → expression).
func parseRequirement(spec string) (label, expr string, err error) {
	i := strings.IndexAny(spec, "<>=")
	if i <= 0 {
		return "", "", usagef("--require %q: expected LABEL=VALUE, LABEL>=N or LABEL<=N, as gpu=true or mem>=64", spec)
	}
	label, rest := spec[:i], spec[i:]
	switch {
	case strings.HasPrefix(rest, ">="), strings.HasPrefix(rest, "<="):
		return label, rest, nil
	case strings.HasPrefix(rest, "="):
		return label, rest[1:], nil
	}
	return "", "", usagef("--require %q: expected LABEL=VALUE, LABEL>=N or LABEL<=N, as gpu=true or mem>=64", spec)
}
