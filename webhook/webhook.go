package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/weftworks/weft"
)

// Kind is the task kind this package registers. It is stored with every
// task, so it never changes.
const Kind = "http"

const (
	defaultTimeout          = 30 * time.Second
	defaultMaxResponseBytes = 64 << 10
	defaultUserAgent        = "weft-webhook/1"
	// maxRedirects matches net/http's own limit; past it the 3xx response
	// itself is the outcome.
	maxRedirects = 10
	// maxRetryAfter bounds what a receiver can ask for, so that a typo or
	// a hostile header cannot park a task for years.
	maxRetryAfter = 24 * time.Hour
	// snippetBytes is how much of an error response's body goes into the
	// task's error: enough to show a receiver's reason, short enough to
	// keep the stored error history small.
	snippetBytes = 256
)

// Args are the arguments of an "http" task: one request. See the package
// documentation for their JSON form and how each field is used.
type Args struct {
	// URL is the absolute http or https URL to call.
	URL string `json:"url"`
	// Method is GET, POST, PUT, PATCH, DELETE or HEAD, in any case.
	// Default POST.
	Method string `json:"method,omitempty"`
	// Headers are sent with the request. Content-Type and User-Agent
	// given here override the defaults; Host, Content-Length,
	// Transfer-Encoding, Trailer and the Weft-* headers cannot be set.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as text when it is a JSON string, as JSON otherwise.
	Body json.RawMessage `json:"body,omitempty"`
	// Timeout bounds each attempt, as a Go duration such as "10s".
	// Default Config.Timeout.
	Timeout string `json:"timeout,omitempty"`
}

// Kind returns "http".
func (Args) Kind() string { return Kind }

// Result is what a completed "http" task stores as its result; decode
// TaskRecord.Result into it.
type Result struct {
	Status int `json:"status"`
	// Headers holds the response's Content-Type, under "content-type",
	// when it had one. Other headers are left out: they are rarely
	// useful later and can carry cookies or tokens.
	Headers map[string]string `json:"headers"`
	// Body is the response body as text, cut to Config.MaxResponseBytes.
	Body string `json:"body"`
	// Truncated reports that Body is not the whole response: it was
	// longer than Config.MaxResponseBytes, or the connection broke while
	// it was being read (the 2xx status still completes the task, since
	// the receiver accepted the request).
	Truncated bool `json:"truncated"`
}

// Config configures the worker. The zero value is usable, but see
// DenyPrivate.
type Config struct {
	// Client's Transport carries the requests; the client's other fields
	// (Timeout, CheckRedirect, Jar) are not used, since the worker sets its
	// own per-attempt timeout and redirect policy and a webhook has no use
	// for cookies. Default: http.DefaultTransport.
	Client *http.Client
	// Timeout bounds each attempt when the args set no timeout. Default
	// 30s.
	Timeout time.Duration
	// MaxResponseBytes bounds how much of a response body is read and
	// kept in the result; the rest is never read. Default 64 KiB.
	MaxResponseBytes int
	// DenyPrivate refuses connections to loopback, private (RFC 1918,
	// RFC 4193), link-local, shared (RFC 6598 CGNAT), unspecified and
	// multicast addresses. Set it whenever URLs come from users. The
	// transport must then be an *http.Transport that does not dial TLS
	// itself (New panics otherwise); the worker uses a copy of it with its
	// own dialer and with proxying off.
	DenyPrivate bool
	// UserAgent is sent unless the args set User-Agent. Default
	// "weft-webhook/1".
	UserAgent string
	// Logger receives a debug record per request and a warning per
	// refused address. Default slog.Default().
	Logger *slog.Logger
}

// Register adds the "http" kind to ws. opts apply to the kind as for
// weft.AddWorker, for instance weft.WithBackoff to space out retries of
// failing receivers. Like AddWorker it panics if the kind is already
// registered, and like New if cfg cannot be honoured.
func Register(ws *weft.Workers, cfg Config, opts ...weft.WorkerOption) {
	weft.AddWorker(ws, New(cfg), opts...)
}

// New returns the worker Register adds, for callers that wrap it (with
// metrics, say) before handing it to weft.AddWorker, or that deliver
// outside a weft.Client with Send. It panics when DenyPrivate is set and
// the transport cannot be guarded.
func New(cfg Config) *Sender {
	return &Sender{w: newWorker(cfg, func(ap netip.AddrPort) error { return checkAddr(ap.Addr()) })}
}

// Sender delivers webhooks. It is the worker of the "http" kind.
type Sender struct{ w *worker }

// Work makes the request of one attempt and decides the task's outcome;
// the Result is stored as the task's result.
func (s *Sender) Work(ctx context.Context, t *weft.Task[Args]) error { return s.w.Work(ctx, t) }

// Send makes the request of one attempt of task taskID outside a
// weft.Client — a remote worker does this — and returns the Result, or the
// error that decides the outcome as for Work (weft.Permanent, weft.RetryAfter
// or a plain error to retry with backoff).
func (s *Sender) Send(ctx context.Context, taskID string, attempt int, a Args) (*Result, error) {
	return s.w.do(ctx, taskID, attempt, a)
}

// worker runs "http" tasks.
type worker struct {
	client    *http.Client
	timeout   time.Duration
	maxBody   int
	userAgent string
	log       *slog.Logger
}

// newWorker builds the worker New returns, with check as the DenyPrivate
// policy: a parameter so that tests, whose servers are all on loopback, can
// refuse one and allow another.
func newWorker(cfg Config, check func(netip.AddrPort) error) *worker {
	w := &worker{
		timeout:   cfg.Timeout,
		maxBody:   cfg.MaxResponseBytes,
		userAgent: cfg.UserAgent,
		log:       cfg.Logger,
	}
	if w.timeout <= 0 {
		w.timeout = defaultTimeout
	}
	if w.maxBody <= 0 {
		w.maxBody = defaultMaxResponseBytes
	}
	if w.userAgent == "" {
		w.userAgent = defaultUserAgent
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	var rt http.RoundTripper
	if cfg.Client != nil {
		rt = cfg.Client.Transport
	}
	if cfg.DenyPrivate {
		rt = guardTransport(rt, func(ap netip.AddrPort) error {
			err := check(ap)
			if err != nil {
				w.log.Warn("webhook: refused address", "addr", ap.String(), "err", err)
			}
			return err
		})
	}
	w.client = &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return &redirectError{url: req.URL.Redacted()}
			}
			if len(via) >= maxRedirects {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return w
}

// redirectError is a redirect the worker will not follow; it is a type so
// that the task fails for good instead of retrying into the same redirect.
type redirectError struct{ url string }

func (e *redirectError) Error() string {
	return fmt.Sprintf("redirect to %s: scheme is not http or https", e.url)
}

// Work makes the request of one attempt and decides the task's outcome.
func (w *worker) Work(ctx context.Context, t *weft.Task[Args]) error {
	res, err := w.do(ctx, t.ID, t.Attempt, t.Args)
	if err != nil {
		return err
	}
	return t.SetResult(res)
}

// request is a validated Args, ready to send.
type request struct {
	method  string
	url     string
	header  http.Header
	body    []byte
	timeout time.Duration
}

// prepare validates a and fills in the defaults. Its errors are permanent:
// args do not change between attempts, so neither would the verdict.
func (w *worker) prepare(a Args) (*request, error) {
	r := &request{method: strings.ToUpper(a.Method), url: a.URL, header: make(http.Header), timeout: w.timeout}
	switch r.method {
	case "":
		r.method = http.MethodPost
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
	default:
		return nil, invalid("args.method", "%q is not GET, POST, PUT, PATCH, DELETE or HEAD", a.Method)
	}

	if a.URL == "" {
		return nil, invalid("args.url", "is empty")
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return nil, weft.Permanent(fmt.Errorf("args.url: %w", err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, invalid("args.url", "scheme %q is not http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, invalid("args.url", "%q has no host", a.URL)
	}

	if a.Timeout != "" {
		d, err := time.ParseDuration(a.Timeout)
		if err != nil {
			return nil, weft.Permanent(fmt.Errorf("args.timeout: %w", err))
		}
		if d <= 0 {
			return nil, invalid("args.timeout", "%s is not positive", a.Timeout)
		}
		r.timeout = d
	}

	var contentType string
	switch body := bytes.TrimSpace(a.Body); {
	case len(body) == 0 || string(body) == "null":
	case !json.Valid(body):
		return nil, invalid("args.body", "is not valid JSON")
	case body[0] == '"':
		var s string
		if err := json.Unmarshal(body, &s); err != nil {
			return nil, weft.Permanent(fmt.Errorf("args.body: %w", err))
		}
		r.body, contentType = []byte(s), "text/plain; charset=utf-8"
	default:
		r.body, contentType = body, "application/json"
	}

	for name, value := range a.Headers {
		if !validToken(name) {
			return nil, invalid("args.headers", "%q is not a valid header name", name)
		}
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			return nil, invalid("args.headers", "%s is set from the URL and body, not by args", key)
		case "Weft-Task-Id", "Weft-Attempt":
			return nil, invalid("args.headers", "%s is set by weft", key)
		}
		if !validHeaderValue(value) {
			return nil, invalid("args.headers", "value of %s contains a control character", key)
		}
		if _, dup := r.header[key]; dup {
			return nil, invalid("args.headers", "%s is given more than once", key)
		}
		r.header.Set(key, value)
	}
	if contentType != "" && r.header.Get("Content-Type") == "" {
		r.header.Set("Content-Type", contentType)
	}
	if r.header.Get("User-Agent") == "" {
		r.header.Set("User-Agent", w.userAgent)
	}
	return r, nil
}

// invalid is a permanent error about one field of the args.
func invalid(field, format string, a ...any) error {
	return weft.Permanent(fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
}

// do sends one attempt's request and classifies the response: a Result on
// 2xx, otherwise an error carrying the outcome as weft reads it.
func (w *worker) do(ctx context.Context, taskID string, attempt int, a Args) (*Result, error) {
	r, err := w.prepare(a)
	if err != nil {
		return nil, err
	}
	// A cause of our own tells this attempt's timeout from the engine's
	// deadline or cancellation, which reach the request the same way.
	timedOut := fmt.Errorf("timed out after %s: %w", r.timeout, context.DeadlineExceeded)
	ctx, cancel := context.WithTimeoutCause(ctx, r.timeout, timedOut)
	defer cancel()

	var body io.Reader
	if r.body != nil {
		// A *bytes.Reader lets net/http replay the body on 307 and 308
		// redirects.
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, weft.Permanent(fmt.Errorf("args.url: %w", err))
	}
	req.Header = r.header
	req.Header.Set("Weft-Task-Id", taskID)
	req.Header.Set("Weft-Attempt", strconv.Itoa(attempt))

	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		var refused *refusedError
		var redirect *redirectError
		switch {
		case errors.As(err, &refused), errors.As(err, &redirect):
			return nil, weft.Permanent(err)
		case context.Cause(ctx) == timedOut && !errors.Is(err, timedOut):
			// net/http reports the cause on most paths, not all: name
			// the timeout where it did not.
			return nil, fmt.Errorf("%w: %w", timedOut, err)
		}
		return nil, err
	}
	defer resp.Body.Close()

	// One byte past the limit tells a body that fills it exactly from one
	// that overflows it, without reading further.
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, int64(w.maxBody)+1))
	truncated := readErr != nil || len(data) > w.maxBody
	if len(data) > w.maxBody {
		data = trimPartialRune(data[:w.maxBody])
	}
	w.log.DebugContext(ctx, "webhook: response", "task_id", taskID, "attempt", attempt,
		"method", r.method, "url", req.URL.Redacted(), "status", resp.StatusCode, "elapsed", time.Since(start))

	status := resp.StatusCode
	switch {
	case status >= 200 && status <= 299:
		if readErr != nil {
			w.log.WarnContext(ctx, "webhook: reading accepted response", "task_id", taskID, "err", readErr)
		}
		res := &Result{Status: status, Headers: map[string]string{}, Body: string(data), Truncated: truncated}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			res.Headers["content-type"] = ct
		}
		return res, nil
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		err := statusError(r, req.URL, resp, data)
		if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
			return nil, weft.RetryAfter(err, d)
		}
		return nil, err
	default:
		return nil, weft.Permanent(statusError(r, req.URL, resp, data))
	}
}

// statusError describes a response that did not complete the task. Its
// body snippet is what usually says why.
func statusError(r *request, u *url.URL, resp *http.Response, body []byte) error {
	msg := fmt.Sprintf("%s %s: %s", r.method, u.Redacted(), resp.Status)
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		msg += " (redirect not followed)"
	}
	snippet := bytes.TrimSpace(body)
	cut := len(snippet) > snippetBytes
	if cut {
		snippet = trimPartialRune(snippet[:snippetBytes])
	}
	if len(snippet) > 0 {
		msg += ": " + strings.ToValidUTF8(string(snippet), "\uFFFD")
		if cut {
			msg += "…"
		}
	}
	return errors.New(msg)
}

// parseRetryAfter reads a Retry-After header, as delta-seconds or an HTTP
// date, and returns how long from now it asks to wait, at most
// maxRetryAfter. It returns 0 for an absent, malformed or past value, which
// leaves the delay to the kind's backoff.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(maxRetryAfter/time.Second) {
			// Only a number too big for int64 fails to parse here.
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), maxRetryAfter)
}

// trimPartialRune drops an incomplete UTF-8 sequence left at the end of b
// by cutting it at a byte count, so that the text does not end in a
// replacement character the receiver never sent.
func trimPartialRune(b []byte) []byte {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return b
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

// validToken reports whether s is an RFC 9110 token, the syntax of a
// header name; net/http would refuse the request otherwise, on every
// attempt.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control characters other than
// tab, which net/http would refuse and which could split headers.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
