package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/store"
)

// maxBatchLine bounds one line of a batch file: a task's args and its
// metadata may each be up to 1 MiB by default, escaped.
const maxBatchLine = 16 << 20

func newBatchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "batch FILE|-",
		Short: "Enqueue many tasks from an NDJSON file as one atomic batch",
		Long: fmt.Sprintf(`Enqueue the tasks of FILE (or standard input, with -) as one atomic batch:
either every task is stored, or none is.

FILE is NDJSON: one JSON task per line, with the fields of the API's task
input (kind, args, queue, priority, delay, run_at, max_attempts, timeout,
unique_key, metadata). Blank lines are skipped. A bad line is reported with
its line number and nothing is enqueued. One batch holds at most %d tasks.

Prints "enqueued N tasks (M duplicates)" and the ids in input order; with
--format json, the API's answer {"tasks":[{"id":...,"duplicate":...}, ...]}.`, api.MaxBatch),
		Example: `  weft batch tasks.ndjson
  printf '%s\n%s\n' '{"kind":"email","args":{"to":"a@example.com"}}' \
    '{"kind":"email","args":{"to":"b@example.com"},"delay":"1h"}' | weft batch -`,
		Args: exactArgs(1, "one file name, or - for standard input"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var r io.Reader = g.stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("batch: %w", err)
				}
				defer f.Close()
				r = f
			} else {
				name = "standard input"
			}
			tasks, lines, err := readBatch(r, name)
			if err != nil {
				return err
			}
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.EnqueueBatch(cmd.Context(), tasks)
			if err != nil {
				return fmt.Errorf("batch %s: %w", name, withLine(err, lines))
			}
			if g.Format != formatHuman {
				return writeJSON(g.stdout, g.Format, res)
			}
			dups := 0
			for _, t := range res.Tasks {
				if t.Duplicate {
					dups++
				}
			}
			w := bufio.NewWriter(g.stdout)
			fmt.Fprintf(w, "enqueued %s (%s)\n", plural(len(res.Tasks)-dups, "task"), plural(dups, "duplicate"))
			for _, t := range res.Tasks {
				if t.Duplicate {
					fmt.Fprintf(w, "%s (duplicate)\n", t.ID)
				} else {
					fmt.Fprintln(w, t.ID)
				}
			}
			return w.Flush()
		},
	}
}

// maxBatchErrors bounds how many bad lines a refused batch file lists.
const maxBatchErrors = 20

// readBatch decodes NDJSON task inputs, returning them with the line
// number of each. Unknown fields are errors: a misspelt "queu" would
// otherwise silently go to the default queue. Every bad line is reported
// (up to maxBatchErrors), not just the first, so that a file is fixed in
// one pass; what only the server can judge (limits, sizes) it reports
// when the batch is sent.
func readBatch(r io.Reader, name string) ([]api.TaskInput, []int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxBatchLine)
	var (
		tasks []api.TaskInput
		lines []int
		bad   []string
		nBad  int
		n     int
	)
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if len(tasks)+nBad == api.MaxBatch {
			// Count the rest, to say how far over the limit the file is.
			extra := 1
			for sc.Scan() {
				if len(bytes.TrimSpace(sc.Bytes())) > 0 {
					extra++
				}
			}
			return nil, nil, fmt.Errorf("%s has %d tasks, more than the %d one batch may hold: split it (for example `split -l %d`) and send each part with its own `weft batch`",
				name, api.MaxBatch+extra, api.MaxBatch, api.MaxBatch)
		}
		t, problem := decodeTask(line)
		if problem != "" {
			if nBad++; nBad <= maxBatchErrors {
				bad = append(bad, fmt.Sprintf("line %d: %s", n, problem))
			}
			continue
		}
		tasks = append(tasks, t)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			bad = append(bad, fmt.Sprintf("line %d: longer than %d MiB", n+1, maxBatchLine>>20))
			nBad++
		} else {
			return nil, nil, fmt.Errorf("%s: read: %w", name, err)
		}
	}
	if nBad > 0 {
		msg := fmt.Sprintf("%s: %s, nothing was enqueued:\n  %s", name, plural(nBad, "bad line"), strings.Join(bad, "\n  "))
		if nBad > len(bad) {
			msg += fmt.Sprintf("\n  ... and %d more", nBad-len(bad))
		}
		return nil, nil, errors.New(msg)
	}
	if len(tasks) == 0 {
		return nil, nil, fmt.Errorf("%s: no tasks (expected one JSON task per line)", name)
	}
	return tasks, lines, nil
}

// decodeTask reads one line of a batch file; problem says what is wrong
// with it, naming the field when there is one.
func decodeTask(line []byte) (t api.TaskInput, problem string) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, describeJSONError(err)
	}
	if !errors.Is(tokenErr(dec), io.EOF) {
		return t, "extra data after the task (one task per line)"
	}
	switch {
	case t.Kind == "":
		return t, "kind: must not be empty"
	case !store.ValidName(t.Kind):
		return t, fmt.Sprintf("kind: %q is not a valid name (a letter, then letters, digits, '_', '-', '.', ':')", t.Kind)
	case t.Queue != "" && !store.ValidName(t.Queue):
		return t, fmt.Sprintf("queue: %q is not a valid name (a letter, then letters, digits, '_', '-', '.', ':')", t.Queue)
	case t.Delay != "" && t.RunAt != nil:
		return t, "delay: give delay or run_at, not both"
	}
	if _, err := api.ToNewTasks([]api.TaskInput{t}, ""); err != nil {
		return t, err.Error()
	}
	return t, ""
}

// describeJSONError says what is wrong with a line in words.
func describeJSONError(err error) string {
	var (
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
		tpe *time.ParseError
	)
	switch {
	case errors.As(err, &tpe):
		// Only run_at is a time in a task.
		return fmt.Sprintf("run_at: %q is not an RFC 3339 time (for example 2030-01-02T15:04:05Z)", strings.Trim(tpe.Value, `"`))
	case strings.Contains(err.Error(), "Time.UnmarshalJSON"):
		return `run_at: expected an RFC 3339 time as a string (for example "2030-01-02T15:04:05Z")`
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON: %v (at byte %d)", se, se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%s: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("expected a JSON object (a task), got JSON %s", te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON: unexpected end of line"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// taskIndex finds the batch index in an API field path ("tasks[2].kind").
var taskIndex = regexp.MustCompile(`^tasks\[(\d+)\]`)

// withLine prefixes an error about one task of the batch with the task's
// line in the file.
func withLine(err error, lines []int) error {
	var ae *apiclient.Error
	if !errors.As(err, &ae) {
		return err
	}
	m := taskIndex.FindStringSubmatch(ae.Field)
	if m == nil {
		return err
	}
	i, convErr := strconv.Atoi(m[1])
	if convErr != nil || i < 0 || i >= len(lines) {
		return err
	}
	return fmt.Errorf("line %d: %w", lines[i], err)
}
