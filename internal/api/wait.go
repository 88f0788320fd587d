package api

import (
	"encoding/json"
	"time"

	"github.com/weftworks/weft/store"
)

// WaitpointRequest creates a waitpoint for a claimed task, under its
// lease (POST /v1/tasks/{id}/waitpoints).
type WaitpointRequest struct {
	LeaseToken string `json:"lease_token"`
	// Name is unique among the task's waitpoints: a repeat returns the
	// waitpoint of that name as it was created.
	Name string `json:"name"`
	// Allow lists the signal names the waitpoint takes; empty takes any.
	Allow []string `json:"allow,omitempty"`
	// ExpiresIn (a Go duration) is how long the waitpoint and its token
	// take signals; empty means until its wait ends.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// Waitpoint is a waitpoint with the signals it received.
type Waitpoint struct {
	ID     string `json:"id"`
	TaskID string `json:"task_id"`
	Name   string `json:"name"`
	// Token delivers signals to the waitpoint (POST /v1/signals). Claim
	// responses leave it out.
	Token     string     `json:"token,omitempty"`
	Allow     []string   `json:"allow,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// State is open or resolved; Resolution says how a resolved one
	// was: signal, timeout, expired, cancelled or task_finished.
	State      string     `json:"state"`
	Resolution string     `json:"resolution,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	// Signals are the signals it received, oldest first.
	Signals []Signal `json:"signals"`
}

// WaitpointList lists a task's waitpoints, oldest first.
type WaitpointList struct {
	Waitpoints []Waitpoint `json:"waitpoints"`
}

// Signal is a stored signal.
type Signal struct {
	ID             string          `json:"id"`
	WaitpointID    string          `json:"waitpoint_id"`
	Waitpoint      string          `json:"waitpoint"`
	Name           string          `json:"name"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key"`
	Source         string          `json:"source,omitempty"`
	ReceivedAt     time.Time       `json:"received_at"`
}

// WaitRequest suspends a claimed task on its waitpoints, under its lease
// (POST /v1/tasks/{id}/wait).
type WaitRequest struct {
	LeaseToken string `json:"lease_token"`
	// Waitpoints names the task's waitpoints to wait on.
	Waitpoints []string `json:"waitpoints"`
	// Mode is any (default), all or count.
	Mode string `json:"mode,omitempty"`
	// Count is the number of distinct sources a count wait needs.
	Count int `json:"count,omitempty"`
	// Timeout (a Go duration) ends the wait as OnTimeout says: fail
	// (default), cancel or resume.
	Timeout   string `json:"timeout,omitempty"`
	OnTimeout string `json:"on_timeout,omitempty"`
}

// SignalRequest delivers a signal with a waitpoint's token
// (POST /v1/signals).
type SignalRequest struct {
	Token   string          `json:"token"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// IdempotencyKey is required: a repeat is answered with the first
	// receipt and changes nothing.
	IdempotencyKey string `json:"idempotency_key"`
	// Source tells senders apart for a count wait; default the key.
	Source string `json:"source,omitempty"`
}

// TaskSignalRequest delivers a signal to a task's waitpoint by name, for
// callers with API access (POST /v1/tasks/{id}/signals).
type TaskSignalRequest struct {
	Waitpoint      string          `json:"waitpoint"`
	Name           string          `json:"name"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	IdempotencyKey string          `json:"idempotency_key"`
	Source         string          `json:"source,omitempty"`
}

// SignalReceipt is what delivering a signal did: the stored signal (the
// first delivery's, for a repeated key), whether it was a repeat, and
// whether it resumed its task.
type SignalReceipt struct {
	Signal    Signal `json:"signal"`
	Duplicate bool   `json:"duplicate"`
	Resumed   bool   `json:"resumed"`
	TaskID    string `json:"task_id"`
}

// FromWaitpoint converts a stored waitpoint, with token (empty to leave
// it out).
func FromWaitpoint(wp store.Waitpoint, token string) Waitpoint {
	out := Waitpoint{
		ID: wp.ID, TaskID: wp.TaskID, Name: wp.Name, Token: token, Allow: wp.Allow, State: string(wp.State),
		Resolution: wp.Resolution, CreatedAt: wp.CreatedAt.UTC(), Signals: make([]Signal, len(wp.Signals)),
	}
	if !wp.ExpiresAt.IsZero() {
		at := wp.ExpiresAt.UTC()
		out.ExpiresAt = &at
	}
	if !wp.ResolvedAt.IsZero() {
		at := wp.ResolvedAt.UTC()
		out.ResolvedAt = &at
	}
	for i, s := range wp.Signals {
		out.Signals[i] = FromSignal(s)
	}
	return out
}

// FromSignal converts a stored signal.
func FromSignal(s store.Signal) Signal {
	return Signal{
		ID: s.ID, WaitpointID: s.WaitpointID, Waitpoint: s.Waitpoint, Name: s.Name, Payload: s.Payload,
		IdempotencyKey: s.Key, Source: s.Source, ReceivedAt: s.ReceivedAt.UTC(),
	}
}

// FromReceipt converts a signal's receipt.
func FromReceipt(r store.SignalReceipt) SignalReceipt {
	return SignalReceipt{Signal: FromSignal(r.Signal), Duplicate: r.Duplicate, Resumed: r.Resumed, TaskID: r.TaskID}
}
