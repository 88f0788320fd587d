package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// role is what a request may do.
type role int

const (
	roleNone  role = iota
	roleRead       // sees everything, changes nothing
	roleAdmin      // sees and acts
)

// sessionCookie names the dashboard's cookie; sessionTTL is how long a
// login lasts.
const (
	sessionCookie = "weft_session"
	sessionTTL    = 12 * time.Hour
)

// session is who a request is: its role, and the session nonce its CSRF
// token is derived from ("" for bearer requests, which need none).
type session struct {
	role  role
	nonce string
	key   [32]byte
}

// csrf is the session's CSRF token: an HMAC of its nonce, so that nothing
// is stored on the server.
func (s session) csrf() string {
	if s.nonce == "" {
		return ""
	}
	m := hmac.New(sha256.New, s.key[:])
	m.Write([]byte("csrf\x00" + s.nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// auth checks tokens and signs and reads session cookies.
type auth struct {
	open             bool // no token: everyone is an admin
	token, readToken [32]byte
	hasRead          bool
	keys             map[role][32]byte
	path             string
}

func newAuth(token, readToken string, anon [32]byte, base string) *auth {
	a := &auth{open: token == "", keys: map[role][32]byte{}, path: base + "/"}
	if a.open {
		a.keys[roleAdmin] = anon
		return a
	}
	a.token = sha256.Sum256([]byte(token))
	a.keys[roleAdmin] = sessionKey(token)
	if readToken != "" {
		a.hasRead = true
		a.readToken = sha256.Sum256([]byte(readToken))
		a.keys[roleRead] = sessionKey(readToken)
	}
	return a
}

// tokenRole says which role a presented token grants. Both sides are
// hashed before the constant-time comparison, so that not even a token's
// length leaks.
func (a *auth) tokenRole(tok string) role {
	sum := sha256.Sum256([]byte(tok))
	switch {
	case subtle.ConstantTimeCompare(sum[:], a.token[:]) == 1:
		return roleAdmin
	case a.hasRead && subtle.ConstantTimeCompare(sum[:], a.readToken[:]) == 1:
		return roleRead
	}
	return roleNone
}

// identify reads the request's bearer token or session cookie.
func (a *auth) identify(r *http.Request) session {
	if scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " "); ok && strings.EqualFold(scheme, "Bearer") && !a.open {
		return session{role: a.tokenRole(strings.TrimSpace(tok))}
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}
	}
	return a.parse(c.Value)
}

// parse checks a cookie value: role.nonce.expiry.mac.
func (a *auth) parse(v string) session {
	parts := strings.Split(v, ".")
	if len(parts) != 4 {
		return session{}
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil {
		return session{}
	}
	rl := role(n)
	key, ok := a.keys[rl]
	if !ok {
		return session{}
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return session{}
	}
	want := sign(key, strings.Join(parts[:3], "."))
	if !hmac.Equal([]byte(want), []byte(parts[3])) {
		return session{}
	}
	return session{role: rl, nonce: parts[1], key: key}
}

func sign(key [32]byte, msg string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue sets a new session cookie for rl and returns the session.
func (a *auth) issue(w http.ResponseWriter, r *http.Request, rl role) session {
	var b [18]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on supported systems
	nonce := base64.RawURLEncoding.EncodeToString(b[:])
	exp := time.Now().Add(sessionTTL).Unix()
	msg := strconv.Itoa(int(rl)) + "." + nonce + "." + strconv.FormatInt(exp, 10)
	key := a.keys[rl]
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: msg + "." + sign(key, msg), Path: a.path,
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	return session{role: rl, nonce: nonce, key: key}
}

// sameOrigin refuses what a browser marks as coming from another site or
// origin: Sec-Fetch-Site, else the Origin header, must say the request
// came from the dashboard's own origin.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

type sessionKeyT struct{}

// withSession stores the request's session in its context.
func withSession(r *http.Request, s session) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), sessionKeyT{}, s))
}

func sessionOf(r *http.Request) session {
	s, _ := r.Context().Value(sessionKeyT{}).(session)
	return s
}

// authenticated lets through requests with a role; others are sent to
// the login page (pages) or refused (streams, actions).
func (d *Dashboard) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := d.auth.identify(r)
		if s.role == roleNone && d.auth.open {
			// Open access: a session only to carry the CSRF token.
			s = d.auth.issue(w, r, roleAdmin)
		}
		if s.role == roleNone {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, d.cfg.Base+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, withSession(r, s))
	})
}

// loginPage shows the login form.
func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if d.auth.open {
		http.Redirect(w, r, d.cfg.Base+"/", http.StatusSeeOther)
		return
	}
	d.render(w, r, http.StatusOK, "login", &view{Title: "Log in", Data: loginData{Next: safeNext(d.cfg.Base, r.URL.Query().Get("next"))}})
}

type loginData struct {
	Next, Error string
}

// login trades a token for a session cookie.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if d.auth.open {
		http.Redirect(w, r, d.cfg.Base+"/", http.StatusSeeOther)
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	next := safeNext(d.cfg.Base, r.PostFormValue("next"))
	rl := d.auth.tokenRole(r.PostFormValue("token"))
	if rl == roleNone {
		d.render(w, r, http.StatusUnauthorized, "login", &view{Title: "Log in", Data: loginData{Next: next, Error: "That token is not valid."}})
		return
	}
	d.auth.issue(w, r, rl)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: d.auth.path, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, d.cfg.Base+"/login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on the dashboard.
func safeNext(base, next string) string {
	if next == "" || !strings.HasPrefix(next, base+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return base + "/"
	}
	return next
}
