package cli

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft/internal/apiclient"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/remote"
	"github.com/weftworks/weft/internal/tracing"
)

// workerOptions configures a remote worker.
type workerOptions struct {
	ID     string
	Queues []string
	// Concurrency is how many tasks of each queue run at once.
	Concurrency int
	LeaseTTL    time.Duration
	// Wait is how long one claim long-polls.
	Wait time.Duration
	// Grace is how long running tasks may finish after a stop.
	Grace time.Duration
	// Kinds are the kinds the worker runs, registered through
	// weft.Workers as for `weft serve`.
	Kinds map[string]engine.Kind
	// Labels are the worker's labels, sent with its claims: it is given
	// only tasks whose requirements they satisfy.
	Labels map[string]string
	Log    *slog.Logger
}

func newWorkerCmd(g *globals) *cobra.Command {
	var (
		o           workerOptions
		denyPrivate bool
		labels      []string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the built-in task kinds against a server, as a remote worker",
		Long: `Claim tasks of the built-in kinds from the server at --server and run them here,
as weft serve runs them (the same attempt timeouts and panic recovery),
keeping their leases alive while they run and reporting each outcome; the
server retries failures by the kind's policy.

Built-in kinds: http (one HTTP request per task, retried until the receiver
accepts it; see the webhook package). Tasks of other kinds are left for other
workers.

--label LABEL=VALUE (repeatable; or WEFT_LABELS="gpu=true,region=eu") gives the
worker labels: tasks enqueued with --require are claimed only by workers whose
labels satisfy them, and a worker without labels takes no such task.

Ctrl-C or SIGTERM stops claiming and lets running tasks finish for up to
--grace; tasks still running then are handed back to the server to run again
without spending an attempt. A second Ctrl-C exits at once (the server then
rescues the tasks when their leases expire).`,
		Example: `  weft worker
  weft worker --queue default --queue webhooks --concurrency 50
  weft worker --server https://weft.internal:7070 --token "$TOKEN" --deny-private
  weft worker --label region=eu --label mem=64`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Concurrency < 1 || o.Concurrency > 100 {
				return usagef("--concurrency: %d is out of range (1 to 100)", o.Concurrency)
			}
			if o.LeaseTTL < time.Second || o.LeaseTTL > time.Hour {
				return usagef("--lease-ttl: %s is out of range (1s to 1h)", o.LeaseTTL)
			}
			if o.Grace < 0 {
				return usagef("--grace: %s is negative", o.Grace)
			}
			var err error
			if o.Labels, err = workerLabels(g, cmd.Flags().Changed("label"), labels); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if o.ID == "" {
				host, _ := os.Hostname()
				if host == "" {
					host = "worker"
				}
				o.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
			}
			o.Wait = 30 * time.Second
			o.Log = g.logger(g.stderr)
			o.Kinds = builtinKinds(builtinConfig{DenyPrivate: denyPrivate, Log: o.Log})
			return runWorker(cmd.Context(), c, o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Queues, "queue", []string{"default"}, "queue to work (repeatable, or comma-separated)")
	f.IntVar(&o.Concurrency, "concurrency", 10, "tasks of each queue run at once")
	f.DurationVar(&o.Grace, "grace", 30*time.Second, "how long running tasks may finish after Ctrl-C or SIGTERM")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", 30*time.Second, "lease duration, renewed every third of it while a task runs")
	f.StringVar(&o.ID, "worker-id", "", "name of this worker in leases (default host-pid)")
	f.BoolVar(&denyPrivate, "deny-private", false, "http kind: refuse private, loopback and link-local addresses (set when URLs come from users)")
	f.StringArrayVar(&labels, "label", nil, "a worker label, as LABEL=VALUE (repeatable; env WEFT_LABELS, comma-separated)")
	return cmd
}

// runWorker runs the engine on the server's API until ctx is done, then
// stops gracefully. It returns nil after a graceful stop, and an error only
// when the server refuses the worker outright (bad token, bad request).
func runWorker(ctx context.Context, c *apiclient.Client, o workerOptions) error {
	kinds := slices.Sorted(maps.Keys(o.Kinds))
	log := o.Log.With("worker", o.ID)
	queues := make(map[string]int, len(o.Queues))
	for _, q := range o.Queues {
		queues[q] = o.Concurrency
	}
	traced, stopTracing, err := tracing.Setup(ctx, os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}()
	var tracer trace.Tracer
	if traced {
		tracer = otel.GetTracerProvider().Tracer(tracing.Name)
	}
	src := remote.New(remote.Config{Client: c, Wait: o.Wait, Logger: log})
	eng, err := engine.New(engine.Config{
		Source: src, Owner: o.ID, Queues: queues, Kinds: o.Kinds, LeaseTTL: o.LeaseTTL, Labels: o.Labels, Logger: log, Tracer: tracer,
	})
	if err != nil {
		return usagef("--queue: %w", err)
	}
	if err := eng.Start(ctx); err != nil {
		return fmt.Errorf("start the worker: %w", err)
	}
	log.Info("worker started", "server", c.BaseURL(), "queues", o.Queues, "kinds", kinds, "concurrency", o.Concurrency, "labels", o.Labels)

	var refused error
	select {
	case <-ctx.Done():
	case refused = <-src.Refused():
		log.Error("the server refused the worker; stopping", "err", refused)
	}
	log.Info("stopping: waiting for running tasks", "grace", o.Grace)
	grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.Grace)
	defer cancel()
	if err := eng.Stop(grace); err != nil {
		log.Warn("tasks still running after the grace period stay leased until the server rescues them", "err", err)
	}
	log.Info("worker stopped")
	if refused != nil {
		return fmt.Errorf("claim: %w", refused)
	}
	return nil
}

// workerLabels reads the labels of weft worker and weft serve: --label
// when given (set says so), else WEFT_LABELS, comma-separated.
func workerLabels(g *globals, set bool, flags []string) (map[string]string, error) {
	if set {
		return parseLabels("--label", flags)
	}
	if v, ok := g.lookupEnv("WEFT_LABELS"); ok && v != "" {
		return parseLabels("WEFT_LABELS", strings.Split(v, ","))
	}
	return parseLabels("--label", flags)
}
