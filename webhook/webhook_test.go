package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftworks/weft"
)

// quiet keeps the tests' output to their own failures.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestWorker is New with logs silenced, for loopback test servers.
func newTestWorker(t *testing.T, cfg Config) *worker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	return New(cfg).w
}

// received is what a test server saw of one request.
type received struct {
	method string
	header http.Header
	body   string
}

// recorder is a test server that records each request and answers with
// respond.
func recorder(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan received) {
	t.Helper()
	got := make(chan received, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- received{method: r.Method, header: r.Header.Clone(), body: string(b)}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func isPermanent(err error) bool {
	var p *weft.PermanentError
	return errors.As(err, &p)
}

func retryDelay(err error) (time.Duration, bool) {
	var r *weft.RetryError
	if errors.As(err, &r) {
		return r.Delay, true
	}
	return 0, false
}

// wantPlainRetry asserts that err retries with the kind's backoff: neither
// permanent nor with a delay of its own.
func wantPlainRetry(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("err = nil, want a retryable error")
	}
	if isPermanent(err) {
		t.Fatalf("err = %v, want retryable, got permanent", err)
	}
	if d, ok := retryDelay(err); ok {
		t.Fatalf("err = %v, want the kind's backoff, got RetryAfter(%s)", err, d)
	}
}

func TestCompletesWithResult(t *testing.T) {
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "secret=1")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	})
	w := newTestWorker(t, Config{})

	res, err := w.do(context.Background(), "task-1", 1, Args{URL: srv.URL + "/hook", Body: json.RawMessage(`{"event":"paid"}`)})
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	want := Result{Status: 201, Headers: map[string]string{"content-type": "application/json"}, Body: `{"ok":true}`}
	gotJSON, _ := json.Marshal(res)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("result = %s, want %s", gotJSON, wantJSON)
	}
	r := <-got
	if r.method != http.MethodPost {
		t.Errorf("method = %s, want POST by default", r.method)
	}
	if ua := r.header.Get("User-Agent"); ua != "weft-webhook/1" {
		t.Errorf("User-Agent = %q, want weft-webhook/1", ua)
	}
}

func TestWork(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })
	task := &weft.Task[Args]{ID: "task-1", Kind: Kind, Attempt: 1, Args: Args{URL: srv.URL}}
	if err := newTestWorker(t, Config{}).Work(context.Background(), task); err != nil {
		t.Fatalf("Work: %v", err)
	}
}

func TestBodyEncoding(t *testing.T) {
	cases := []struct {
		name            string
		body            string
		headers         map[string]string
		wantBody        string
		wantContentType string
	}{
		{name: "object is JSON", body: `{"a": [1, 2]}`, wantBody: `{"a": [1, 2]}`, wantContentType: "application/json"},
		{name: "number is JSON", body: `42`, wantBody: `42`, wantContentType: "application/json"},
		{name: "string is its text", body: `"a=1&b=caf\u00e9"`, wantBody: "a=1&b=café", wantContentType: "text/plain; charset=utf-8"},
		{name: "header wins for a string", body: `"a=1&b=2"`, headers: map[string]string{"content-type": "application/x-www-form-urlencoded"},
			wantBody: "a=1&b=2", wantContentType: "application/x-www-form-urlencoded"},
		{name: "header wins for JSON", body: `{"a":1}`, headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			wantBody: `{"a":1}`, wantContentType: "application/cloudevents+json"},
		{name: "absent sends nothing", body: ``, wantBody: "", wantContentType: ""},
		{name: "null sends nothing", body: `null`, wantBody: "", wantContentType: ""},
	}
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {})
	w := newTestWorker(t, Config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.do(context.Background(), "t", 1, Args{URL: srv.URL, Body: json.RawMessage(c.body), Headers: c.headers})
			if err != nil {
				t.Fatalf("do: %v", err)
			}
			r := <-got
			if r.body != c.wantBody {
				t.Errorf("body = %q, want %q", r.body, c.wantBody)
			}
			if ct := r.header.Get("Content-Type"); ct != c.wantContentType {
				t.Errorf("Content-Type = %q, want %q", ct, c.wantContentType)
			}
		})
	}
}

func TestHeadersMethodAndTaskIdentity(t *testing.T) {
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {})
	w := newTestWorker(t, Config{UserAgent: "shop/2"})
	args := Args{
		URL:    srv.URL,
		Method: "put",
		Headers: map[string]string{
			"Authorization":    "Bearer s3cret",
			"X-Signature":      "sha256=abc",
			"x-lower-case-key": "kept",
		},
	}
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := w.do(context.Background(), "0190-task", attempt, args); err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		r := <-got
		for name, want := range map[string]string{
			"Authorization":    "Bearer s3cret",
			"X-Signature":      "sha256=abc",
			"X-Lower-Case-Key": "kept",
			"User-Agent":       "shop/2",
			"Weft-Task-Id":     "0190-task",
			"Weft-Attempt":     map[int]string{1: "1", 2: "2"}[attempt],
		} {
			if v := r.header.Get(name); v != want {
				t.Errorf("attempt %d: %s = %q, want %q", attempt, name, v, want)
			}
		}
		if r.method != http.MethodPut {
			t.Errorf("method = %s, want PUT", r.method)
		}
	}

	args.Headers = map[string]string{"User-Agent": "custom"}
	if _, err := w.do(context.Background(), "t", 1, args); err != nil {
		t.Fatal(err)
	}
	if ua := (<-got).header.Get("User-Agent"); ua != "custom" {
		t.Errorf("User-Agent = %q, want the args' own", ua)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	var calls atomic.Int32
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "done")
	})
	w := newTestWorker(t, Config{})
	args := Args{URL: srv.URL}

	_, err := w.do(context.Background(), "t", 1, args)
	wantPlainRetry(t, err)
	for _, part := range []string{"500 Internal Server Error", "database is down"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("err = %q, want it to mention %q", err, part)
		}
	}

	res, err := w.do(context.Background(), "t", 2, args)
	if err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if res.Status != 200 || res.Body != "done" {
		t.Errorf("result = %+v, want 200 done", res)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	_, err := newTestWorker(t, Config{}).do(context.Background(), "t", 1, Args{URL: srv.URL})
	d, ok := retryDelay(err)
	if !ok {
		t.Fatalf("err = %v, want a *weft.RetryError", err)
	}
	if d != 7*time.Second {
		t.Errorf("delay = %s, want 7s", d)
	}
	if isPermanent(err) {
		t.Errorf("err = %v, want it retried", err)
	}
	if !strings.Contains(err.Error(), "429") {
		t.Errorf("err = %v, want the status in it", err)
	}
}

func TestRetryAfterDate(t *testing.T) {
	at := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", at)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := newTestWorker(t, Config{}).do(context.Background(), "t", 1, Args{URL: srv.URL})
	d, ok := retryDelay(err)
	if !ok {
		t.Fatalf("err = %v, want a *weft.RetryError", err)
	}
	// The date has whole seconds and the clock moved on since it was made.
	if d <= 59*time.Minute || d > time.Hour {
		t.Errorf("delay = %s, want about 1h", d)
	}
}

func TestServerErrorWithoutRetryAfter(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "soon")
		w.WriteHeader(http.StatusBadGateway)
	})
	_, err := newTestWorker(t, Config{}).do(context.Background(), "t", 1, Args{URL: srv.URL})
	wantPlainRetry(t, err)
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                                 0,
		"0":                                0,
		"7":                                7 * time.Second,
		" 120 ":                            2 * time.Minute,
		"86400":                            24 * time.Hour,
		"86401":                            24 * time.Hour,
		"99999999999999999999999":          24 * time.Hour,
		"-5":                               0,
		"+5":                               0,
		"1.5":                              0,
		"tomorrow":                         0,
		"Sat, 01 Mar 2025 12:00:30 GMT":    30 * time.Second,
		"Sat, 01 Mar 2025 11:00:00 GMT":    0,
		"Mon, 01 Mar 2027 12:00:00 GMT":    24 * time.Hour,
		"Saturday, 01-Mar-25 12:01:00 GMT": time.Minute,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestClientErrorIsPermanent(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such hook: "+strings.Repeat("x", 1000), http.StatusNotFound)
	})
	_, err := newTestWorker(t, Config{}).do(context.Background(), "t", 1, Args{URL: srv.URL + "/gone"})
	if !isPermanent(err) {
		t.Fatalf("err = %v, want a *weft.PermanentError", err)
	}
	msg := err.Error()
	for _, part := range []string{"POST", "/gone", "404 Not Found", "no such hook: xxx"} {
		if !strings.Contains(msg, part) {
			t.Errorf("err = %q, want it to mention %q", msg, part)
		}
	}
	if len(msg) > 400 {
		t.Errorf("err is %d bytes; the body should be cut short", len(msg))
	}
}

func TestRedirects(t *testing.T) {
	final, got := recorder(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "arrived") })
	hop := httptest.NewServer(http.RedirectHandler(final.URL+"/next", http.StatusTemporaryRedirect))
	t.Cleanup(hop.Close)
	w := newTestWorker(t, Config{})

	res, err := w.do(context.Background(), "task-9", 1, Args{URL: hop.URL, Body: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	if res.Body != "arrived" {
		t.Errorf("body = %q, want the final server's", res.Body)
	}
	if r := <-got; r.body != `{"a":1}` || r.header.Get("Weft-Task-Id") != "task-9" {
		t.Errorf("after a 307 the server got body %q and Weft-Task-Id %q; want both replayed", r.body, r.header.Get("Weft-Task-Id"))
	}

	var loop *httptest.Server
	loop = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL, http.StatusFound)
	}))
	t.Cleanup(loop.Close)
	_, err = w.do(context.Background(), "t", 1, Args{URL: loop.URL})
	if !isPermanent(err) || !strings.Contains(err.Error(), "302 Found") {
		t.Errorf("endless redirects: err = %v, want a permanent 302", err)
	}

	ftp := httptest.NewServer(http.RedirectHandler("ftp://example.com/x", http.StatusFound))
	t.Cleanup(ftp.Close)
	_, err = w.do(context.Background(), "t", 1, Args{URL: ftp.URL})
	if !isPermanent(err) || !strings.Contains(err.Error(), "ftp://example.com/x") {
		t.Errorf("redirect to ftp: err = %v, want permanent", err)
	}
}

func TestTimeoutRetries(t *testing.T) {
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	w := newTestWorker(t, Config{Timeout: time.Minute})
	start := time.Now()
	_, err := w.do(context.Background(), "t", 1, Args{URL: srv.URL, Timeout: "50ms"})
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %s; the args' 50ms timeout should win over Config.Timeout", elapsed)
	}
	wantPlainRetry(t, err)
	if !strings.Contains(err.Error(), "timed out after 50ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a timeout", err)
	}

	w = newTestWorker(t, Config{Timeout: 50 * time.Millisecond})
	_, err = w.do(context.Background(), "t", 1, Args{URL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms") {
		t.Errorf("err = %v, want Config.Timeout to apply", err)
	}
}

func TestNetworkErrorRetries(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens there now
	_, err := newTestWorker(t, Config{}).do(context.Background(), "t", 1, Args{URL: u})
	wantPlainRetry(t, err)
}

func TestTruncation(t *testing.T) {
	var sent atomic.Int64
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("é", 512)) // 1 KiB, two bytes a rune
		for range 1024 {                          // 1 MiB in all
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	w := newTestWorker(t, Config{MaxResponseBytes: 101})
	res, err := w.do(context.Background(), "t", 1, Args{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated {
		t.Error("Truncated = false, want true")
	}
	// 101 bytes would end half-way through an é; the half is dropped.
	if res.Body != strings.Repeat("é", 50) {
		t.Errorf("body = %q (%d bytes), want 50 × é", res.Body, len(res.Body))
	}

	exact, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("a", 101)) })
	res, err = w.do(context.Background(), "t", 1, Args{URL: exact.URL})
	if err != nil {
		t.Fatal(err)
	}
	if res.Truncated || len(res.Body) != 101 {
		t.Errorf("a body of exactly MaxResponseBytes: truncated=%v len=%d, want false 101", res.Truncated, len(res.Body))
	}
}

func TestDenyPrivateRefusesLoopback(t *testing.T) {
	srv, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {})
	u, _ := url.Parse(srv.URL)

	w := newTestWorker(t, Config{DenyPrivate: true})
	for _, target := range []string{srv.URL, "http://localhost:" + u.Port()} {
		_, err := w.do(context.Background(), "t", 1, Args{URL: target})
		if !isPermanent(err) {
			t.Fatalf("%s: err = %v, want a *weft.PermanentError", target, err)
		}
		if !strings.Contains(err.Error(), "refused: ") || !strings.Contains(err.Error(), "is a loopback address") {
			t.Errorf("%s: err = %v, want a refusal naming the address", target, err)
		}
	}
	select {
	case <-got:
		t.Fatal("the server got a request despite DenyPrivate")
	default:
	}

	if _, err := newTestWorker(t, Config{}).do(context.Background(), "t", 1, Args{URL: srv.URL}); err != nil {
		t.Errorf("DenyPrivate off: %v", err)
	}
}

func TestDenyPrivateRefusesRedirect(t *testing.T) {
	inner, got := recorder(t, func(w http.ResponseWriter, r *http.Request) {})
	outer := httptest.NewServer(http.RedirectHandler(inner.URL+"/admin", http.StatusFound))
	t.Cleanup(outer.Close)
	innerPort := inner.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()

	// Every test server is on loopback; the policy lets the outer one pass
	// as if it were public and applies the real check to the inner one.
	w := newWorker(Config{DenyPrivate: true, Logger: quiet}, func(ap netip.AddrPort) error {
		if ap.Port() != innerPort {
			return nil
		}
		return checkAddr(ap.Addr())
	})
	_, err := w.do(context.Background(), "t", 1, Args{URL: outer.URL})
	if !isPermanent(err) || !strings.Contains(err.Error(), "is a loopback address") {
		t.Fatalf("err = %v, want the redirect refused permanently", err)
	}
	select {
	case <-got:
		t.Fatal("the inner server got a request despite DenyPrivate")
	default:
	}
}

func TestDenyClass(t *testing.T) {
	denied := map[string]string{
		"127.0.0.1":       "a loopback",
		"127.1.2.3":       "a loopback",
		"::1":             "a loopback",
		"10.0.0.1":        "a private",
		"172.16.5.4":      "a private",
		"192.168.1.1":     "a private",
		"fd12:3456::1":    "a private",
		"169.254.169.254": "a link-local",
		"fe80::1%eth0":    "a link-local",
		"224.0.0.1":       "a multicast",
		"ff02::1":         "a multicast",
		"0.0.0.0":         "an unspecified",
		"0.1.2.3":         "an unspecified",
		"::":              "an unspecified",
		"100.64.0.1":      "a shared (CGNAT)",
		"100.127.255.254": "a shared (CGNAT)",
		"::ffff:10.0.0.1": "a private",
		"64:ff9b::a00:1":  "a private",
		"64:ff9b::7f00:1": "a loopback",
	}
	for in, want := range denied {
		if got := denyClass(netip.MustParseAddr(in)); got != want {
			t.Errorf("denyClass(%s) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"8.8.8.8", "100.128.0.1", "100.63.255.255", "172.32.0.1", "2606:4700::1111", "64:ff9b::808:808"} {
		if got := denyClass(netip.MustParseAddr(in)); got != "" {
			t.Errorf("denyClass(%s) = %q, want it allowed", in, got)
		}
	}
	if err := checkAddr(netip.MustParseAddr("10.0.0.1")); err == nil || err.Error() != "refused: 10.0.0.1 is a private address" {
		t.Errorf("checkAddr(10.0.0.1) = %v", err)
	}
}

// roundTripFunc is a transport DenyPrivate cannot see into.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDenyPrivateNeedsAGuardableTransport(t *testing.T) {
	// A copy of the default transport, tweaked, is the common custom one;
	// its dialer is replaced.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	New(Config{DenyPrivate: true, Client: &http.Client{Transport: tr}})

	for name, rt := range map[string]http.RoundTripper{
		"custom RoundTripper": roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("unused") }),
		"own TLS dialer":      &http.Transport{DialTLSContext: tr.DialContext},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("New did not panic")
				}
			}()
			New(Config{DenyPrivate: true, Client: &http.Client{Transport: rt}})
		})
	}
}

func TestCustomClientTransportIsUsed(t *testing.T) {
	var used atomic.Bool
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used.Store(true)
		return http.DefaultTransport.RoundTrip(r)
	})
	srv, _ := recorder(t, func(w http.ResponseWriter, r *http.Request) {})
	w := newTestWorker(t, Config{Client: &http.Client{Transport: rt}})
	if _, err := w.do(context.Background(), "t", 1, Args{URL: srv.URL}); err != nil {
		t.Fatal(err)
	}
	if !used.Load() {
		t.Error("the Client's Transport was not used")
	}
}

func TestInvalidArgs(t *testing.T) {
	ok := "http://example.com/hook"
	cases := []struct {
		name  string
		args  Args
		field string
	}{
		{"empty url", Args{}, "args.url"},
		{"unparsable url", Args{URL: "http://exa mple.com/%zz"}, "args.url"},
		{"relative url", Args{URL: "/hook"}, "args.url"},
		{"ftp url", Args{URL: "ftp://example.com/x"}, "args.url"},
		{"no host", Args{URL: "http:///path"}, "args.url"},
		{"port only", Args{URL: "http://:8080/"}, "args.url"},
		{"method", Args{URL: ok, Method: "TRACE"}, "args.method"},
		{"method with space", Args{URL: ok, Method: "GET "}, "args.method"},
		{"timeout syntax", Args{URL: ok, Timeout: "5"}, "args.timeout"},
		{"timeout negative", Args{URL: ok, Timeout: "-1s"}, "args.timeout"},
		{"timeout zero", Args{URL: ok, Timeout: "0s"}, "args.timeout"},
		{"header name", Args{URL: ok, Headers: map[string]string{"Bad Name": "x"}}, "args.headers"},
		{"header name colon", Args{URL: ok, Headers: map[string]string{"X-A:": "x"}}, "args.headers"},
		{"header empty name", Args{URL: ok, Headers: map[string]string{"": "x"}}, "args.headers"},
		{"header value newline", Args{URL: ok, Headers: map[string]string{"X-A": "a\r\nX-Injected: 1"}}, "args.headers"},
		{"header duplicate", Args{URL: ok, Headers: map[string]string{"x-a": "1", "X-A": "2"}}, "args.headers"},
		{"header host", Args{URL: ok, Headers: map[string]string{"Host": "internal"}}, "args.headers"},
		{"header content-length", Args{URL: ok, Headers: map[string]string{"Content-Length": "3"}}, "args.headers"},
		{"header weft", Args{URL: ok, Headers: map[string]string{"weft-task-id": "forged"}}, "args.headers"},
		{"body", Args{URL: ok, Body: json.RawMessage(`{"a":`)}, "args.body"},
	}
	w := newTestWorker(t, Config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.do(context.Background(), "t", 1, c.args)
			if !isPermanent(err) {
				t.Fatalf("err = %v, want a *weft.PermanentError", err)
			}
			if !strings.Contains(err.Error(), c.field+": ") {
				t.Errorf("err = %q, want it to name %s", err, c.field)
			}
		})
	}
}

func TestArgsJSON(t *testing.T) {
	var a Args
	in := `{"url":"https://example.com","method":"PUT","headers":{"X-A":"1"},"body":{"n":1},"timeout":"2s"}`
	if err := json.Unmarshal([]byte(in), &a); err != nil {
		t.Fatal(err)
	}
	if a.URL != "https://example.com" || a.Method != "PUT" || a.Headers["X-A"] != "1" || string(a.Body) != `{"n":1}` || a.Timeout != "2s" {
		t.Errorf("decoded %+v", a)
	}
	out, _ := json.Marshal(Args{URL: "https://example.com"})
	if string(out) != `{"url":"https://example.com"}` {
		t.Errorf("encoded %s; optional fields should be omitted", out)
	}
	if a.Kind() != "http" || Kind != "http" {
		t.Errorf("Kind() = %q", a.Kind())
	}
}
