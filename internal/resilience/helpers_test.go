//go:build linux

package resilience_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// skipOrFail skips the test, or fails it under CI (CI set), where a missing
// prerequisite must not pass unnoticed.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// logTally is a slog.Handler that counts records by level and message and
// keeps the first few of each with their attributes. A fault makes the
// engine log the same error many times a second; the test reports the
// tally instead of flooding its output, and can assert on what was said.
type logTally struct {
	mu      *sync.Mutex
	counts  map[string]int
	samples map[string][]string
	attrs   []slog.Attr
}

func newLogTally() *logTally {
	return &logTally{mu: new(sync.Mutex), counts: map[string]int{}, samples: map[string][]string{}}
}

// Logger returns a logger writing into the tally.
func (l *logTally) Logger() *slog.Logger { return slog.New(l) }

func (l *logTally) Enabled(context.Context, slog.Level) bool { return true }

func (l *logTally) Handle(_ context.Context, r slog.Record) error {
	key := r.Level.String() + " " + r.Message
	var b strings.Builder
	for _, a := range l.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[key]++
	if len(l.samples[key]) < 3 {
		l.samples[key] = append(l.samples[key], strings.TrimSpace(b.String()))
	}
	return nil
}

func (l *logTally) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.attrs = append(slices.Clone(l.attrs), as...)
	return &c
}

// WithGroup is accepted and ignored: the tally only needs the messages.
func (l *logTally) WithGroup(string) slog.Handler { return l }

// Count is how many records had a message containing substr.
func (l *logTally) Count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for k, c := range l.counts {
		if strings.Contains(k, substr) {
			n += c
		}
	}
	return n
}

// Report logs the tally, most frequent first.
func (l *logTally) Report(t testing.TB, title string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.counts))
	for k := range l.counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return l.counts[keys[i]] > l.counts[keys[j]] })
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d distinct log messages", title, len(keys))
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %5d× %s", l.counts[k], k)
		for _, s := range l.samples[k] {
			fmt.Fprintf(&b, "\n         e.g. %s", truncate(s, 300))
		}
	}
	t.Log(b.String())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// eventually polls cond every 20ms until it holds or d passes, and reports
// whether it held.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// percentile returns the p-th percentile (0 < p ≤ 1) of xs, sorting it.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(float64(len(xs))*p+0.999999) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
