package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
)

func newEnqueueCmd(g *globals) *cobra.Command {
	var (
		argsFlag, metadataFlag string
		queue, uniqueKey       string
		delay, at, timeout     string
		priority, maxAttempts  int
		limits, requires       []string
		cost                   int
		fairnessKey            string
	)
	cmd := &cobra.Command{
		Use:   "enqueue KIND",
		Short: "Enqueue one task",
		Long: `Enqueue one task of KIND with JSON arguments, and print its id.

--args takes the arguments as JSON text, @FILE to read them from a file, or -
to read them from standard input; without it the task gets {}. The task runs
as soon as a worker is free, or later with --delay or --at.

With --unique-key, enqueueing is idempotent: while a task with the same key is
pending, running or completed, no new task is made and the existing task's id
is printed instead (noted on standard error).

--limit NAME=KEY makes the task draw on the limit NAME (see 'weft limits')
under KEY, for example --limit per-customer=acme: it runs only while the key
has room, and --cost sets how many units of the limit's rate it takes (default
1). --require LABEL=VALUE, LABEL>=N or LABEL<=N lets only workers with matching
labels run it (weft worker --label gpu=true). --fairness-key shares the queue
fairly among keys such as tenants ('weft queues fairness').

With --format json the answer is printed as {"id": ..., "duplicate": ...}.`,
		Example: `  weft enqueue http --args '{"url":"https://example.com/hook","method":"POST"}'
  weft enqueue report --args @args.json --queue reports --delay 10m
  echo '{"n":1}' | weft enqueue count --args - --unique-key count-1
  weft enqueue cleanup --at 2030-01-01T03:00:00Z --max-attempts 3 --timeout 5m
  weft enqueue report --limit per-customer=acme --limit openai=default --cost 2
  weft enqueue train --require gpu=true --require mem>=64 --fairness-key acme`,
		Args: exactArgs(1, "the task kind (for example: weft enqueue http --args '{...}')"),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := api.TaskInput{
				Kind: args[0], Queue: queue, Priority: priority,
				MaxAttempts: maxAttempts, UniqueKey: uniqueKey,
				Cost: cost, FairnessKey: fairnessKey,
			}
			for _, l := range limits {
				name, key, ok := strings.Cut(l, "=")
				if !ok || name == "" {
					return usagef("--limit %q: expected NAME=KEY, as per-customer=acme", l)
				}
				if in.Limits == nil {
					in.Limits = map[string]string{}
				}
				if _, dup := in.Limits[name]; dup {
					return usagef("--limit %q: limit %s given twice (a task draws on a limit under one key)", l, name)
				}
				in.Limits[name] = key
			}
			for _, r := range requires {
				label, expr, err := parseRequirement(r)
				if err != nil {
					return err
				}
				if in.Requires == nil {
					in.Requires = map[string]string{}
				}
				if _, dup := in.Requires[label]; dup {
					return usagef("--require %q: label %s given twice", r, label)
				}
				in.Requires[label] = expr
			}
			var err error
			if in.Args, err = readJSONFlag("args", argsFlag, g.stdin); err != nil {
				return err
			}
			if in.Metadata, err = readJSONFlag("metadata", metadataFlag, g.stdin); err != nil {
				return err
			}
			if len(in.Metadata) > 0 && in.Metadata[0] != '{' {
				return usagef("--metadata: must be a JSON object, like {\"team\":\"billing\"}")
			}
			// Flags are only parsed here; what they may hold (a negative
			// delay, both --delay and --at) is the store's to decide, as for
			// every other way in.
			if delay != "" {
				d, err := time.ParseDuration(delay)
				if err != nil {
					return usagef("--delay: %q is not a duration (for example 90s, 10m or 1h30m)", delay)
				}
				in.Delay = d.String()
			}
			if at != "" {
				t, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usagef("--at: %q is not an RFC 3339 time (for example 2030-01-01T03:00:00Z)", at)
				}
				in.RunAt = &t
			}
			if timeout != "" {
				d, err := time.ParseDuration(timeout)
				if err != nil {
					return usagef("--timeout: %q is not a duration (for example 30s or 5m)", timeout)
				}
				in.Timeout = d.String()
			}

			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.Enqueue(cmd.Context(), in)
			if err != nil {
				return fmt.Errorf("enqueue %s: %w", in.Kind, err)
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, res)
			}
			fmt.Fprintln(g.stdout, res.ID)
			if res.Duplicate {
				fmt.Fprintf(g.stderr, "note: duplicate of %s: a task with unique key %q already exists, nothing was enqueued\n", res.ID, uniqueKey)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&argsFlag, "args", "", "task arguments: JSON, @FILE, or - for standard input (default {})")
	f.StringVar(&queue, "queue", "", "queue to put the task in (default \"default\")")
	f.IntVar(&priority, "priority", 0, "priority within the queue: higher runs first")
	f.StringVar(&delay, "delay", "", "run after this long, as a duration (for example 10s, 5m, 1h30m)")
	f.StringVar(&at, "at", "", "run at this RFC 3339 time (for example 2030-01-01T03:00:00Z)")
	f.StringVar(&uniqueKey, "unique-key", "", "idempotency key: no second task while one with this key is pending, running or completed")
	f.IntVar(&maxAttempts, "max-attempts", 0, "attempts before the task fails for good, 1 to 10000 (default 25)")
	f.StringVar(&timeout, "timeout", "", "time limit of each attempt, as a duration (0s: none)")
	f.StringVar(&metadataFlag, "metadata", "", "metadata stored with the task: a JSON object, @FILE, or -")
	f.StringArrayVar(&limits, "limit", nil, "a limit the task draws on, as NAME=KEY (repeatable; see weft limits)")
	f.IntVar(&cost, "cost", 0, "units the task takes from its limits' rates (default 1)")
	f.StringArrayVar(&requires, "require", nil, "a worker label the task needs, as LABEL=VALUE, LABEL>=N or LABEL<=N (repeatable)")
	f.StringVar(&fairnessKey, "fairness-key", "", "the key (a tenant) that shares the queue fairly with the others")
	return cmd
}

// readJSONFlag reads a flag that takes JSON text, @FILE or - (standard
// input), and checks that it is JSON, saying where it is not.
func readJSONFlag(name, value string, stdin io.Reader) (json.RawMessage, error) {
	var (
		raw []byte
		src = "--" + name
	)
	switch {
	case value == "":
		return nil, nil
	case value == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("--%s -: read standard input: %w", name, err)
		}
		raw, src = b, "--"+name+" - (standard input)"
	case strings.HasPrefix(value, "@"):
		b, err := os.ReadFile(value[1:])
		if err != nil {
			return nil, usagef("--%s: %w", name, err)
		}
		raw, src = b, "--"+name+" "+value
	default:
		raw = []byte(value)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, usagef("%s: empty, expected JSON", src)
	}
	if err := checkJSON(raw); err != nil {
		return nil, usagef("%s: not valid JSON: %v", src, err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, usagef("%s: not valid JSON: %v", src, err)
	}
	return buf.Bytes(), nil
}

// checkJSON reports where raw stops being JSON.
func checkJSON(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var v any
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%w (at byte %d)", err, se.Offset)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("unexpected end of input")
		}
		return err
	}
	if off := dec.InputOffset(); !errors.Is(tokenErr(dec), io.EOF) {
		return fmt.Errorf("extra data after the JSON value (at byte %d)", off)
	}
	return nil
}

// tokenErr is the error of reading one more token: io.EOF when the input
// ended.
func tokenErr(dec *json.Decoder) error {
	_, err := dec.Token()
	if err == nil {
		return errors.New("more data")
	}
	return err
}
