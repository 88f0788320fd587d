// Package httpapi serves Weft's HTTP API v1: enqueueing and inspecting
// tasks, streaming their events and output, waiting for results, bulk
// actions on tasks, remote workers in any language (claims, heartbeats,
// output frames, outcomes under lease tokens) and the registry of workers,
// flows of dependent tasks, waits and signals, queue statistics and
// pausing, limits and queues' fairness weights, schedules, health, Prometheus metrics and the OpenAPI document;
// and the Model Context Protocol at /mcp (internal/mcpserver), for AI
// agents.
//
// Handlers decode strictly (unknown fields, trailing data and oversized
// bodies are refused before anything is written), validate everything
// before the one store call that writes, and answer every error as JSON
// {"error": {"code", "message", "field"}}, as internal/ops's ProblemOf
// says. The task, event and queue routes are internal/ops's service, which
// the CLI's direct mode runs too; this package reads their requests and
// writes their answers.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/internal/engine"
	"github.com/weftworks/weft/internal/mcpserver"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// Default limits.
const (
	// DefaultMaxBodyBytes bounds a request body (a batch of tasks or of
	// outcomes).
	DefaultMaxBodyBytes = 32 << 20
	// smallBodyBytes bounds the bodies of the other requests: a lease
	// token with a result or progress within the args limit.
	smallBodyBytes = 2 << 20
	// maxClaimWait bounds a claim's long poll.
	maxClaimWait = 60 * time.Second
	// defaultLeaseTTL is a remote lease's default duration.
	defaultLeaseTTL = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Client is the engine the API drives; its store is used directly for
	// remote workers' claims and outcomes.
	Client *weft.Client
	// Kinds are the kinds the serving process registered. Remote work of
	// a kind listed here follows the kind's policy: a failure is retried
	// after its backoff, and a claimed task without a timeout of its own
	// gets the kind's. Other kinds get engine.DefaultBackoff and no
	// timeout.
	Kinds map[string]engine.Kind
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every route except /healthz, /readyz and /v1/signals, whose
	// waitpoint token is its credential.
	Token string
	// ReadToken, when set with Token, is accepted on the routes that
	// change nothing (GET); a request with it that would change anything
	// is refused (403 forbidden).
	ReadToken string
	// Dashboard, when set, is served under /ui/ (and / redirects there);
	// it checks its own access (see package dashboard).
	Dashboard http.Handler
	// MaxBodyBytes bounds a request body; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// EventPoll is how often a followed event stream looks for new
	// events; default ops.DefaultPoll (100ms).
	EventPoll time.Duration
	// Version is reported by /healthz.
	Version string
	// Logger receives request errors. Default slog.Default().
	Logger *slog.Logger
	// LogOutcomes logs each remote outcome that ends its task, and each
	// retry, at info (engine.LogOutcome).
	LogOutcomes bool
	// TracerProvider traces the API's enqueues; default OpenTelemetry's
	// global provider.
	TracerProvider trace.TracerProvider
	// Registry, when set, receives the API's metrics; default a new
	// registry with the Go and process collectors.
	Registry *prometheus.Registry
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	cfg      Config
	st       store.Store
	ops      *ops.Service
	waits    *ops.Waits
	log      *slog.Logger
	mux      *http.ServeMux
	handler  http.Handler
	tokenSum [sha256.Size]byte
	readSum  [sha256.Size]byte
	metrics  *metrics
	registry *registry
	draining atomic.Bool
	// drained is closed by Drain: long polls answer and followed streams
	// end, so that a graceful shutdown does not wait for them.
	drained   chan struct{}
	drainOnce sync.Once
	// mcp serves the Model Context Protocol at /mcp, on the same service
	// as the API's task and queue routes.
	mcp http.Handler
}

// New returns the API server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("httpapi: Config.Client is nil")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, st: cfg.Client.Store(), log: cfg.Logger, mux: http.NewServeMux(), drained: make(chan struct{})}
	s.registry = newRegistry(s.st, s.log)
	s.ops = ops.New(clientCancels{Store: s.st, client: cfg.Client}, ops.Config{Poll: cfg.EventPoll, Done: s.drained, TracerProvider: cfg.TracerProvider})
	s.waits = ops.NewWaits(cfg.Client)
	if cfg.Token != "" {
		s.tokenSum = sha256.Sum256([]byte(cfg.Token))
	}
	if cfg.ReadToken != "" {
		if cfg.Token == "" {
			return nil, errors.New("httpapi: a read-only token needs Config.Token")
		}
		s.readSum = sha256.Sum256([]byte(cfg.ReadToken))
	}
	m, err := newMetrics(cfg.Registry, s.st)
	if err != nil {
		return nil, fmt.Errorf("httpapi: metrics: %w", err)
	}
	s.metrics = m
	s.mcp = mcpserver.Handler(mcpserver.New(mcpserver.Config{Backend: mcpserver.Service(s.ops, s.waits), Version: cfg.Version, Logger: cfg.Logger}), cfg.Token != "")
	s.routes()
	s.handler = s.metrics.instrument(s.mux, s.authorize(s.mux))
	return s, nil
}

// clientCancels is the server's store with Cancel taken through the
// client: when the engine of this process runs the task, it stops it at
// once rather than at its next lease extension.
type clientCancels struct {
	store.Store
	client *weft.Client
}

func (c clientCancels) Cancel(ctx context.Context, id string) (*store.Task, error) {
	return c.client.Cancel(ctx, id)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Drain makes /readyz fail, so a load balancer stops sending new work
// while the process finishes what it has, answers waiting claims (with the
// tasks they have, usually none) and ends followed event streams; clients
// reconnect elsewhere or later. Short requests in flight are not touched:
// call it before http.Server.Shutdown.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.drainOnce.Do(func() { close(s.drained) })
}

// route is one entry of the route table.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// routeTable lists every documented route; openapi.json describes exactly
// these (a test holds them in step).
func (s *Server) routeTable() []route {
	return []route{
		{"GET /healthz", s.healthz},
		{"GET /readyz", s.readyz},
		{"GET /metrics", s.metrics.serve},
		{"GET /v1/openapi.json", serveOpenAPI},

		{"POST /v1/tasks", s.enqueue},
		{"GET /v1/tasks", s.list},
		{"GET /v1/tasks/{id}", s.get},
		{"POST /v1/tasks/{id}/cancel", s.cancel},
		{"POST /v1/tasks/{id}/retry", s.retry},
		{"POST /v1/tasks/{id}/run", s.runTask},
		{"DELETE /v1/tasks/{id}", s.deleteTask},
		{"POST /v1/tasks/bulk", s.bulk},
		{"GET /v1/tasks/{id}/events", s.events},
		{"GET /v1/events", s.feed},
		{"GET /v1/tasks/{id}/stream", s.readStream},
		{"GET /v1/tasks/{id}/result", s.result},

		{"POST /v1/claims", s.claim},
		{"POST /v1/tasks/{id}/heartbeat", s.heartbeat},
		{"POST /v1/tasks/{id}/progress", s.progress},
		{"POST /v1/tasks/{id}/stream", s.appendStream},
		{"POST /v1/tasks/{id}/complete", s.complete},
		{"POST /v1/tasks/{id}/fail", s.fail},
		{"POST /v1/outcomes", s.outcomes},
		{"POST /v1/tasks/{id}/waitpoints", s.createWaitpoint},
		{"POST /v1/tasks/{id}/wait", s.wait},

		{"POST /v1/signals", s.signal},
		{"POST /v1/tasks/{id}/signals", s.signalTask},
		{"GET /v1/tasks/{id}/waitpoints", s.waitpoints},

		{"POST /v1/flows", s.submitFlow},
		{"GET /v1/flows", s.listFlows},
		{"GET /v1/flows/{id}", s.getFlow},
		{"POST /v1/flows/{id}/cancel", s.cancelFlow},
		{"POST /v1/flows/{id}/retry", s.retryFlow},
		{"GET /v1/flows/{id}/events", s.flowEvents},
		{"POST /v1/tasks/{id}/members", s.addMembers},

		{"GET /v1/queues", s.queues},
		{"POST /v1/queues/{name}/pause", s.pauseQueue},
		{"POST /v1/queues/{name}/resume", s.resumeQueue},
		{"GET /v1/queues/{name}/fairness", s.fairness},
		{"PUT /v1/queues/{name}/fairness", s.putFairness},

		{"GET /v1/limits", s.limits},
		{"GET /v1/limits/{name}", s.getLimit},
		{"PUT /v1/limits/{name}", s.putLimit},
		{"DELETE /v1/limits/{name}", s.deleteLimit},

		{"POST /mcp", s.mcp.ServeHTTP},

		{"GET /v1/schedules", s.schedules},
		{"GET /v1/schedules/{name}", s.getSchedule},
		{"PUT /v1/schedules/{name}", s.putSchedule},
		{"DELETE /v1/schedules/{name}", s.deleteSchedule},
		{"POST /v1/schedules/{name}/pause", s.pauseSchedule},
		{"POST /v1/schedules/{name}/resume", s.resumeSchedule},
		{"POST /v1/schedules/{name}/trigger", s.triggerSchedule},

		{"GET /v1/workers", s.workers},
	}
}

func (s *Server) routes() {
	for _, r := range s.routeTable() {
		s.mux.HandleFunc(r.pattern, r.handler)
	}
	if s.cfg.Dashboard != nil {
		s.mux.Handle("/ui/", s.cfg.Dashboard)
		s.mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	s.mux.HandleFunc("/", s.noRoute)
}

// noRoute answers what no route took: 405 when the path is served under
// other methods, else 404, as JSON like every other error.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, r, http.StatusMethodNotAllowed, api.CodeMethod, "", fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	writeError(w, r, http.StatusNotFound, api.CodeNotFound, "", fmt.Sprintf("no route %s %s (see /v1/openapi.json)", r.Method, r.URL.Path))
}

// authorize requires the bearer token on every route but health checks
// the delivery of a signal by token (that token is the credential of
// whoever a task handed it to, who need not have API access), and the
// dashboard, which checks its own. The read-only token passes GET
// requests only. Both sides are hashed before the constant-time
// comparison so that not even the token's length leaks through timing.
func (s *Server) authorize(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/healthz" || p == "/readyz" || p == "/v1/signals" || s.cfg.Dashboard != nil && (p == "/" || strings.HasPrefix(p, "/ui/")) {
			next.ServeHTTP(w, r)
			return
		}
		// The scheme is case-insensitive (RFC 9110); the token is not.
		scheme, got, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		full := ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
		read := !full && ok && s.cfg.ReadToken != "" && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(sum[:], s.readSum[:]) == 1
		switch {
		case full:
		case read && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		case read:
			writeError(w, r, http.StatusForbidden, api.CodeForbidden, "", "the read-only token (WEFT_API_READ_TOKEN) cannot change anything: use WEFT_API_TOKEN")
			return
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
			writeError(w, r, http.StatusUnauthorized, api.CodeUnauthorized, "", "missing or wrong bearer token (Authorization: Bearer $WEFT_API_TOKEN)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

// readyz says whether this process should receive traffic: it is not
// draining and its database answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "", "shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.st.Stats(ctx); err != nil {
		writeError(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "", "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

//go:embed openapi.json
var openAPIDoc []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
}
