package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/weftworks/weft/internal/testenv"
	"github.com/weftworks/weft/internal/weftproc"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlite"
)

// The browser tests drive Debian's chromium with chromedp against a real
// `weft serve` (built from this tree) on a real SQLite database. Under CI
// a missing chromium fails them; elsewhere they skip, saying why.

var weftBin string

func TestMain(m *testing.M) { os.Exit(weftproc.Main(m, &weftBin)) }

const (
	adminToken = "admin-token-for-the-browser-test"
	readToken  = "read-token-for-the-browser-test"
)

// chromiumPath finds the browser: WEFT_CHROMIUM, or chromium on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WEFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run installs Debian's chromium package; the browser tests must run under CI")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or set WEFT_CHROMIUM): skipping the browser tests")
	return ""
}

// artifacts is where screenshots go: WEFT_TEST_ARTIFACTS, else the test's
// temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("WEFT_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browser is a headless chromium with a fresh profile, and the console
// errors and uncaught exceptions of its pages.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	var ctx context.Context
	// Confirmations are accepted, as a user would.
	accept := chromedp.WithListener(func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	})
	ctx, cancelCtx := chromedp.NewContext(actx, accept)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	b := &browser{ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium (%s): %v", path, err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.record(string(m.Type) + ": " + m.Text + " " + m.URL)
			}
		}
	}()
	return b
}

func (b *browser) record(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, s)
}

// takeErrors returns and forgets the errors recorded so far.
func (b *browser) takeErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.errors
	b.errors = nil
	return out
}

// do runs steps, failing the test on an error.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// until evaluates expr in the current page until it is true, across
// navigations (an evaluation that a navigation interrupts is tried again),
// for up to timeout.
func (b *browser) until(t *testing.T, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && (`+expr+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := chromedp.Run(b.ctx, chromedp.Location())
			t.Fatalf("%s: %s is not true after %v (at %s, last error %v)", what, expr, timeout, loc, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// rows counts the rows of the tasks table.
func rows(t *testing.T, b *browser) int {
	t.Helper()
	return get(t, b, "rows", chromedp.Evaluate[int](`document.querySelectorAll("table.tasks tbody tr[data-id]").length`))
}

// api calls the server's HTTP API with a token and decodes the answer.
func api(t *testing.T, base, token, method, path string, body, out any) int {
	t.Helper()
	// Markup in args goes to the server as it is, not as \u003c escapes,
	// so that the pages' escaping is what the test sees.
	var buf bytes.Buffer
	if body != nil {
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, base+path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

type taskView struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	State string `json:"state"`
}

func enqueue(t *testing.T, base, kind string, args string, maxAttempts int) string {
	t.Helper()
	var res struct {
		ID string `json:"id"`
	}
	if code := api(t, base, adminToken, "POST", "/v1/tasks", map[string]any{"kind": kind, "args": json.RawMessage(args), "max_attempts": maxAttempts}, &res); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("enqueue %s: status %d", kind, code)
	}
	return res.ID
}

func state(t *testing.T, base, id string) string {
	t.Helper()
	var tv taskView
	if code := api(t, base, adminToken, "GET", "/v1/tasks/"+id, nil, &tv); code != http.StatusOK {
		t.Fatalf("get %s: status %d", id, code)
	}
	return tv.State
}

// TestDashboardInBrowser is the dashboard as a person uses it: log in,
// every page renders without a console error, a filter narrows the list,
// a retry of selected tasks changes them in the database, a task finished
// by a remote worker shows up without a reload, the read-only token
// cannot act, and a cross-site form cannot either.
func TestDashboardInBrowser(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "weft.db")
	srv := weftproc.StartServer(t, weftBin, []string{"WEFT_API_TOKEN=" + adminToken, "WEFT_API_READ_TOKEN=" + readToken, "WEFT_ROLLUPS_INTERVAL=200ms"},
		"--database", db)
	base := srv.URL
	shots := artifacts(t)

	// Real data: webhooks that complete and that fail (the server's own
	// http workers run them), tasks of a kind no worker runs, cancelled
	// ones, a schedule and a flow.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	for i := range 6 {
		enqueue(t, base, "http", fmt.Sprintf(`{"url":%q,"method":"POST","body":"n=%d"}`, hook.URL, i), 0)
	}
	failing := enqueue(t, base, "http", `{"url":"http://127.0.0.1:1/refused"}`, 1)
	var cancelled []string
	for i := range 3 {
		id := enqueue(t, base, "report.build", fmt.Sprintf(`{"customer":{"id":%d},"note":"<b>not bold</b>"}`, i), 0)
		if code := api(t, base, adminToken, "POST", "/v1/tasks/"+id+"/cancel", nil, nil); code != http.StatusOK {
			t.Fatalf("cancel: %d", code)
		}
		cancelled = append(cancelled, id)
	}
	remoteID := enqueue(t, base, "remote.job", `{"step":1}`, 0)
	other := enqueue(t, base, "mail.send", `{"to":"someone@example.com"}`, 0)

	st, err := sqlite.Open(context.Background(), db, &sqlite.Options{Logger: testenv.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	flow, err := st.EnqueueFlow(context.Background(), store.NewFlow{Name: "nightly-etl", Members: []store.NewFlowMember{
		{Key: "extract", Task: store.NewTask{Kind: "etl.extract"}},
		{Key: "transform", Task: store.NewTask{Kind: "etl.transform"}, DependsOn: []string{"extract"}},
		{Key: "load", Task: store.NewTask{Kind: "etl.load"}, DependsOn: []string{"transform"}},
		{Key: "report", Task: store.NewTask{Kind: "etl.report"}, DependsOn: []string{"extract", "load"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutSchedule(context.Background(), store.Schedule{Name: "hourly-report", Spec: "@hourly", Kind: "report.build", Queue: "default",
		Args: json.RawMessage(`{}`), MaxAttempts: 3, Missed: store.MissedSkip, NextAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the webhooks to finish", func() bool { return state(t, base, failing) == "failed" })
	// weft serve logs each final outcome at info.
	waitFor(t, "the failure in the server's log", func() bool {
		return strings.Contains(srv.Log(), `"msg":"weft: task finished","id":"`+failing+`","kind":"http","queue":"default","attempt":1,"outcome":"failed","duration":`)
	})

	// Log in.
	b.do(t, "log in", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Click(chromedp.ID("login")))
	b.until(t, "the overview after the login", `document.querySelector("svg.chart") !== null`, 20*time.Second)

	// Every page renders, without a console error.
	pages := []struct{ name, path, ready string }{
		{"overview", "/ui/", "svg.chart"},
		{"queues", "/ui/queues", "table"},
		{"tasks", "/ui/tasks", "table.tasks"},
		{"task", "/ui/tasks/" + cancelled[0], "#timeline"},
		{"task-failed", "/ui/tasks/" + failing, "#timeline"},
		{"task-blocked", "/ui/tasks/" + flow.Tasks["load"], ".why"},
		{"schedules", "/ui/schedules", "#new-schedule"},
		{"workers", "/ui/workers", "table"},
		{"limits", "/ui/limits", "table"},
		{"flows", "/ui/flows", "table"},
		{"flow", "/ui/flows/" + flow.ID, "svg.dag"},
		{"waits", "/ui/waits", "table"},
	}
	for _, p := range pages {
		b.do(t, "page "+p.name, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		shot := get(t, b, "screenshot of "+p.name, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(shots, p.name+".png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		if errs := b.takeErrors(); len(errs) > 0 {
			t.Errorf("page %s: console errors: %q", p.name, errs)
		}
	}
	// User data is escaped, never markup.
	b.do(t, "escaping", chromedp.Navigate(base+"/ui/tasks/"+cancelled[0]), chromedp.WaitVisible(chromedp.ID("task-args")))
	html := get(t, b, "args", chromedp.OuterHTML(chromedp.ID("task-args")))
	if !strings.Contains(html, "&lt;b&gt;not bold&lt;/b&gt;") {
		t.Errorf("args are not escaped: %s", html)
	}

	// A filter narrows the list.
	b.do(t, "tasks", chromedp.Navigate(base+"/ui/tasks"), chromedp.WaitVisible(chromedp.CSS("table.tasks")))
	before := rows(t, b)
	b.do(t, "filter", chromedp.SendKeys(chromedp.CSS(`input[name="kind"]`), "report.build"), chromedp.Click(chromedp.ID("apply-filter")))
	b.until(t, "the filtered list", `location.search.indexOf("kind=report.build") >= 0`, 20*time.Second)
	after := rows(t, b)
	kinds := get(t, b, "filtered kinds", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("table.tasks tbody tr[data-id] td:nth-child(3)")).map(td => td.textContent)`))
	if after != 3 || after >= before {
		t.Errorf("the kind filter left %d of %d tasks, want the 3 report.build ones", after, before)
	}
	for _, k := range kinds {
		if k != "report.build" {
			t.Errorf("the filtered list has a %q task", k)
		}
	}
	// The args filter: customer.id = 1 is one task.
	b.do(t, "args filter", chromedp.Navigate(base+"/ui/tasks?arg_path=customer.id&arg_value=1"), chromedp.WaitVisible(chromedp.CSS("table.tasks")))
	if after = rows(t, b); after != 1 {
		t.Errorf("the args filter customer.id = 1 shows %d tasks, want 1", after)
	}

	// Retry of a selection changes the tasks in the database.
	b.do(t, "select and retry", chromedp.Navigate(base+"/ui/tasks?state=cancelled&kind=report.build"), chromedp.WaitVisible(chromedp.ID("select-all")),
		chromedp.Click(chromedp.ID("select-all")), chromedp.Click(chromedp.ID("bulk-retry")))
	b.until(t, "the retry's answer", `document.querySelector(".flash") !== null`, 20*time.Second)
	flash := get(t, b, "flash", chromedp.Text(chromedp.CSS(".flash")))
	if !strings.Contains(flash, "3 task(s) changed") {
		t.Errorf("after the retry the page says %q", flash)
	}
	for _, id := range cancelled {
		if s := state(t, base, id); s != "pending" {
			t.Errorf("task %s is %s after the retry from the UI, want pending", id, s)
		}
	}

	// The preview of an action on everything matching, then its
	// confirmation.
	b.do(t, "cancel everything matching", chromedp.Navigate(base+"/ui/tasks?kind=report.build"), chromedp.WaitVisible(chromedp.ID("all-cancel")),
		chromedp.Click(chromedp.ID("all-cancel")))
	b.until(t, "the preview", `document.getElementById("confirm-action") !== null`, 20*time.Second)
	confirm := get(t, b, "preview", chromedp.Text(chromedp.ID("confirm-form")))
	if !strings.Contains(confirm, "3 task(s)") {
		t.Errorf("the preview says %q, want 3 tasks", confirm)
	}
	b.do(t, "confirm", chromedp.Click(chromedp.ID("confirm-action")))
	b.until(t, "the cancel's answer", `document.querySelector(".flash.ok") !== null`, 20*time.Second)
	for _, id := range cancelled {
		if s := state(t, base, id); s != "cancelled" {
			t.Errorf("task %s is %s after cancelling everything matching, want cancelled", id, s)
		}
	}

	// A task finished elsewhere (a remote worker, through the API) shows
	// up on its open page without a reload, within 2 s.
	b.do(t, "open the remote task", chromedp.Navigate(base+"/ui/tasks/"+remoteID), chromedp.WaitVisible(chromedp.ID("task-state")))
	get(t, b, "mark the page", chromedp.Evaluate[bool](`window.__notReloaded = true`))
	b.until(t, "the live stream", `document.getElementById("live-status").dataset.open === "1"`, 20*time.Second)
	var claim struct {
		Tasks []struct {
			ID         string `json:"id"`
			LeaseToken string `json:"lease_token"`
		} `json:"tasks"`
	}
	if code := api(t, base, adminToken, "POST", "/v1/claims", map[string]any{"worker_id": "remote-1", "kinds": []string{"remote.job"}}, &claim); code != http.StatusOK || len(claim.Tasks) != 1 {
		t.Fatalf("claim: %d, %+v", code, claim)
	}
	if code := api(t, base, adminToken, "POST", "/v1/tasks/"+remoteID+"/complete", map[string]any{"lease_token": claim.Tasks[0].LeaseToken, "result": map[string]int{"rows": 7}}, nil); code != http.StatusOK {
		t.Fatalf("complete: %d", code)
	}
	finished := time.Now()
	tctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	err = chromedp.Do(tctx, chromedp.WaitVisible(chromedp.Search(`//span[@id="task-state" and text()="completed"]`)))
	cancel()
	if err != nil {
		t.Fatalf("the completed state did not show within 2s of the completion: %v", err)
	}
	t.Logf("the completion showed %v after it was recorded", time.Since(finished).Round(time.Millisecond))
	waitFor(t, "the remote completion in the server's log", func() bool {
		return strings.Contains(srv.Log(), `"msg":"weft: task finished","id":"`+remoteID+`","outcome":"completed"`)
	})
	if !get(t, b, "no reload", chromedp.Evaluate[bool](`window.__notReloaded === true`)) {
		t.Error("the page was reloaded")
	}
	// The remote worker that claimed it is on the Workers page.
	b.do(t, "workers", chromedp.Navigate(base+"/ui/workers"), chromedp.WaitVisible(chromedp.CSS("table")))
	if page := get(t, b, "workers page", chromedp.Evaluate[string](`document.body.innerText`)); !strings.Contains(page, "remote-1") || !strings.Contains(page, "remote.job") {
		t.Errorf("the Workers page does not show remote worker remote-1 and its kind remote.job:\n%s", page)
	}

	// A cross-site form aimed at an action, with the admin's cookie in
	// the browser and no CSRF token, is refused.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/go.js" {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, `document.getElementById("f").submit();`)
			return
		}
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/ui/tasks/%s/cancel"><input name="x" value="1"></form><script src="/go.js"></script>`, base, other)
	}))
	defer evil.Close()
	b.do(t, "cross-site page", chromedp.Navigate(evil.URL))
	b.until(t, "the cross-site post's answer", `location.href.indexOf("/ui/tasks/") >= 0`, 20*time.Second)
	body := get(t, b, "refusal", chromedp.Text(chromedp.CSS("body")))
	if !strings.Contains(body, "refused") && !strings.Contains(body, "CSRF") {
		t.Errorf("the cross-site post was answered %q", body)
	}
	if s := state(t, base, other); s != "pending" {
		t.Errorf("the cross-site post changed task %s to %s", other, s)
	}
	b.takeErrors() // the refusal's 403 is logged by the browser, as it should be

	// A read-only session sees everything and can change nothing: no
	// action buttons, and a POST is refused, on the dashboard and on the
	// API.
	b.do(t, "log out", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`form[action="/ui/logout"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/ui/logout"] button`)))
	b.until(t, "the login page", `document.getElementById("token") !== null`, 20*time.Second)
	b.do(t, "log in read-only", chromedp.SendKeys(chromedp.ID("token"), readToken), chromedp.Click(chromedp.ID("login")))
	b.until(t, "the read-only badge", `document.querySelector(".badge.ro") !== null`, 20*time.Second)
	b.do(t, "read-only tasks", chromedp.Navigate(base+"/ui/tasks"), chromedp.WaitVisible(chromedp.CSS("table.tasks")))
	if buttons := get(t, b, "controls", chromedp.Evaluate[int](`document.querySelectorAll("button.act, #bulk, input.sel").length`)); buttons != 0 {
		t.Errorf("the read-only tasks page has %d action controls", buttons)
	}
	b.do(t, "read-only task", chromedp.Navigate(base+"/ui/tasks/"+other), chromedp.WaitVisible(chromedp.ID("timeline")))
	if buttons := get(t, b, "buttons", chromedp.Evaluate[int](`document.querySelectorAll("button.act").length`)); buttons != 0 {
		t.Errorf("the read-only task page has %d action buttons", buttons)
	}
	status := get(t, b, "read-only post", chromedp.Evaluate[int](fmt.Sprintf(`fetch("/ui/tasks/%s/cancel", {method: "POST", body: new URLSearchParams({csrf: "x"})}).then(r => r.status)`, other), chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden {
		t.Errorf("a read-only session's POST was answered %d, want 403", status)
	}
	if code := api(t, base, readToken, "POST", "/v1/tasks/"+other+"/cancel", nil, nil); code != http.StatusForbidden {
		t.Errorf("the API answered the read-only token's cancel with %d, want 403", code)
	}
	if code := api(t, base, readToken, "GET", "/v1/tasks/"+other, nil, nil); code != http.StatusOK {
		t.Errorf("the API answered the read-only token's GET with %d, want 200", code)
	}
	if s := state(t, base, other); s != "pending" {
		t.Errorf("task %s is %s after the read-only attempts, want pending", other, s)
	}
	b.takeErrors()
}

// waitFor polls cond every 50ms for up to 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
