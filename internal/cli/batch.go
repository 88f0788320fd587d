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

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/apiclient"
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

// readBatch decodes NDJSON task inputs, returning them with the line
// number of each. Unknown fields are errors: a misspelt "queu" would
// otherwise silently go to the default queue.
func readBatch(r io.Reader, name string) ([]api.TaskInput, []int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxBatchLine)
	var (
		tasks []api.TaskInput
		lines []int
		n     int
	)
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if len(tasks) == api.MaxBatch {
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
		var t api.TaskInput
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return nil, nil, fmt.Errorf("%s: line %d: %s", name, n, describeJSONError(err))
		}
		if !errors.Is(tokenErr(dec), io.EOF) {
			return nil, nil, fmt.Errorf("%s: line %d: extra data after the task (one task per line)", name, n)
		}
		if t.Kind == "" {
			return nil, nil, fmt.Errorf("%s: line %d: kind: must not be empty", name, n)
		}
		tasks = append(tasks, t)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("%s: line %d: longer than %d MiB", name, n+1, maxBatchLine>>20)
		}
		return nil, nil, fmt.Errorf("%s: read: %w", name, err)
	}
	if len(tasks) == 0 {
		return nil, nil, fmt.Errorf("%s: no tasks (expected one JSON task per line)", name)
	}
	return tasks, lines, nil
}

// describeJSONError says what is wrong with a line in words.
func describeJSONError(err error) string {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
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
