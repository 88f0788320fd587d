package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/weftworks/weft/internal/mcpserver"
)

func newMCPCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "Serve Weft to an AI agent over the Model Context Protocol, on stdin and stdout",
		Long: `Serve the Model Context Protocol on stdin and stdout, for an agent (Claude, an
editor, an agent framework) that starts weft as its MCP server. The tools
enqueue, read, list, cancel, retry and wait for tasks, enqueue and read
flows, signal waitpoints and read queue statistics; every task is also the
resource weft://tasks/{id}. A failed call is a tool error carrying the HTTP
API's error code and message.

Like the other commands, it works against the server at --server (with
--token), or, given --database explicitly and no --server, on the database
directly. Logs go to stderr; stdout carries the protocol alone. It ends when
the agent closes stdin.

weft serve offers the same tools over HTTP, at /mcp.`,
		Example: `  weft mcp --server http://127.0.0.1:7070
  weft mcp --server https://weft.internal:7070 --token "$WEFT_API_TOKEN" --ca ca.pem
  weft mcp --database ./weft.db`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMCP(cmd.Context(), g)
		},
	}
}

// runMCP serves MCP on the process's standard streams until the client
// closes stdin or ctx ends.
func runMCP(ctx context.Context, g *globals) error {
	b, err := g.openBackend(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	log := g.logger(g.stderr)
	srv := mcpserver.New(mcpserver.Config{
		Backend: b, Version: buildVersion().Version, Logger: log,
		// The agent acts for whoever started it, who is owed the details
		// the CLI would print.
		ExplainInternal: true,
	})
	where := "server " + g.Server
	if g.direct() {
		where = "database " + redactURL(g.Database)
	}
	log.Info("weft: serving MCP on stdin and stdout", "on", where)
	err = srv.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(g.stdin), Writer: nopWriteCloser{g.stdout}})
	if err != nil && !errors.Is(err, mcp.ErrConnectionClosed) {
		return fmt.Errorf("mcp: %w", err)
	}
	return nil
}

// nopWriteCloser leaves stdout open when the transport closes: the process
// owns it.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
