// Package maintenance runs Weft's background reconcilers — lease rescue
// today; retention, cron and the rest as they arrive — each as a
// long-lived loop on its own interval, under one supervisor that starts and
// drains them together.
package maintenance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reconciler is one background loop: Tick runs every Interval.
type Reconciler struct {
	// Name identifies the loop in logs and in its configuration knob
	// (WEFT_<NAME>_INTERVAL, see Interval).
	Name string
	// Interval between the end of one tick and the start of the next. Zero
	// disables the reconciler: it is not started.
	Interval time.Duration
	// Tick does one pass. Its context is cancelled when the supervisor
	// shuts down. An error or a panic is logged and the loop goes on.
	Tick func(ctx context.Context) error
	// Singleton reconcilers tick only while this node leads (see
	// Leadership); the others tick on every node.
	Singleton bool
}

// Leadership elects the one node that runs singleton reconcilers. The
// supervisor calls Lead as soon as it starts and then every Every, and
// Resign when it shuts down.
type Leadership struct {
	// Lead takes or renews leadership and reports whether this node holds
	// it.
	Lead   func(ctx context.Context) (bool, error)
	Resign func(ctx context.Context) error
	Every  time.Duration
}

// Supervisor owns a set of reconciler loops.
//
// Its contract: every loop is registered before Start returns, so that an
// immediate Shutdown still drains it; a loop's first tick comes one
// interval after Start, not at once; a tick that overruns delays the next
// one, which never comes sooner than one interval after it ended, so ticks
// never burst; a failed or panicking tick is logged with the reconciler's
// name and the loop goes on; Shutdown(grace) signals every loop, waits up to
// grace, and returns how many did not stop in time (and logs their names);
// a second Shutdown is a no-op; Close only signals.
type Supervisor struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	lead   *Leadership
	// leading is whether this node holds leadership; always true without
	// a Leadership.
	leading atomic.Bool

	mu      sync.Mutex
	running map[string]chan struct{}
	down    bool
}

// Start starts a loop for each reconciler with a non-zero interval. With a
// nil lead, this node runs the singleton reconcilers too.
func Start(log *slog.Logger, lead *Leadership, reconcilers ...Reconciler) (*Supervisor, error) {
	if log == nil {
		log = slog.Default()
	}
	seen := make(map[string]bool, len(reconcilers))
	for _, r := range reconcilers {
		switch {
		case r.Name == "":
			return nil, errors.New("maintenance: a reconciler has no name")
		case seen[r.Name]:
			return nil, fmt.Errorf("maintenance: reconciler %q registered twice", r.Name)
		case r.Interval < 0:
			return nil, fmt.Errorf("maintenance: reconciler %q: negative interval %s", r.Name, r.Interval)
		case r.Tick == nil:
			return nil, fmt.Errorf("maintenance: reconciler %q has no tick", r.Name)
		}
		seen[r.Name] = true
	}
	if lead != nil && (lead.Lead == nil || lead.Resign == nil || lead.Every <= 0) {
		return nil, errors.New("maintenance: leadership needs Lead, Resign and a positive Every")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supervisor{log: log, ctx: ctx, cancel: cancel, lead: lead, running: make(map[string]chan struct{})}
	s.leading.Store(lead == nil)
	if lead != nil {
		done := make(chan struct{})
		s.running[leadershipName] = done
		go s.leadLoop(done)
	}
	for _, r := range reconcilers {
		if r.Interval == 0 {
			log.Debug("weft: reconciler disabled (interval 0)", "reconciler", r.Name)
			continue
		}
		done := make(chan struct{})
		s.running[r.Name] = done
		go s.loop(r, done)
	}
	return s, nil
}

// Running lists the reconcilers whose loops have not yet stopped.
func (s *Supervisor) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, done := range s.running {
		select {
		case <-done:
		default:
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func (s *Supervisor) loop(r Reconciler, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(r.Interval)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		s.tick(r)
		// Counted from the end of the tick: an overrun delays the next
		// tick instead of letting missed ones fire back to back.
		timer.Reset(r.Interval)
	}
}

// leadershipName names the loop that keeps leadership.
const leadershipName = "leadership"

// leadLoop takes leadership at once, then renews it every Every.
func (s *Supervisor) leadLoop(done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		held, err := s.lead.Lead(s.ctx)
		switch {
		case err != nil && s.ctx.Err() == nil:
			// Without an answer this node cannot know it still leads.
			s.log.Warn("weft: leadership renewal failed", "err", err)
			held = false
		case err != nil:
			return
		}
		if was := s.leading.Swap(held); was != held {
			s.log.Info("weft: maintenance leadership changed", "leading", held)
		}
		timer.Reset(s.lead.Every)
	}
}

// Leading reports whether this node runs the singleton reconcilers.
func (s *Supervisor) Leading() bool { return s.leading.Load() }

func (s *Supervisor) tick(r Reconciler) {
	if r.Singleton && !s.leading.Load() {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("weft: reconciler tick panicked", "reconciler", r.Name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	if err := r.Tick(s.ctx); err != nil && s.ctx.Err() == nil {
		s.log.Warn("weft: reconciler tick failed", "reconciler", r.Name, "err", err)
	}
}

// Shutdown signals every loop and waits up to grace for them to stop. It
// returns how many did not stop in time, after logging their names. A
// second Shutdown returns 0 at once.
func (s *Supervisor) Shutdown(grace time.Duration) int {
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return 0
	}
	s.down = true
	s.mu.Unlock()
	s.cancel()
	if s.lead != nil && s.leading.Load() {
		// Resigning lets another node take over at once rather than when
		// the lease runs out.
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := s.lead.Resign(ctx); err != nil {
			s.log.Warn("weft: resigning maintenance leadership", "err", err)
		}
		cancel()
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for _, done := range s.running {
		select {
		case <-done:
		case <-deadline.C:
			late := s.Running()
			s.log.Warn("weft: reconcilers did not stop within the grace period", "grace", grace, "reconcilers", strings.Join(late, ","))
			return len(late)
		}
	}
	return 0
}

// Close signals every loop to stop and returns at once; use Shutdown to
// wait for them.
func (s *Supervisor) Close() { s.cancel() }

// Interval is the interval configured for the named reconciler by the
// environment variable WEFT_<NAME>_INTERVAL (a Go duration such as "30s";
// "0" disables it), or def when the variable is unset. The same knob
// drives every backend.
func Interval(name string, def time.Duration) (time.Duration, error) {
	key := "WEFT_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name)) + "_INTERVAL"
	v, ok := os.LookupEnv(key)
	if !ok || v == "" {
		return def, nil
	}
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 30s, or 0 to disable", key, v)
	}
	return d, nil
}
