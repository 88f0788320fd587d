package dashboard

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// view is what a page template renders.
type view struct {
	Title string
	// Nav is the menu entry to highlight.
	Nav string
	// Live says which events refresh the page: "" none, "*" any, or a
	// task id.
	Live string
	Data any
	// Set by render.
	Base   string
	CanAct bool
	CSRF   string
	Auth   bool // a login is needed (so a logout button is shown)
	// ReadOnly is set for a read-only session.
	ReadOnly bool
	Flash    string
	FlashOK  bool
	Now      time.Time
}

// pageFunc reads what a page shows.
type pageFunc func(r *http.Request) (*view, error)

// actionFunc carries out an action and says where to go next, with a
// message for the page.
type actionFunc func(r *http.Request) (next, msg string, err error)

// page serves a GET page.
func (d *Dashboard) page(h pageFunc) http.Handler {
	return d.authenticated(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			d.fail(w, r, err)
			return
		}
		d.render(w, r, http.StatusOK, v.Nav, v)
	}))
}

// action serves a POST action: same origin, an admin, and the session's
// CSRF token (requests with a bearer token have no session and need
// none: a browser never sends one across sites). Then it redirects.
func (d *Dashboard) action(h actionFunc) http.Handler {
	return d.authenticated(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessionOf(r)
		if !sameOrigin(r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 2<<20)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		if s.role != roleAdmin {
			http.Error(w, "this session is read-only", http.StatusForbidden)
			return
		}
		if s.nonce != "" && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf())) != 1 {
			http.Error(w, "missing or wrong CSRF token: reload the page", http.StatusForbidden)
			return
		}
		next, msg, err := h(r)
		if err != nil {
			var ue *userError
			if !errors.As(err, &ue) && !isUserError(err) {
				d.fail(w, r, err)
				return
			}
			msg = "error: " + err.Error()
		}
		if next == "" {
			next = d.cfg.Base + "/"
		}
		if msg != "" {
			sep := "?"
			if strings.Contains(next, "?") {
				sep = "&"
			}
			next += sep + "msg=" + url.QueryEscape(msg)
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	}))
}

// userError is a refusal to show on the page rather than as a failure.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func userErrorf(format string, args ...any) error { return &userError{fmt.Sprintf(format, args...)} }

// isUserError says whether a store error is the request's doing.
func isUserError(err error) bool {
	var ve *store.ValidationError
	return errors.As(err, &ve) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, store.ErrAlreadyFinished) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrFlowNotFound) ||
		errors.Is(err, store.ErrLimitNotFound)
}

// fail answers an error: the request's own as 400 or 404, the rest as 500,
// logged.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ue *userError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrFlowNotFound), errors.Is(err, store.ErrLimitNotFound):
		d.render(w, r, http.StatusNotFound, "error", &view{Title: "Not found", Data: err.Error()})
	case errors.As(err, &ue), isUserError(err):
		d.render(w, r, http.StatusBadRequest, "error", &view{Title: "Bad request", Data: err.Error()})
	default:
		d.log.Error("dashboard: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		d.render(w, r, http.StatusInternalServerError, "error", &view{Title: "Error", Data: "internal error; the server log has the details"})
	}
}

// render executes a page into a buffer first, so that a template error
// is a clean 500 rather than half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	s := sessionOf(r)
	v.Base, v.CanAct, v.ReadOnly, v.CSRF, v.Auth, v.Now = d.cfg.Base, s.role == roleAdmin, s.role == roleRead, s.csrf(), !d.auth.open, time.Now()
	if msg := r.URL.Query().Get("msg"); msg != "" && v.Flash == "" {
		v.Flash, v.FlashOK = msg, !strings.HasPrefix(msg, "error:")
	}
	t, ok := d.pages[name]
	if !ok {
		d.log.Error("dashboard: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", v); err != nil {
		d.log.Error("dashboard: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// assetVersions are short hashes of the embedded assets, appended to their
// URLs so that a new binary's assets are never taken from a cache.
var assetVersions = func() map[string]string {
	out := map[string]string{}
	_ = fs.WalkDir(assetFiles, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := assetFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[strings.TrimPrefix(p, "assets/")] = hex.EncodeToString(sum[:4])
		return nil
	})
	return out
}()

// funcs are the templates' helpers.
func (d *Dashboard) funcs() template.FuncMap {
	return template.FuncMap{
		"asset": func(name string) string { return d.cfg.Base + "/static/" + name + "?v=" + assetVersions[name] },
		"time":  fmtTime,
		"ago":   ago,
		"dur":   fmtDur,
		"json":  prettyJSON,
		"num":   fmtNum,
		"pct": func(a, b int64) int64 {
			if b == 0 {
				return 0
			}
			return a * 100 / b
		},
		"states":     func() []store.State { return store.States() },
		"query":      func(v url.Values) string { return v.Encode() },
		"short":      func(id string) string { return shortID(id) },
		"add":        func(a, b int) int { return a + b },
		"int64":      func(n int) int64 { return int64(n) },
		"flowStates": func() []store.FlowState { return store.FlowStates() },
		"count":      func(c map[store.State]int64, s string) int64 { return c[store.State(s)] },
		"pairs":      api.KeyValues,
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// ago says how long ago (or, negative, how long until) t is.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + fmtDur(-d)
	}
	return fmtDur(d) + " ago"
}

// fmtDur prints a duration at a readable precision.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func fmtNum(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + fmtNum(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// prettyJSON indents a JSON value for a <pre>; html/template escapes it.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

func shortID(id string) string {
	if len(id) > 13 {
		return id[len(id)-12:]
	}
	return id
}
