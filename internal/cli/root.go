// Package cli is the weft command line: the cobra command tree behind
// cmd/weft. Most commands talk to a running server (`weft serve`) through
// internal/apiclient; given --database explicitly (and no --server) they
// work on the database directly through internal/ops, the service the
// server itself runs, printing the same output and errors either way.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weftworks/weft/internal/apiclient"
)

// Exit codes. A monitored task reports its own outcome with exitOK,
// exitError (failed) and exitUsage (cancelled), as documented on `task`.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// Defaults of the global flags, used when neither a flag nor its
// environment variable is set.
const (
	defaultServer   = "http://127.0.0.1:7070"
	defaultDatabase = "weft.db"
)

// Output formats.
const (
	formatHuman  = "human"
	formatJSON   = "json"
	formatNDJSON = "ndjson"
)

// globals holds the global options and the process's standard streams.
// Every command receives it; it is built per Main call, so nothing is
// shared between runs (or tests).
type globals struct {
	// Server is the base URL of the Weft server (--server, WEFT_SERVER).
	Server string
	// Token is the API bearer token (--token, WEFT_API_TOKEN).
	Token string
	// CA is a PEM file of the CA to trust for an https:// server (--ca,
	// WEFT_CA); see tls.go.
	CA string
	// Database is a SQLite file path or a postgres:// URL (--database,
	// WEFT_DATABASE_URL), for serve, migrate, and direct access.
	Database string
	// Format is human, json or ndjson (--format).
	Format string
	// LogFormat is text or json (--log-format, WEFT_LOG_FORMAT).
	LogFormat string
	// LogLevel is debug, info, warn or error (--log-level, WEFT_LOG_LEVEL).
	LogLevel string

	// serverFlag, databaseFlag and formatFlag record whether the flag was
	// given on the command line: direct database access needs an explicit
	// --database, and `task --monitor` prints NDJSON unless a format was
	// asked for.
	serverFlag, databaseFlag, formatFlag bool

	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)

	// started is set once the root's pre-run hook ran: an error before
	// that is a usage error (unknown command or flag, wrong arguments).
	started bool
}

// usageError marks an error in how the command was invoked (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exitCodeError ends a command with a chosen exit code; a non-empty
// message is printed like any error.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

// Main runs the weft command line with args (without the program name)
// and returns the process's exit code: 0 on success, 1 on errors, 2 on
// usage errors, 130 when ctx was cancelled (Ctrl-C). `task --monitor`
// exits with the task's outcome.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, os.Stdin, stdout, stderr, os.LookupEnv)
}

// run is Main with its environment passed in, so tests control it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: lookupEnv}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		if ec.msg != "" {
			fmt.Fprintf(stderr, "weft: %s\n", ec.msg)
		}
		return ec.code
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Cause(ctx))) {
		fmt.Fprintln(stderr, "weft: interrupted")
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "weft: %s\n", message(err))
	var ue *usageError
	if !g.started || errors.As(err, &ue) {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitError
}

// message is err's text, with a hint when the fix is a flag away.
func message(err error) string {
	msg := err.Error()
	if errors.Is(err, apiclient.ErrUnauthorized) {
		msg += " (set --token or WEFT_API_TOKEN to the server's WEFT_API_TOKEN)"
	}
	return msg + tlsHint(err)
}

// newRootCmd builds the command tree.
func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "weft",
		Short: "Weft: a durable task engine",
		Long: `Weft stores tasks durably and runs them on workers, retrying failures with
backoff, running work later, and keeping an event log per task.

Run a server with 'weft serve' (on a SQLite file or PostgreSQL), then enqueue,
inspect and manage tasks with the other commands. They talk to the server at
--server (WEFT_SERVER, default ` + defaultServer + `), or, given --database
explicitly and no --server, work on the database directly.

Flags override environment variables, which override defaults.`,
		Example: `  weft serve --database weft.db
  weft enqueue http --args '{"url":"https://example.com/hook"}'
  weft task 0190a3c2-... --monitor
  weft list --state failed
  weft queues`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			g.started = true
			// A config file's values go first: the environment and the
			// command line override them.
			if err := applyConfig(cmd, g.lookupEnv); err != nil {
				return err
			}
			return g.resolve(cmd.Flags())
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.Version = buildVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")

	root.AddCommand(
		newServeCmd(g),
		newEnqueueCmd(g),
		newBatchCmd(g),
		newTaskCmd(g),
		newSignalCmd(g),
		newListCmd(g),
		newQueuesCmd(g),
		newSchedulesCmd(g),
		newLimitsCmd(g),
		newWorkersCmd(g),
		newMigrateCmd(g),
		newWorkerCmd(g),
		newMCPCmd(g),
		newVersionCmd(g),
		newBenchCmd(g),
		newFlowCmd(g),
		newFlowsCmd(g),
	)
	for _, bc := range bulkCommands {
		root.AddCommand(newBulkCmd(g, bc))
	}
	for _, c := range root.Commands() {
		g.addFlags(c)
	}
	return root
}

// The global flags, in groups: each command has the groups that apply
// to it (commandFlags), so that its help lists nothing it ignores.
const (
	flagServer   = 1 << iota // --server: the server to talk to
	flagToken                // --token: the API token
	flagDatabase             // --database: the database
	flagFormat               // --format: the output format
	flagLog                  // --log-format, --log-level

	// dataFlags are those of the commands that read and change tasks,
	// on a server or (with --database) on the database directly: the
	// flags of every command not listed in commandFlags.
	dataFlags = flagServer | flagToken | flagDatabase | flagFormat | flagLog
)

// commandFlags are the flag groups of the commands that do not take
// dataFlags.
var commandFlags = map[string]int{
	"serve":   flagToken | flagDatabase | flagLog,
	"migrate": flagDatabase | flagFormat | flagLog,
	"worker":  flagServer | flagToken | flagLog,
	"bench":   flagDatabase | flagFormat | flagLog,
	"version": flagFormat,
}

// formatUsage is --format's help where a command's default is not the
// usual one.
var formatUsage = map[string]string{
	"task":  "output format: human, json or ndjson (default human; --monitor prints ndjson when stdout is not a terminal)",
	"bench": "output format: human, json or ndjson (default human: a table; json or ndjson print one JSON object per result, as --json)",
}

// addFlags gives a top-level command, and through it its subcommands, the
// global flags that apply to it. They are registered on each command
// rather than on the root so that, say, `weft version --help` does not
// list --database; they all fill g.
func (g *globals) addFlags(c *cobra.Command) {
	set, ok := commandFlags[c.Name()]
	if !ok {
		set = dataFlags
	}
	pf := c.PersistentFlags()
	if set&flagServer != 0 {
		pf.StringVar(&g.Server, "server", defaultServer, "base URL of the Weft server (env WEFT_SERVER)")
		pf.StringVar(&g.CA, "ca", "", "PEM file of the CA that signed an https:// server's certificate, trusted instead of the system's (env WEFT_CA)")
	}
	if set&flagToken != 0 {
		pf.StringVar(&g.Token, "token", "", "API bearer token (env WEFT_API_TOKEN)")
	}
	if set&flagDatabase != 0 {
		usage := "work on this database directly instead of a server: a SQLite file path or a postgres:// URL (env WEFT_DATABASE_URL is used only by serve and migrate)"
		switch c.Name() {
		case "serve", "migrate":
			usage = "SQLite file path or postgres:// URL (env WEFT_DATABASE_URL)"
		case "bench":
			usage = "where to benchmark: a new SQLite file, a directory for the scenarios' files, or a postgres:// URL (default: a temporary directory, removed afterwards)"
		}
		pf.StringVar(&g.Database, "database", defaultDatabase, usage)
		if c.Name() != "serve" && c.Name() != "migrate" {
			// Only serve and migrate fall back to the default file.
			pf.Lookup("database").DefValue = ""
		}
	}
	if set&flagFormat != 0 {
		usage, ok := formatUsage[c.Name()]
		if !ok {
			usage = "output format: human, json or ndjson"
		}
		pf.StringVar(&g.Format, "format", formatHuman, usage)
		if ok {
			pf.Lookup("format").DefValue = ""
		}
	}
	if set&flagLog != 0 {
		pf.StringVar(&g.LogFormat, "log-format", "text", "log format: text or json (env WEFT_LOG_FORMAT)")
		pf.StringVar(&g.LogLevel, "log-level", "info", "log level: debug, info, warn or error (env WEFT_LOG_LEVEL)")
	}
}

// resolve applies the environment to flags not given on the command line
// and checks the values every command shares. Environment values are read
// here rather than used as flag defaults so that --help never prints a
// token or a database password.
func (g *globals) resolve(fs *pflag.FlagSet) error {
	changed := func(name string) bool {
		f := fs.Lookup(name)
		return f != nil && f.Changed
	}
	fromEnv := func(dst *string, flag, env string) {
		if fs.Lookup(flag) == nil || changed(flag) {
			return
		}
		if v, ok := g.lookupEnv(env); ok && v != "" {
			*dst = v
		}
	}
	fromEnv(&g.Server, "server", "WEFT_SERVER")
	fromEnv(&g.Token, "token", "WEFT_API_TOKEN")
	fromEnv(&g.CA, "ca", "WEFT_CA")
	fromEnv(&g.Database, "database", "WEFT_DATABASE_URL")
	fromEnv(&g.LogFormat, "log-format", "WEFT_LOG_FORMAT")
	fromEnv(&g.LogLevel, "log-level", "WEFT_LOG_LEVEL")
	g.serverFlag, g.databaseFlag, g.formatFlag = changed("server"), changed("database"), changed("format")

	switch g.Format {
	case formatHuman, formatJSON, formatNDJSON:
	default:
		return usagef("--format: %q is not a format (use human, json or ndjson)", g.Format)
	}
	if _, err := newLogger(io.Discard, g.LogFormat, g.LogLevel); err != nil {
		return &usageError{err: err}
	}
	return nil
}

// checkServer validates the server URL before any request, so a typo is
// reported as such rather than as an unreachable server.
func (g *globals) checkServer() error {
	u, err := url.Parse(g.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--server: %q is not an http:// or https:// URL (for example %s)", g.Server, defaultServer)
	}
	return nil
}

// client returns an API client for the server.
func (g *globals) client() (*apiclient.Client, error) {
	if err := g.checkServer(); err != nil {
		return nil, err
	}
	hc, err := g.httpClient()
	if err != nil {
		return nil, err
	}
	g.warnClearClientToken()
	return apiclient.New(g.Server, g.Token, hc), nil
}

// direct reports whether commands should work on the database directly:
// only when --database was given on the command line and --server was not
// (an environment variable alone never switches a command away from the
// server).
func (g *globals) direct() bool { return g.databaseFlag && !g.serverFlag }

// logger returns the logger the global flags describe, writing to w.
// resolve has validated them, so a failure here cannot happen; it falls
// back to a text logger anyway.
func (g *globals) logger(w io.Writer) *slog.Logger {
	l, err := newLogger(w, g.LogFormat, g.LogLevel)
	if err != nil {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return l
}

// newLogger builds a slog logger writing text or JSON to w at level
// (debug, info, warn or error).
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if strings.EqualFold(level, "warning") {
		level = "warn"
	}
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not a level (use debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not a log format (use text or json)", format)
}

// exactArgs is cobra.ExactArgs with a message that names what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}
