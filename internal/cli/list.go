package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

func newListCmd(g *globals) *cobra.Command {
	var (
		p            api.ListParams
		states       string
		since, until string
		all          bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, oldest or newest first",
		Long: `List tasks in creation order — oldest first, or newest first with --order
newest — filtered by queue, kind, state and creation time (--since, --until:
an RFC 3339 time, a date, or a duration ago such as 2h). The last column shows
the last error of a task that has one (a failed task's, or a retrying one's).

One page of --limit tasks is printed; when there are more, the command says
how to get the next page (--cursor), or --all pages through every matching
task. --format json prints the API's page ({"tasks":[...],"next_cursor":...};
with --all, every task in one list); --format ndjson prints one task per line,
which suits large listings.`,
		Example: `  weft list
  weft list --state failed,cancelled --queue emails
  weft list --order newest --since 1h
  weft list --kind http --all --format ndjson > http-tasks.ndjson`,
		Args: exactArgs(0, "no arguments (filter with --queue, --kind, --state)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p.States = splitList(states)
			for _, s := range p.States {
				if !store.State(s).Valid() {
					return usagef("--state: %q is not a state (use %s)", s, store.StateNames(store.States(), ", "))
				}
			}
			if p.Limit < 1 || p.Limit > ops.MaxPage {
				return usagef("--limit: %d is out of range (1 to %d)", p.Limit, ops.MaxPage)
			}
			switch store.ListOrder(p.Order) {
			case store.ListOldest, store.ListNewest:
			default:
				return usagef("--order: %q is not an order (use oldest or newest)", p.Order)
			}
			now := time.Now()
			for _, b := range []struct {
				flag, value string
				dst         *time.Time
			}{{"since", since, &p.Since}, {"until", until, &p.Until}} {
				if b.value == "" {
					continue
				}
				t, err := parseTimeFlag(b.flag, b.value, now)
				if err != nil {
					return err
				}
				*b.dst = t
			}
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()

			var (
				collected []api.Task // json with --all
				tw        = newTable(g.stdout)
				header    = true
			)
			for {
				page, err := b.List(ctx, p)
				if err != nil {
					return fmt.Errorf("list: %w", err)
				}
				switch g.Format {
				case formatJSON:
					if !all {
						return writeJSON(g.stdout, g.Format, page)
					}
					collected = append(collected, page.Tasks...)
				case formatNDJSON:
					for _, t := range page.Tasks {
						if err := writeJSON(g.stdout, g.Format, t); err != nil {
							return err
						}
					}
				default:
					if header && len(page.Tasks) > 0 {
						fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tRUN AT\tLAST ERROR")
						header = false
					}
					for _, t := range page.Tasks {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Kind, t.Queue, t.State,
							t.Attempt, t.MaxAttempts, relative(t.RunAt, now), lastError(t))
					}
					// Flush each page so a long --all listing streams.
					if err := tw.Flush(); err != nil {
						return fmt.Errorf("write output: %w", err)
					}
				}
				if page.NextCursor == "" || !all {
					if page.NextCursor != "" && g.Format == formatHuman {
						fmt.Fprintf(g.stderr, "more tasks: add --cursor %s for the next page, or --all for every one\n", page.NextCursor)
					}
					break
				}
				p.Cursor = page.NextCursor
			}
			if g.Format == formatJSON {
				if collected == nil {
					collected = []api.Task{}
				}
				return writeJSON(g.stdout, g.Format, api.TaskList{Tasks: collected})
			}
			if g.Format == formatHuman && header {
				printNone(g.stdout)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.Queue, "queue", "", "only tasks of this queue")
	f.StringVar(&p.Kind, "kind", "", "only tasks of this kind")
	f.StringVar(&states, "state", "", "only tasks in these states, comma-separated (pending,running,completed,failed,cancelled)")
	f.IntVar(&p.Limit, "limit", ops.DefaultPage, fmt.Sprintf("tasks per page (at most %d)", ops.MaxPage))
	f.StringVar(&since, "since", "", "only tasks created at or after this time: RFC 3339, a date (2030-01-02), or a duration ago (2h)")
	f.StringVar(&until, "until", "", "only tasks created before this time (the same forms as --since)")
	f.StringVar(&p.Order, "order", string(store.ListOldest), "oldest or newest first")
	f.StringVar(&p.Cursor, "cursor", "", "continue after this cursor (printed when there are more tasks; give the same --order)")
	f.BoolVar(&all, "all", false, "page through every matching task")
	return cmd
}

// printNone says that a listing is empty, rather than printing nothing.
func printNone(w io.Writer) {
	fmt.Fprintln(w, "no tasks")
}

// errorWidth bounds the last error a listing shows.
const errorWidth = 60

// lastError is the task's last error on one line, cut to errorWidth.
func lastError(t api.Task) string {
	if len(t.Errors) == 0 {
		return ""
	}
	msg := strings.Join(strings.Fields(t.Errors[len(t.Errors)-1].Error), " ")
	if len(msg) > errorWidth {
		cut := errorWidth - 1
		for cut > 0 && msg[cut]&0xC0 == 0x80 {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}
