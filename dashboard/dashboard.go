// Package dashboard is Weft's web dashboard: server-rendered pages of
// queues, tasks, schedules, workers, limits, flows and waits, with charts of the
// per-minute rollups Weft keeps, actions on what they show, and live
// updates over Server-Sent Events. `weft serve` mounts it at /ui/ (and
// redirects / there); a Go program mounts it on its own mux:
//
//	d, err := dashboard.New(dashboard.Config{Client: client, Token: token, Base: "/ui"})
//	mux.Handle("/ui/", d)
//
// Everything it needs is embedded in the binary: html/template pages, one
// stylesheet and one script of its own, no CDN and no build step. Pages
// are sent with a strict Content-Security-Policy (no inline script or
// style), every value is escaped by html/template, and every action is a
// POST that needs the session's CSRF token and a same-origin request.
//
// Access: without a Token, everyone may look and act (serve it on
// loopback only). With one, a login form trades the token for a signed,
// HttpOnly, SameSite=Strict cookie, and "Authorization: Bearer" works as
// on the API; the ReadToken logs in to a session that sees everything and
// changes nothing.
package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/internal/ops"
	"github.com/weftworks/weft/store"
)

// Config configures a Dashboard.
type Config struct {
	// Client is the Weft the dashboard shows and acts on; its store is
	// read directly, and cancels go through it so that a task it runs
	// stops at once.
	Client *weft.Client
	// Token, when set, is needed to see the dashboard: at the login form,
	// or as "Authorization: Bearer <token>".
	Token string
	// ReadToken, when set, logs in to a read-only session: every page, no
	// action. It needs Token.
	ReadToken string
	// Base is the path the dashboard is mounted under, without a trailing
	// slash; default "/ui". Its pages are Base+"/", Base+"/tasks", ...
	Base string
	// Bulk, when set, carries out actions on many tasks (retry, cancel,
	// delete, run now) in batches. Without it, retry and cancel are done
	// task by task, and delete and run now are not offered.
	Bulk Bulk
	// Poll is how often a live page's stream reads the feed of events;
	// default 250ms.
	Poll time.Duration
	// Done, when closed, ends the live streams, so that a draining server
	// does not wait for them; browsers reconnect.
	Done <-chan struct{}
	// Logger receives errors. Default slog.Default().
	Logger *slog.Logger
}

// Dashboard is the web dashboard. It is an http.Handler.
type Dashboard struct {
	cfg   Config
	st    store.Store
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	auth  *auth
	cache rollupCache
	// ops explains why a pending task is held back, as the API does.
	ops *ops.Service
}

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed assets
var assetFiles embed.FS

// New returns the dashboard for cfg. Its overview charts the per-minute
// rollups that a client keeps when its Config.RollupInterval is set (weft
// serve sets it): set it on the client of a program that shows the
// dashboard.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Client == nil {
		return nil, errors.New("dashboard: Config.Client is nil")
	}
	if cfg.ReadToken != "" && cfg.Token == "" {
		return nil, errors.New("dashboard: a read-only token needs a full token too (WEFT_API_TOKEN)")
	}
	if cfg.ReadToken != "" && cfg.ReadToken == cfg.Token {
		return nil, errors.New("dashboard: the read-only token must differ from the full token")
	}
	cfg.Base = strings.TrimSuffix(cfg.Base, "/")
	if cfg.Base == "" {
		cfg.Base = "/ui"
	}
	if !strings.HasPrefix(cfg.Base, "/") {
		return nil, fmt.Errorf("dashboard: Base %q does not start with /", cfg.Base)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dashboard{cfg: cfg, st: cfg.Client.Store(), log: cfg.Logger, mux: http.NewServeMux()}
	d.ops = ops.New(d.st, ops.Config{})
	var anon [32]byte
	if _, err := rand.Read(anon[:]); err != nil {
		return nil, fmt.Errorf("dashboard: session key: %w", err)
	}
	d.auth = newAuth(cfg.Token, cfg.ReadToken, anon, cfg.Base)
	pages, err := parsePages(d.funcs())
	if err != nil {
		return nil, err
	}
	d.pages = pages
	d.routes()
	return d, nil
}

// sessionKey derives a role's cookie-signing key from its token, so that
// sessions survive a restart and every server sharing the token accepts
// them, and changing the token ends them.
func sessionKey(token string) [32]byte {
	return sha256.Sum256([]byte("weft dashboard session\x00" + token))
}

// parsePages parses each page template with the layout.
func parsePages(funcs template.FuncMap) (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFiles, n)
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

// routes registers every page and action under the base path.
func (d *Dashboard) routes() {
	b := d.cfg.Base
	static, _ := fs.Sub(assetFiles, "assets") // the directory is embedded
	d.mux.Handle("GET "+b+"/static/", http.StripPrefix(b+"/static/", cacheable(http.FileServerFS(static))))
	d.mux.HandleFunc("GET "+b+"/login", d.loginPage)
	d.mux.HandleFunc("POST "+b+"/login", d.login)
	d.mux.HandleFunc("POST "+b+"/logout", d.logout)

	view := func(pattern string, h pageFunc) { d.mux.Handle("GET "+b+pattern, d.page(h)) }
	view("/{$}", d.overview)
	view("/queues", d.queuesPage)
	view("/tasks", d.tasksPage)
	view("/tasks/{id}", d.taskPage)
	view("/schedules", d.schedulesPage)
	view("/workers", d.workersPage)
	view("/limits", d.limitsPage)
	view("/limits/{name}", d.limitPage)
	view("/flows", d.flowsPage)
	view("/flows/{id}", d.flowPage)
	view("/waits", d.waitsPage)
	d.mux.Handle("GET "+b+"/live", d.authenticated(http.HandlerFunc(d.live)))

	act := func(pattern string, h actionFunc) { d.mux.Handle("POST "+b+pattern, d.action(h)) }
	act("/queues/{name}/{op}", d.queueAction)
	act("/tasks/{id}/{op}", d.taskAction)
	act("/tasks", d.tasksAction)
	act("/schedules", d.createSchedule)
	act("/schedules/{name}/{op}", d.scheduleAction)
	act("/flows/{id}/{op}", d.flowAction)
	d.mux.HandleFunc(b+"/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such page", http.StatusNotFound)
	})
}

// cacheable lets browsers keep the embedded assets for an hour.
func cacheable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}
