// Command weft is Weft's command line: it runs the server (weft serve) and
// a remote worker, and enqueues, inspects and manages tasks. See
// `weft --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftworks/weft/internal/cli"
)

func main() {
	// The first SIGINT or SIGTERM cancels ctx, so commands stop gracefully;
	// after it, default handling is restored so that a second one ends
	// the process at once, even during a long grace period.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
