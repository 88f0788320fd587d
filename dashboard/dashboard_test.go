package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/dashboard"
	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/store"
)

// session is a browser-like client of a dashboard served in process: a
// cookie jar, same-origin requests, and the CSRF token of the last page.
type session struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newSession(t *testing.T, base string) *session {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &session{t: t, base: base, c: c}
}

var (
	csrfField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	actionButton = regexp.MustCompile(`<button[^>]*class="act[" ]`)
)

// get fetches a page and keeps its CSRF token.
func (s *session) get(path string) (int, string) {
	s.t.Helper()
	resp, err := s.c.Get(s.base + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindStringSubmatch(string(b)); m != nil {
		s.csrf = m[1]
	}
	return resp.StatusCode, string(b)
}

// post sends a form from the dashboard's own origin, with the CSRF token
// unless the form sets one; it returns the status and where it redirects.
func (s *session) post(path string, form url.Values) (int, string) {
	s.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", s.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	loc, _ := url.QueryUnescape(resp.Header.Get("Location"))
	return resp.StatusCode, loc
}

func serve(t *testing.T, cfg dashboard.Config) (*httptest.Server, store.Store, *weft.Client) {
	t.Helper()
	_, st := testenv.SQLite(t)
	c := testenv.Client(t, st)
	cfg.Client, cfg.Logger = c, testenv.Logger()
	d, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", d)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, st, c
}

// TestActions works every action once through the handler, as a browser
// would send it, and checks the store.
func TestActions(t *testing.T) {
	srv, st, _ := serve(t, dashboard.Config{Token: "full", ReadToken: "look"})
	ctx := context.Background()
	s := newSession(t, srv.URL)
	if code, loc := s.post("/ui/login", url.Values{"token": {"full"}, "next": {"/ui/queues"}}); code != http.StatusSeeOther || loc != "/ui/queues" {
		t.Fatalf("login: %d to %q", code, loc)
	}
	if code, _ := s.get("/ui/schedules"); code != 200 || s.csrf == "" {
		t.Fatalf("schedules page: %d, csrf %q", code, s.csrf)
	}
	// Schedules: create, refuse a bad one, pause, run now, delete.
	code, loc := s.post("/ui/schedules", url.Values{"name": {"nightly"}, "spec": {"@every 1h"}, "kind": {"report"}, "queue": {"reports"},
		"args": {`{"full":true}`}, "max_attempts": {"3"}, "missed": {"skip"}})
	if code != http.StatusSeeOther || !strings.Contains(loc, "saved schedule nightly") {
		t.Fatalf("create schedule: %d %q", code, loc)
	}
	if _, loc := s.post("/ui/schedules", url.Values{"name": {"bad"}, "spec": {"every now and then"}, "kind": {"k"}}); !strings.Contains(loc, "error:") {
		t.Errorf("a bad spec was answered %q", loc)
	}
	s.post("/ui/schedules/nightly/pause", nil)
	scs, _ := st.Schedules(ctx)
	if len(scs) != 1 || !scs[0].Paused || scs[0].Queue != "reports" || scs[0].MaxAttempts != 3 {
		t.Fatalf("schedules = %+v, want nightly, paused", scs)
	}
	if _, loc := s.post("/ui/schedules/nightly/run", nil); !strings.Contains(loc, "enqueued nightly") {
		t.Errorf("run now: %q", loc)
	}
	if tasks, _ := st.List(ctx, store.ListParams{Kind: "report"}); len(tasks) != 1 || tasks[0].Queue != "reports" {
		t.Errorf("run now enqueued %+v", tasks)
	}
	s.post("/ui/schedules/nightly/delete", nil)
	if scs, _ := st.Schedules(ctx); len(scs) != 0 {
		t.Errorf("schedules after delete = %+v", scs)
	}
	// Queues: pause, resume.
	s.post("/ui/queues/reports/pause", nil)
	if stats, _ := st.Stats(ctx); !paused(stats, "reports") {
		t.Error("the queue was not paused")
	}
	s.post("/ui/queues/reports/resume", nil)
	if stats, _ := st.Stats(ctx); paused(stats, "reports") {
		t.Error("the queue was not resumed")
	}
	// A flow: cancel, then retry.
	f, err := st.EnqueueFlow(ctx, store.NewFlow{Members: []store.NewFlowMember{
		{Key: "a", Task: store.NewTask{Kind: "x"}}, {Key: "b", Task: store.NewTask{Kind: "y"}, DependsOn: []string{"a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := s.get("/ui/flows/" + f.ID); code != 200 || !strings.Contains(body, `<svg class="dag"`) {
		t.Fatalf("flow page: %d", code)
	}
	s.post("/ui/flows/"+f.ID+"/cancel", nil)
	if fl, _ := st.Flow(ctx, f.ID); fl.State != store.FlowCancelled {
		t.Errorf("flow after cancel: %s", fl.State)
	}
	s.post("/ui/flows/"+f.ID+"/retry", nil)
	if fl, _ := st.Flow(ctx, f.ID); fl.State != store.FlowRunning {
		t.Errorf("flow after retry: %s", fl.State)
	}
	// A task: cancel, retry; an action the server lacks is refused.
	id := f.Tasks["a"]
	s.post("/ui/tasks/"+id+"/cancel", nil)
	if tk, _ := st.Get(ctx, id); tk.State != store.StateCancelled {
		t.Errorf("task after cancel: %s", tk.State)
	}
	s.post("/ui/tasks/"+id+"/retry", nil)
	if tk, _ := st.Get(ctx, id); tk.State != store.StatePending {
		t.Errorf("task after retry: %s", tk.State)
	}
	if _, loc := s.post("/ui/tasks/"+id+"/delete", nil); !strings.Contains(loc, "not available") {
		t.Errorf("delete without bulk operations: %q", loc)
	}

	// Refusals: no CSRF token, another origin, a read-only session, no
	// session at all. Nothing changes.
	if code, _ := s.post("/ui/tasks/"+id+"/cancel", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden {
		t.Errorf("a wrong CSRF token: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/tasks/"+id+"/cancel", strings.NewReader("csrf="+url.QueryEscape(s.csrf)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := s.c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("another origin: %v %v", resp.StatusCode, err)
	}
	ro := newSession(t, srv.URL)
	ro.post("/ui/login", url.Values{"token": {"look"}})
	if _, body := ro.get("/ui/tasks/" + id); actionButton.MatchString(body) {
		t.Error("the read-only task page has action buttons")
	}
	if code, _ := ro.post("/ui/tasks/"+id+"/cancel", nil); code != http.StatusForbidden {
		t.Errorf("a read-only cancel: %d", code)
	}
	anon := newSession(t, srv.URL)
	if code, _ := anon.get("/ui/tasks"); code != http.StatusSeeOther {
		t.Errorf("a page without a session: %d, want a redirect to the login", code)
	}
	if code, _ := anon.post("/ui/tasks/"+id+"/cancel", nil); code != http.StatusUnauthorized {
		t.Errorf("a cancel without a session: %d", code)
	}
	if code, _ := anon.post("/ui/login", url.Values{"token": {"wrong"}}); code != http.StatusUnauthorized {
		t.Errorf("a wrong token at the login: %d", code)
	}
	if tk, _ := st.Get(ctx, id); tk.State != store.StatePending {
		t.Errorf("the refused requests changed the task to %s", tk.State)
	}
	// A bearer token works without a session or CSRF token.
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/ui/tasks", nil)
	req.Header.Set("Authorization", "Bearer look")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("a page with the read-only bearer token: %v %v", resp.StatusCode, err)
	}
	// Security headers.
	resp, err := s.c.Get(srv.URL + "/ui/tasks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	// The session cookie is HttpOnly and SameSite=Strict.
	login, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/login", strings.NewReader("token=full"))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultTransport.RoundTrip(login)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(c, "weft_session=") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") || !strings.Contains(c, "Path=/ui/") {
		t.Errorf("Set-Cookie = %q", c)
	}
}

func paused(stats []store.QueueStats, q string) bool {
	for _, s := range stats {
		if s.Queue == q {
			return s.Paused
		}
	}
	return false
}

// TestNewRefuses bad configurations.
func TestNewRefuses(t *testing.T) {
	_, st := testenv.SQLite(t)
	c := testenv.Client(t, st)
	for _, cfg := range []dashboard.Config{
		{},
		{Client: c, ReadToken: "look"},
		{Client: c, Token: "same", ReadToken: "same"},
		{Client: c, Base: "ui"},
	} {
		if _, err := dashboard.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
