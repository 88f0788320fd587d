package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Waits: a running task creates waitpoints, hands out their tokens, and
// suspends until signals arrive (or a timeout): it then holds no lease and
// no slot, and its handler runs again with the signals received.

// WaitpointState says whether a waitpoint still takes signals.
type WaitpointState string

// The waitpoint states.
const (
	// WaitpointOpen takes signals, before and while its task waits.
	WaitpointOpen WaitpointState = "open"
	// WaitpointResolved: the wait it belonged to ended — by its signals,
	// by the wait's timeout, or because the task finished or was
	// cancelled (Resolution says which). It takes no more signals.
	WaitpointResolved WaitpointState = "resolved"
)

// Resolutions of a waitpoint.
const (
	ResolvedBySignal    = "signal"
	ResolvedByTimeout   = "timeout"
	ResolvedByCancel    = "cancelled"
	ResolvedByExpiry    = "expired"
	ResolvedByTaskEnded = "task_finished"
)

// Limits of waits, documented in docs/api.md.
const (
	// MaxSignalsPerTask bounds the signals stored for one task.
	MaxSignalsPerTask = 1000
	// MaxWaitpointsPerTask bounds the waitpoints of one task.
	MaxWaitpointsPerTask = 100
	// MaxWaitTimeout bounds a wait's timeout.
	MaxWaitTimeout = 366 * 24 * time.Hour
)

// Wait events, written to the task's log.
const (
	// EventWaiting: the task suspended on its waitpoints.
	EventWaiting EventType = "waiting"
	// EventResumed: the wait ended; data says how (by a signal, or by the
	// timeout with on_timeout resume).
	EventResumed EventType = "resumed"
	// EventSignalled: a signal was stored for one of the task's
	// waitpoints.
	EventSignalled EventType = "signalled"
)

// ErrWaitpointClosed: a signal was sent to a waitpoint whose wait already
// ended; the error says how it was resolved.
var ErrWaitpointClosed = errors.New("waitpoint closed")

// NewWaitpoint is a waitpoint a running task creates.
type NewWaitpoint struct {
	// Name is unique among the task's waitpoints; creating a waitpoint
	// whose name the task already has returns that one (with its
	// signals), so a handler that runs again finds what it made before.
	Name string
	// Allow lists the signal names the waitpoint takes; empty takes any.
	Allow []string
	// ExpiresAt, when set, is when the waitpoint stops taking signals
	// (its token stops working too).
	ExpiresAt time.Time
}

// Waitpoint is a stored waitpoint.
type Waitpoint struct {
	ID         string
	TaskID     string
	Name       string
	Allow      []string
	ExpiresAt  time.Time
	State      WaitpointState
	Resolution string
	CreatedAt  time.Time
	ResolvedAt time.Time
	// Signals are the signals it received, oldest first.
	Signals []Signal
}

// Signal is a stored signal.
type Signal struct {
	ID          string          `json:"id"`
	WaitpointID string          `json:"waitpoint_id"`
	Waitpoint   string          `json:"waitpoint"`
	Name        string          `json:"name"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Key         string          `json:"idempotency_key"`
	Source      string          `json:"source,omitempty"`
	ReceivedAt  time.Time       `json:"received_at"`
}

// SignalRequest delivers a signal: to WaitpointID (from a verified
// token), or to the waitpoint named Waitpoint of TaskID (an operator).
type SignalRequest struct {
	WaitpointID string
	TaskID      string
	Waitpoint   string
	Name        string
	Payload     json.RawMessage
	// Key makes delivery idempotent: a repeat returns the first receipt.
	Key string
	// Source tells senders apart for a count condition; default Key.
	Source string
}

// SignalReceipt is what delivering a signal did.
type SignalReceipt struct {
	Signal Signal
	// Duplicate is true when the key was seen before: Signal is the first
	// delivery's, and nothing changed.
	Duplicate bool
	// Resumed is true when this signal completed its task's wait: the task
	// became pending in the same transaction.
	Resumed bool
	TaskID  string
}

// WaitMode is how a wait's condition combines its waitpoints' signals.
type WaitMode string

// The wait modes.
const (
	// WaitAny resumes on the first signal to any of the waitpoints.
	WaitAny WaitMode = "any"
	// WaitAll resumes once every waitpoint has a signal.
	WaitAll WaitMode = "all"
	// WaitCount resumes once Count distinct sources signalled.
	WaitCount WaitMode = "count"
)

// OnTimeout is what a wait's timeout does.
type OnTimeout string

// The timeout actions.
const (
	// TimeoutFail fails the task (default).
	TimeoutFail OnTimeout = "fail"
	// TimeoutCancel cancels it.
	TimeoutCancel OnTimeout = "cancel"
	// TimeoutResume runs its handler again, which finds the wait timed out.
	TimeoutResume OnTimeout = "resume"
)

// WaitSpec is a suspension: the task's waitpoints (by name), how their
// signals combine, and the timeout.
type WaitSpec struct {
	Waitpoints []string      `json:"waitpoints"`
	Mode       WaitMode      `json:"mode"`
	Count      int           `json:"count,omitempty"`
	Timeout    time.Duration `json:"timeout,omitempty"`
	OnTimeout  OnTimeout     `json:"on_timeout,omitempty"`
}

// Check validates a wait spec against the waitpoints it names (by name,
// in known); it fills in defaults.
func (w *WaitSpec) Check(known map[string]bool) error {
	bad := func(field, format string, a ...any) error {
		return &ValidationError{Index: -1, Field: "wait." + field, Message: fmt.Sprintf(format, a...)}
	}
	if len(w.Waitpoints) == 0 {
		return bad("waitpoints", "name at least one waitpoint to wait on")
	}
	for i, name := range w.Waitpoints {
		if !known[name] {
			return bad(fmt.Sprintf("waitpoints[%d]", i), "%q is not a waitpoint of this task (create it first)", name)
		}
		if slices.Index(w.Waitpoints, name) != i {
			return bad(fmt.Sprintf("waitpoints[%d]", i), "%q is listed twice", name)
		}
	}
	switch w.Mode {
	case "":
		w.Mode = WaitAny
	case WaitAny, WaitAll:
	case WaitCount:
		if w.Count < 1 {
			return bad("count", "%d is below 1", w.Count)
		}
	default:
		return bad("mode", "%q is not any, all or count", w.Mode)
	}
	if w.Mode != WaitCount && w.Count != 0 {
		return bad("count", "only a count wait takes a count")
	}
	if w.Timeout < 0 || w.Timeout > MaxWaitTimeout {
		return bad("timeout", "%s is out of range (0 for none, up to %s)", w.Timeout, MaxWaitTimeout)
	}
	switch w.OnTimeout {
	case "":
		w.OnTimeout = TimeoutFail
	case TimeoutFail, TimeoutCancel, TimeoutResume:
	default:
		return bad("on_timeout", "%q is not fail, cancel or resume", w.OnTimeout)
	}
	return nil
}

// Holds reports whether a wait's condition holds over the signals of its
// waitpoints (any signals of other waitpoints are ignored).
func (w WaitSpec) Holds(signals []Signal) bool {
	per := map[string]int{}
	sources := map[string]bool{}
	for _, s := range signals {
		if !slices.Contains(w.Waitpoints, s.Waitpoint) {
			continue
		}
		per[s.Waitpoint]++
		src := s.Source
		if src == "" {
			src = s.Key
		}
		sources[src] = true
	}
	switch w.Mode {
	case WaitAll:
		return len(per) == len(w.Waitpoints)
	case WaitCount:
		return len(sources) >= w.Count
	}
	return len(per) > 0
}

// CheckWaitpoint validates a waitpoint to create.
func CheckWaitpoint(wp NewWaitpoint, now time.Time) error {
	bad := func(field, format string, a ...any) error {
		return &ValidationError{Index: -1, Field: field, Message: fmt.Sprintf(format, a...)}
	}
	if !ValidName(wp.Name) {
		return bad("name", "%q is not a valid name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", wp.Name, MaxNameLength)
	}
	for i, a := range wp.Allow {
		if !ValidName(a) {
			return bad(fmt.Sprintf("allow[%d]", i), "%q is not a valid signal name", a)
		}
	}
	if !wp.ExpiresAt.IsZero() && !wp.ExpiresAt.After(now) {
		return bad("expires_at", "%s is not in the future", wp.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// CheckSignal validates a signal before anything is read.
func CheckSignal(r *SignalRequest, limits Limits) error {
	bad := func(field, format string, a ...any) error {
		return &ValidationError{Index: -1, Field: field, Message: fmt.Sprintf(format, a...)}
	}
	if !ValidName(r.Name) {
		return bad("name", "%q is not a valid signal name", r.Name)
	}
	if r.Key == "" {
		return bad("idempotency_key", "must not be empty: a repeat with the same key is answered with the first receipt")
	}
	if len(r.Key) > MaxUniqueKeyLength || !utf8.ValidString(r.Key) || strings.ContainsRune(r.Key, 0) {
		return bad("idempotency_key", "must be UTF-8 text of at most %d bytes without NUL characters", MaxUniqueKeyLength)
	}
	if len(r.Source) > MaxUniqueKeyLength || !utf8.ValidString(r.Source) {
		return bad("source", "must be UTF-8 text of at most %d bytes", MaxUniqueKeyLength)
	}
	if len(r.Payload) == 0 {
		r.Payload = json.RawMessage("null")
	}
	if len(r.Payload) > limits.ArgsLimit() {
		return bad("payload", "%d bytes exceeds the limit of %d bytes", len(r.Payload), limits.ArgsLimit())
	}
	if !json.Valid(r.Payload) {
		return bad("payload", "not valid JSON")
	}
	if msg := portableJSON(r.Payload); msg != "" {
		return bad("payload", "%s", msg)
	}
	if r.WaitpointID == "" && (r.TaskID == "" || r.Waitpoint == "") {
		return bad("waitpoint", "give a waitpoint token, or a task id and a waitpoint name")
	}
	return nil
}

// Allows reports whether the waitpoint takes signals named name.
func (w Waitpoint) Allows(name string) bool {
	return len(w.Allow) == 0 || slices.Contains(w.Allow, name)
}

// Waits stores waitpoints and signals.
type Waits interface {
	// CreateWaitpoint creates a waitpoint for a running task under its
	// lease, or returns the one of that name the task already has.
	CreateWaitpoint(ctx context.Context, taskID string, epoch int64, wp NewWaitpoint) (Waitpoint, error)
	// Waitpoints lists a task's waitpoints with their signals.
	Waitpoints(ctx context.Context, taskID string) ([]Waitpoint, error)
	// WaitpointsOf reads the waitpoints, with their signals, of several
	// tasks at once (those of a claim), by task id; a task without any is
	// absent.
	WaitpointsOf(ctx context.Context, taskIDs []string) (map[string][]Waitpoint, error)
	// Waitpoint reads one waitpoint by id, without its signals;
	// ErrNotFound when there is none.
	Waitpoint(ctx context.Context, id string) (Waitpoint, error)
	// Signal stores a signal and, when it completes its task's wait,
	// makes the task pending in the same transaction. A repeat of a key
	// returns the first receipt; ErrWaitpointClosed when the waitpoint's
	// wait ended; ErrAlreadyFinished when its task is final; ErrNotFound
	// when there is no such waitpoint; a *ValidationError for a name the
	// waitpoint does not allow.
	Signal(ctx context.Context, r SignalRequest) (SignalReceipt, error)
	// ExpireWaits ends the waits whose timeout passed, as each says (fail,
	// cancel or resume), at most limit of them, and says when the next
	// one is due (zero when none is).
	ExpireWaits(ctx context.Context, limit int) (n int, next time.Time, err error)
	// SigningKey returns the key the deployment signs waitpoint tokens
	// with when none is configured, creating it on first use, so tokens
	// survive restarts.
	SigningKey(ctx context.Context) (kid string, secret []byte, err error)
}
