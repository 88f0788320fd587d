package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/dashboard"
	"github.com/weftworks/weft/internal/httpapi"
	"github.com/weftworks/weft/internal/maintenance"
	"github.com/weftworks/weft/internal/tracing"
	"github.com/weftworks/weft/internal/waittoken"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/webhook"
)

// Serve defaults.
const (
	defaultAddr  = "127.0.0.1:7070"
	defaultGrace = 30 * time.Second
)

// serveOptions are serve's own flags.
type serveOptions struct {
	addr        string
	insecure    bool
	queues      []string
	denyPrivate bool
	leaseTTL    time.Duration
	grace       time.Duration

	// tlsCert and tlsKey are PEM files: with them, serve speaks HTTPS
	// (tls.go).
	tlsCert, tlsKey string
	// signingKeys sign and verify waitpoint tokens: WEFT_SIGNING_KEYS,
	// read from the environment only, like the API token, so that no
	// secret shows in a process listing.
	signingKeys string

	// readToken is the read-only token of the API and the dashboard.
	readToken string

	// label lists the worker labels of the built-in kinds' workers as
	// given (--label, or the config file); labels is what resolve made
	// of them and WEFT_LABELS.
	label  []string
	labels map[string]string
}

func newServeCmd(g *globals) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Weft server: the HTTP API, built-in workers and maintenance",
		Long: `Run the Weft server on a database: the HTTP API v1 (see /v1/openapi.json),
the built-in "http" task kind (webhooks) on the queues given by --queue, and
the background maintenance (lease rescue, retention, cron schedules), which
one server at a time performs when several share a database.

The database is a SQLite file (default ./weft.db, created when missing) or a
postgres:// URL; pending migrations are applied at start. Remote workers in
any language claim other kinds through POST /v1/claims.

With WEFT_API_TOKEN set, every route but /healthz and /readyz requires
"Authorization: Bearer <token>". Without a token the server only listens on
a loopback address, unless --insecure says otherwise. With --tls-cert and
--tls-key it serves HTTPS (TLS 1.2 and later); a token served without TLS
beyond loopback is logged as a warning.

Waitpoint tokens are signed with WEFT_SIGNING_KEYS, "kid:secret" pairs
separated by commas (secrets of 16 bytes or more): the first signs, all
verify, for rotation. Without it, a key made on first use and kept in the
database signs them, so tokens survive restarts.

The web dashboard is at /ui/ (/ redirects there): with a token, its login
form takes WEFT_API_TOKEN, or WEFT_API_READ_TOKEN (--read-token) for a
session that sees everything and changes nothing; the API accepts the
read-only token on GET routes and refuses it elsewhere (403).

The server also speaks the Model Context Protocol at /mcp (streamable HTTP),
behind the same token, for AI agents.

--label LABEL=VALUE (repeatable, or WEFT_LABELS="region=eu,tier=1") gives the
server's own workers labels: tasks that require labels (enqueued with
--require) are claimed only by workers whose labels satisfy them.

Every flag can also be set in a TOML file given with --config (or
WEFT_CONFIG), one key per flag, with the flag's name: addr = "0.0.0.0:7070",
queue = ["default=10", "mail=5"], grace = "1m". Environment variables
override the file, and flags override both. An unknown key is refused with
its line. docs/operations.md has a full example.

SIGINT or SIGTERM stops gracefully: /readyz fails, waiting claims are
answered, new work is no longer claimed, running tasks get --grace to
finish (then go back to pending without spending an attempt). A second
signal ends the process at once.`,
		Example: `  weft serve
  weft serve --addr 0.0.0.0:7070 --database /var/lib/weft/weft.db   # with WEFT_API_TOKEN set
  weft serve --database postgres://weft@db/weft --queue default=50 --queue webhooks=20
  weft serve --addr 0.0.0.0:7443 --tls-cert server.pem --tls-key server-key.pem   # with WEFT_API_TOKEN set
  weft serve --config /etc/weft/weft.toml`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(g, cmd.Flags()); err != nil {
				return err
			}
			return runServe(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", defaultAddr, "address to listen on, host:port (env WEFT_ADDR)")
	f.BoolVar(&o.insecure, "insecure", false, "allow listening beyond loopback without WEFT_API_TOKEN")
	f.StringSliceVar(&o.queues, "queue", []string{"default=10"}, "queue the built-in kinds work, as name=concurrency; repeatable (env WEFT_QUEUES, comma-separated)")
	f.BoolVar(&o.denyPrivate, "webhook-deny-private", false, "refuse http tasks aimed at loopback, private and link-local addresses (env WEFT_WEBHOOK_DENY_PRIVATE)")
	f.DurationVar(&o.leaseTTL, "lease-ttl", 30*time.Second, "how long a claimed task stays leased without renewal")
	f.DurationVar(&o.grace, "grace", defaultGrace, "how long running tasks may finish at shutdown (env WEFT_SHUTDOWN_GRACE)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain), with --tls-key (env WEFT_TLS_CERT)")
	f.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key of --tls-cert (env WEFT_TLS_KEY)")
	f.StringVar(&o.readToken, "read-token", "", "a read-only token for the API and the dashboard: sees everything, changes nothing (env WEFT_API_READ_TOKEN)")
	f.StringArrayVar(&o.label, "label", nil, "a worker label of this server's workers, as LABEL=VALUE: they claim the tasks whose requirements their labels satisfy (repeatable; env WEFT_LABELS, comma-separated)")

	// The config file: read before the environment and the other flags,
	// which override it (applyConfig, from the root's pre-run hook).
	var config string
	f.StringVar(&config, configFlag, "", "read settings from this TOML file: each key is a flag's name (env WEFT_CONFIG)")
	return cmd
}

// resolve applies the environment to flags not given and checks them.
func (o *serveOptions) resolve(g *globals, fs *pflag.FlagSet) error {
	env := func(flag, name string) (string, bool) {
		if fs.Changed(flag) {
			return "", false
		}
		v, ok := g.lookupEnv(name)
		return v, ok && v != ""
	}
	if v, ok := env("addr", "WEFT_ADDR"); ok {
		o.addr = v
	}
	if v, ok := env("queue", "WEFT_QUEUES"); ok {
		o.queues = strings.Split(v, ",")
	}
	if v, ok := env("webhook-deny-private", "WEFT_WEBHOOK_DENY_PRIVATE"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return usagef("WEFT_WEBHOOK_DENY_PRIVATE: %q is not true or false", v)
		}
		o.denyPrivate = b
	}
	if v, ok := env("grace", "WEFT_SHUTDOWN_GRACE"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return usagef("WEFT_SHUTDOWN_GRACE: %q is not a duration (for example 30s)", v)
		}
		o.grace = d
	}
	if o.grace < 0 {
		return usagef("--grace: %s is negative", o.grace)
	}
	if err := o.resolveTLS(env); err != nil {
		return err
	}
	if v, ok := g.lookupEnv("WEFT_SIGNING_KEYS"); ok && v != "" {
		if err := checkSigningKeys(v); err != nil {
			return usagef("WEFT_SIGNING_KEYS: %v", err)
		}
		o.signingKeys = v
	}
	if v, ok := env("read-token", "WEFT_API_READ_TOKEN"); ok {
		o.readToken = v
	}
	if o.readToken != "" && (g.Token == "" || o.readToken == g.Token) {
		return usagef("--read-token (WEFT_API_READ_TOKEN) needs WEFT_API_TOKEN set to another token")
	}
	if o.leaseTTL < time.Second {
		return usagef("--lease-ttl: %s is too short (at least 1s)", o.leaseTTL)
	}
	labels, err := workerLabels(g, fs.Changed("label"), o.label)
	if err != nil {
		return err
	}
	o.labels = labels
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return usagef("--addr: %q is not host:port (for example %s)", o.addr, defaultAddr)
	}
	if !isLoopback(host) && g.Token == "" && !o.insecure {
		return usagef("--addr %s listens beyond this machine, and no API token is set: set WEFT_API_TOKEN (or --token), or pass --insecure to serve without authentication", o.addr)
	}
	_, err = parseQueues(o.queues)
	return err
}

// checkSigningKeys validates WEFT_SIGNING_KEYS before anything is opened.
func checkSigningKeys(v string) error {
	keys, err := waittoken.ParseKeys(v)
	if err != nil {
		return err
	}
	_, err = waittoken.NewRing(keys...)
	return err
}

// isLoopback reports whether host only accepts connections from this
// machine. An empty host or a wildcard listens everywhere.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseQueues reads name=concurrency pairs; a bare name gets 10.
func parseQueues(specs []string) (map[string]weft.QueueConfig, error) {
	out := make(map[string]weft.QueueConfig, len(specs))
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		name, n, hasN := strings.Cut(spec, "=")
		workers := 10
		if hasN {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 || v > 10000 {
				return nil, usagef("--queue %q: concurrency must be a number from 1 to 10000", spec)
			}
			workers = v
		}
		if !store.ValidName(name) {
			return nil, usagef("--queue %q: %q is not a valid queue name (a letter, then letters, digits, '_', '-', '.', ':')", spec, name)
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--queue %q: queue %s given twice", spec, name)
		}
		out[name] = weft.QueueConfig{MaxWorkers: workers}
	}
	if len(out) == 0 {
		return nil, usagef("--queue: at least one queue is needed")
	}
	return out, nil
}

func runServe(ctx context.Context, g *globals, o serveOptions) error {
	log := g.logger(g.stderr)
	queues, err := parseQueues(o.queues)
	if err != nil {
		return err
	}
	db, err := parseDatabase(g.Database)
	if err != nil {
		return err
	}
	// The certificate is read, and the address bound, before the database
	// is opened: a server that cannot serve must not have created (or
	// migrated) a database first.
	tlsConfig, err := o.serverTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen on %s: the address is in use (is another weft serve running? choose another with --addr)", o.addr)
		}
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	defer ln.Close()
	st, err := db.open(ctx, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("weft: closing the database", "err", err)
		}
	}()
	traced, stopTracing, err := tracing.Setup(ctx, func(k string) string { v, _ := g.lookupEnv(k); return v })
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("weft: flushing traces", "err", err)
		}
	}()
	ws := weft.NewWorkers()
	webhook.Register(ws, webhook.Config{DenyPrivate: o.denyPrivate, Logger: log})
	// The dashboard charts the rollups: the server keeps them (every 5s,
	// or as WEFT_ROLLUPS_INTERVAL says; 0 turns them off).
	rollups, err := maintenance.Interval("rollups", 5*time.Second)
	if err != nil {
		return usagef("%v", err)
	}
	if rollups == 0 {
		rollups = -1
	}
	client, err := weft.NewClient(st, &weft.Config{Queues: queues, Workers: ws, LeaseTTL: o.leaseTTL, SigningKeys: o.signingKeys,
		RollupInterval: rollups, Labels: o.labels, Logger: log, LogOutcomes: true})
	if err != nil {
		return err
	}
	version := buildVersion().Version
	drained := make(chan struct{})
	dash, err := dashboard.New(dashboard.Config{Client: client, Token: g.Token, ReadToken: o.readToken, Bulk: dashboard.StoreBulk(st), Done: drained, Logger: log})
	if err != nil {
		return err
	}
	api, err := httpapi.New(httpapi.Config{Client: client, Kinds: ws.EngineKinds(), Token: g.Token, ReadToken: o.readToken,
		Dashboard: dash, Version: version, Logger: log, LogOutcomes: true})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSConfig:         tlsConfig,
	}
	served := make(chan error, 1)
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
		go func() { served <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- hs.Serve(ln) }()
	}
	warnClearToken(log, g.Token, tlsConfig != nil, hostOf(o.addr), ln.Addr().String())
	log.Info("weft: serving", "addr", scheme+"://"+ln.Addr().String(), "dashboard", scheme+"://"+ln.Addr().String()+"/ui/",
		"database", db.String(), "version", version, "auth", g.Token != "", "read_token", o.readToken != "", "tracing", traced)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("weft: shutting down", "grace", o.grace)
	case serveErr = <-served:
		log.Error("weft: the HTTP server stopped", "err", serveErr)
	}
	// Stop answering readiness and release long polls first, so that
	// Shutdown only waits for short requests.
	api.Drain()
	close(drained)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("weft: HTTP requests still open at the end of the grace period", "err", err)
	}
	if err := client.Stop(sctx); err != nil {
		log.Warn("weft: tasks still running at the end of the grace period went back to pending", "err", err)
	}
	log.Info("weft: stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}
