package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/api"
)

func newWorkersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "workers",
		Short: "List the workers: nodes and remote workers",
		Long: `List the workers that run tasks: nodes — processes running Weft's engine, such
as 'weft serve' (which runs the http kind) or a Go program with workers — and
remote workers that claim over the HTTP API ('weft worker', the Python
example, your own). Each shows the queues it works, the kinds it runs ("any"
when it takes every kind), its labels (which tasks that --require labels it
may claim), the tasks it holds, and when it was last seen. A
worker is live when it was seen in the last two minutes or holds a task; a
remote worker that stays silent for a day is forgotten.

A pending task that no live worker will take says why in 'weft task ID', and
'weft queues' counts each queue's workers.`,
		Example: "  weft workers\n  weft workers --format json",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := g.openBackend(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			list, err := b.Workers(cmd.Context())
			if err != nil {
				return fmt.Errorf("workers: %w", err)
			}
			switch g.Format {
			case formatJSON:
				return writeJSON(g.stdout, g.Format, list)
			case formatNDJSON:
				for _, w := range list.Workers {
					if err := writeJSON(g.stdout, g.Format, w); err != nil {
						return err
					}
				}
				return nil
			}
			if len(list.Workers) == 0 {
				fmt.Fprintln(g.stdout, "no workers: start 'weft serve' (it runs the http kind), 'weft worker', or a program with workers")
				return nil
			}
			now := time.Now()
			tw := newTable(g.stdout)
			fmt.Fprintln(tw, "ID\tTYPE\tHOST\tQUEUES\tKINDS\tLABELS\tRUNNING\tLAST SEEN\tSTATUS")
			for _, w := range list.Workers {
				kinds, labels, status := "any", "-", "live"
				if len(w.Kinds) > 0 {
					kinds = strings.Join(w.Kinds, ",")
				}
				if len(w.Labels) > 0 {
					labels = api.KeyValues(w.Labels)
				}
				if !w.Live {
					status = "gone"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", w.ID, w.Type, w.Host, strings.Join(w.Queues, ","), kinds,
					labels, w.Running, relative(w.LastSeenAt, now), status)
			}
			if err := tw.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return nil
		},
	}
}

// unserved reports whether a queue has pending work and no live worker.
func unserved(q api.Queue) bool {
	return q.Counts["pending"] > 0 && q.Workers == 0
}
