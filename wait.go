package weft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weftworks/weft/internal/waittoken"
	"github.com/weftworks/weft/store"
)

type (
	// Signal is a signal a waitpoint received.
	Signal = store.Signal
	// SignalReceipt is what delivering a signal did: the stored signal
	// (the first delivery's, for a repeated key), whether it was a
	// repeat, and whether it resumed its task.
	SignalReceipt = store.SignalReceipt
	// WaitMode is how a wait combines its waitpoints' signals.
	WaitMode = store.WaitMode
	// OnTimeout is what a wait's timeout does.
	OnTimeout = store.OnTimeout
)

// The wait modes and timeout actions.
const (
	// WaitForAny resumes on the first signal to any of the waitpoints.
	WaitForAny = store.WaitAny
	// WaitForAll resumes once every waitpoint has a signal.
	WaitForAll = store.WaitAll
	// WaitForCount resumes once Count distinct sources signalled.
	WaitForCount = store.WaitCount
	// TimeoutFail fails the task when the wait times out (the default).
	TimeoutFail = store.TimeoutFail
	// TimeoutCancel cancels it.
	TimeoutCancel = store.TimeoutCancel
	// TimeoutResume runs the handler again; its waitpoints say
	// TimedOut.
	TimeoutResume = store.TimeoutResume
)

// ErrWaitpointClosed: a signal came after its waitpoint's wait ended (by
// signals, by its timeout, or its expiry); the error says how.
var ErrWaitpointClosed = store.ErrWaitpointClosed

// ErrInvalidToken: a waitpoint token is malformed, forged, signed by a key
// this deployment does not have, or expired. The same answer is given for
// all of them, so that tokens cannot be probed.
var ErrInvalidToken = errors.New("invalid waitpoint token")

// WaitpointOpts configure a waitpoint.
type WaitpointOpts struct {
	// Allow lists the signal names the waitpoint takes; empty takes any.
	Allow []string
	// ExpiresIn, when positive, is how long the waitpoint (and its token)
	// takes signals.
	ExpiresIn time.Duration
}

// Waitpoint is a point a task can wait on until signals arrive. Hand its
// Token to whoever is to signal it.
type Waitpoint struct {
	ID    string
	Name  string
	Token string
	Allow []string
	// ExpiresAt is zero for a waitpoint that does not expire.
	ExpiresAt time.Time
	// Resolved says the wait it belonged to ended, and Resolution how:
	// "signal", "timeout", "expired", ...
	Resolved   bool
	Resolution string
	// Signals are the signals it received, oldest first.
	Signals []Signal
}

// Signal returns the first signal named name the waitpoint received.
func (w *Waitpoint) Signal(name string) (Signal, bool) {
	for _, s := range w.Signals {
		if s.Name == name {
			return s, true
		}
	}
	return Signal{}, false
}

// TimedOut reports whether the wait on the waitpoint ended by its
// timeout (with TimeoutResume, the handler runs again and sees this).
func (w *Waitpoint) TimedOut() bool { return w.Resolution == store.ResolvedByTimeout }

// SignalPayload decodes a signal's payload into a P.
func SignalPayload[P any](s Signal) (P, error) {
	var p P
	if err := json.Unmarshal(s.Payload, &p); err != nil {
		return p, fmt.Errorf("weft: decode the payload of signal %q: %w", s.Name, err)
	}
	return p, nil
}

// Waitpoint creates a waitpoint named name for this task, or returns the
// one of that name it already has — with the signals it received — so a
// handler that runs again after its wait finds what it made before: the
// same id, the same token.
func (t *Task[T]) Waitpoint(ctx context.Context, name string, opts *WaitpointOpts) (*Waitpoint, error) {
	var o WaitpointOpts
	if opts != nil {
		o = *opts
	}
	nw := store.NewWaitpoint{Name: name, Allow: o.Allow}
	if o.ExpiresIn > 0 {
		nw.ExpiresAt = t.now().Add(o.ExpiresIn)
	}
	wp, err := t.exec.CreateWaitpoint(ctx, nw)
	if err != nil {
		return nil, fmt.Errorf("weft: waitpoint %q: %w", name, err)
	}
	tok, err := t.token(ctx, wp)
	if err != nil {
		return nil, err
	}
	return newWaitpoint(wp, tok), nil
}

// Waitpoints lists this task's waitpoints with their signals.
func (t *Task[T]) Waitpoints(ctx context.Context) ([]*Waitpoint, error) {
	wps, err := t.exec.Waitpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("weft: read waitpoints: %w", err)
	}
	out := make([]*Waitpoint, len(wps))
	for i, wp := range wps {
		tok, err := t.token(ctx, wp)
		if err != nil {
			return nil, err
		}
		out[i] = newWaitpoint(wp, tok)
	}
	return out, nil
}

// token is the token of the task's waitpoint wp: the one the server that
// stores it signed, for a handler run by `weft worker`, or one signed with
// the client's key ring.
func (t *Task[T]) token(ctx context.Context, wp store.Waitpoint) (string, error) {
	if tok, ok := t.exec.WaitpointToken(wp.ID); ok {
		return tok, nil
	}
	ring, err := t.tokens(ctx)
	if err != nil {
		return "", err
	}
	return sign(ring, wp), nil
}

// sign signs a token for a stored waitpoint.
func sign(ring *waittoken.Ring, wp store.Waitpoint) string {
	return ring.Sign(waittoken.Claims{Waitpoint: wp.ID, Allow: wp.Allow, ExpiresAt: wp.ExpiresAt})
}

func newWaitpoint(wp store.Waitpoint, token string) *Waitpoint {
	return &Waitpoint{
		ID: wp.ID, Name: wp.Name, Allow: wp.Allow, ExpiresAt: wp.ExpiresAt, Token: token,
		Resolved: wp.State == store.WaitpointResolved, Resolution: wp.Resolution, Signals: wp.Signals,
	}
}

// WaitFor is a suspension: the waitpoints (by name) to wait on, how their
// signals combine, and the timeout.
type WaitFor struct {
	Waitpoints []string
	// Mode defaults to WaitForAny.
	Mode WaitMode
	// Count is the number of distinct sources WaitForCount needs.
	Count int
	// Timeout, when positive, ends the wait as OnTimeout says (default
	// TimeoutFail).
	Timeout   time.Duration
	OnTimeout OnTimeout
}

// WaitError is returned by a handler to suspend its task: see Wait.
type WaitError struct{ For WaitFor }

func (e *WaitError) Error() string {
	return fmt.Sprintf("waiting on %s", strings.Join(e.For.Waitpoints, ", "))
}

// Wait suspends the task until its waitpoints' signals satisfy w: return
// it from the handler. The task then holds no worker slot and no lease,
// and spends no attempt; when the condition holds (checked as each signal
// is stored, and at once if signals arrived before), it becomes pending
// and the handler runs again, finding the signals on its waitpoints.
func Wait(w WaitFor) error { return &WaitError{For: w} }

// WaitAny suspends the task until any of wps receives a signal, for at
// most timeout (zero: no limit), failing it then.
func WaitAny(timeout time.Duration, wps ...*Waitpoint) error {
	names := make([]string, len(wps))
	for i, wp := range wps {
		names[i] = wp.Name
	}
	return Wait(WaitFor{Waitpoints: names, Timeout: timeout})
}

func (w WaitFor) spec() *store.WaitSpec {
	return &store.WaitSpec{Waitpoints: w.Waitpoints, Mode: w.Mode, Count: w.Count, Timeout: w.Timeout, OnTimeout: w.OnTimeout}
}

// SignalParams is a signal to deliver.
type SignalParams struct {
	// Name must be one the waitpoint allows.
	Name string
	// Payload is stored with the signal, encoded as JSON.
	Payload any
	// Key makes the delivery idempotent: a repeat returns the first
	// receipt. Required.
	Key string
	// Source tells senders apart for a WaitForCount wait; default Key.
	Source string
}

func (p SignalParams) request() (store.SignalRequest, error) {
	r := store.SignalRequest{Name: p.Name, Key: p.Key, Source: p.Source}
	if p.Payload != nil {
		b, err := json.Marshal(p.Payload)
		if err != nil {
			return r, &ValidationError{Index: -1, Field: "payload", Message: "cannot encode as JSON: " + err.Error()}
		}
		r.Payload = b
	}
	return r, nil
}

// Signal delivers a signal with a waitpoint's token. The token is verified
// before anything is read: a bad token is ErrInvalidToken, as is one whose
// waitpoint does not exist. A waitpoint whose wait ended is
// ErrWaitpointClosed; one whose task finished, ErrAlreadyFinished; a name
// it does not allow, a *ValidationError.
func (c *Client) Signal(ctx context.Context, token string, p SignalParams) (SignalReceipt, error) {
	ring, err := c.tokenRing(ctx)
	if err != nil {
		return SignalReceipt{}, err
	}
	claims, err := ring.Verify(token, c.cfg.Now())
	if err != nil {
		return SignalReceipt{}, ErrInvalidToken
	}
	r, err := p.request()
	if err != nil {
		return SignalReceipt{}, err
	}
	r.WaitpointID = claims.Waitpoint
	rec, err := c.st.Signal(ctx, r)
	if errors.Is(err, store.ErrNotFound) {
		return SignalReceipt{}, ErrInvalidToken
	}
	return rec, err
}

// SignalTask delivers a signal to the waitpoint named waitpoint of task
// taskID: the operator's way, for callers with API access rather than a
// token. ErrNotFound when the task has no such waitpoint.
func (c *Client) SignalTask(ctx context.Context, taskID, waitpoint string, p SignalParams) (SignalReceipt, error) {
	r, err := p.request()
	if err != nil {
		return SignalReceipt{}, err
	}
	r.TaskID, r.Waitpoint = taskID, waitpoint
	return c.st.Signal(ctx, r)
}

// Waitpoints lists a task's waitpoints with their signals and tokens.
func (c *Client) Waitpoints(ctx context.Context, taskID string) ([]*Waitpoint, error) {
	wps, err := c.st.Waitpoints(ctx, taskID)
	if err != nil {
		return nil, err
	}
	ring, err := c.tokenRing(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Waitpoint, len(wps))
	for i, wp := range wps {
		out[i] = newWaitpoint(wp, sign(ring, wp))
	}
	return out, nil
}

// WaitpointToken signs a token for a stored waitpoint, as handlers get
// them: for a server that creates waitpoints for its remote workers.
func (c *Client) WaitpointToken(ctx context.Context, wp store.Waitpoint) (string, error) {
	ring, err := c.tokenRing(ctx)
	if err != nil {
		return "", err
	}
	return sign(ring, wp), nil
}

// tokens holds a client's key ring: from Config.SigningKeys, or the
// deployment's own key kept in the database, read on first use.
type tokens struct {
	mu   sync.Mutex
	ring *waittoken.Ring
}

func (c *Client) tokenRing(ctx context.Context) (*waittoken.Ring, error) {
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	if c.tok.ring != nil {
		return c.tok.ring, nil
	}
	var keys []waittoken.Key
	if c.cfg.SigningKeys != "" {
		var err error
		if keys, err = waittoken.ParseKeys(c.cfg.SigningKeys); err != nil {
			return nil, &ValidationError{Index: -1, Field: "signing_keys", Message: err.Error()}
		}
	} else {
		kid, secret, err := c.st.SigningKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("weft: the deployment's signing key: %w", err)
		}
		keys = []waittoken.Key{{ID: kid, Secret: secret}}
	}
	ring, err := waittoken.NewRing(keys...)
	if err != nil {
		return nil, &ValidationError{Index: -1, Field: "signing_keys", Message: err.Error()}
	}
	c.tok.ring = ring
	return ring, nil
}
