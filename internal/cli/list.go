package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

func newListCmd(g *globals) *cobra.Command {
	var (
		p      api.ListParams
		states string
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, oldest first",
		Long: `List tasks in creation order, filtered by queue, kind and state.

One page of --limit tasks is printed; when there are more, the command says
how to get the next page (--cursor), or --all pages through every matching
task. --format json prints the API's page ({"tasks":[...],"next_cursor":...};
with --all, every task in one list); --format ndjson prints one task per line,
which suits large listings.`,
		Example: `  weft list
  weft list --state failed,cancelled --queue emails
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
			b, err := g.openBackend(ctx)
			if err != nil {
				return err
			}
			defer b.Close()

			now := time.Now()
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
						fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tRUN AT")
						header = false
					}
					for _, t := range page.Tasks {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", t.ID, t.Kind, t.Queue, t.State,
							t.Attempt, t.MaxAttempts, relative(t.RunAt, now))
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
	f.StringVar(&p.Cursor, "cursor", "", "continue after this cursor (printed when there are more tasks)")
	f.BoolVar(&all, "all", false, "page through every matching task")
	return cmd
}

// printNone says that a listing is empty, rather than printing nothing.
func printNone(w io.Writer) {
	fmt.Fprintln(w, "no tasks")
}
