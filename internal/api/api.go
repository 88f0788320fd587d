// Package api holds the wire types of Weft's HTTP API v1, shared by the
// server (internal/httpapi) and the CLI's client, so that both sides decode
// exactly what the other encodes. JSON fields are snake_case; durations are
// Go duration strings ("1m30s"); times are RFC 3339.
package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/weftworks/weft/store"
)

// TaskInput is a task to enqueue.
type TaskInput struct {
	Kind string          `json:"kind"`
	Args json.RawMessage `json:"args,omitempty"`
	// Queue defaults to "default".
	Queue    string `json:"queue,omitempty"`
	Priority int    `json:"priority,omitempty"`
	// Delay (a Go duration) and RunAt (RFC 3339) say when the task becomes
	// ready; at most one may be given.
	Delay string     `json:"delay,omitempty"`
	RunAt *time.Time `json:"run_at,omitempty"`
	// MaxAttempts defaults to 25.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Timeout bounds each attempt (a Go duration).
	Timeout   string          `json:"timeout,omitempty"`
	UniqueKey string          `json:"unique_key,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	// Limits names the limits the task draws on, each with its key: limit
	// name → key ({"per-customer": "acme"}). The limits must exist.
	Limits map[string]string `json:"limits,omitempty"`
	// Cost is the units the task takes from its limits' rates; default 1.
	Cost int `json:"cost,omitempty"`
	// Requires lists the worker labels a worker needs to claim the task:
	// label → "value" (equal), ">=n" or "<=n" (numbers).
	Requires map[string]string `json:"requires,omitempty"`
	// FairnessKey places the task in its queue's fair share (a tenant).
	FairnessKey string `json:"fairness_key,omitempty"`
}

// BatchInput is an atomic batch of tasks: every task is stored or none is.
type BatchInput struct {
	Tasks []TaskInput `json:"tasks"`
}

// Enqueued is the outcome of enqueueing one task. Duplicate is true when
// a task with the same unique key already existed; ID is then its id.
type Enqueued struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// BatchEnqueued answers a batch, one entry per task in input order.
type BatchEnqueued struct {
	Tasks []Enqueued `json:"tasks"`
}

// AttemptError records why one attempt failed.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
	Stack   string    `json:"stack,omitempty"`
}

// Task is a stored task as the API reads it back.
type Task struct {
	ID              string          `json:"id"`
	Kind            string          `json:"kind"`
	Queue           string          `json:"queue"`
	State           string          `json:"state"`
	Args            json.RawMessage `json:"args"`
	Priority        int             `json:"priority"`
	Attempt         int             `json:"attempt"`
	MaxAttempts     int             `json:"max_attempts"`
	Timeout         string          `json:"timeout,omitempty"`
	UniqueKey       string          `json:"unique_key,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
	Result          json.RawMessage `json:"result,omitempty"`
	Errors          []AttemptError  `json:"errors"`
	CancelRequested bool            `json:"cancel_requested"`
	// Worker is the lease owner of the current or last attempt.
	Worker      string     `json:"worker,omitempty"`
	RunAt       time.Time  `json:"run_at"`
	CreatedAt   time.Time  `json:"created_at"`
	AttemptedAt *time.Time `json:"attempted_at,omitempty"`
	FinalizedAt *time.Time `json:"finalized_at,omitempty"`
	// Hint, on a pending task read by id, says why nothing will run it:
	// its queue is paused, or no live worker works its queue or runs its
	// kind.
	Hint string `json:"hint,omitempty"`
	// FlowID and Key place a flow member in its flow; absent otherwise.
	FlowID string `json:"flow_id,omitempty"`
	Key    string `json:"key,omitempty"`
	// Limits, Cost, Requires and FairnessKey are as enqueued (TaskInput).
	Limits      map[string]string `json:"limits,omitempty"`
	Cost        int               `json:"cost,omitempty"`
	Requires    map[string]string `json:"requires,omitempty"`
	FairnessKey string            `json:"fairness_key,omitempty"`
	// BlockedReason, on a pending task, says why it is not being claimed;
	// absent when nothing holds it back.
	BlockedReason *BlockedReason `json:"blocked_reason,omitempty"`
}

// TaskList is one page of a listing. NextCursor, when set, fetches the
// next page.
type TaskList struct {
	Tasks      []Task `json:"tasks"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Event is one entry of a task's event log; Seq is its resumable cursor.
type Event struct {
	Seq     int64           `json:"seq"`
	TaskID  string          `json:"task_id"`
	Type    string          `json:"type"`
	Attempt int             `json:"attempt"`
	At      time.Time       `json:"at"`
	Data    json.RawMessage `json:"data,omitempty"`
	// Queue and Kind are the task's, in the feed of every task's events
	// (GET /v1/events); a task's own stream leaves them out.
	Queue string `json:"queue,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// Key is the member's key, in a flow's events.
	Key string `json:"key,omitempty"`
}

// Queue describes one queue: its task counts by state, whether claims are
// paused, and how long its oldest ready task has waited.
type Queue struct {
	Name          string           `json:"name"`
	Paused        bool             `json:"paused"`
	Counts        map[string]int64 `json:"counts"`
	OldestReadyAt *time.Time       `json:"oldest_ready_at,omitempty"`
	// Workers counts the live workers that work the queue.
	Workers int `json:"workers"`
}

// QueueList lists queues by name.
type QueueList struct {
	Queues []Queue `json:"queues"`
}

// ClaimRequest asks for tasks for a remote worker.
type ClaimRequest struct {
	// WorkerID names the worker; it is recorded as the lease owner.
	WorkerID string `json:"worker_id"`
	// Queues to claim from; default ["default"].
	Queues []string `json:"queues,omitempty"`
	// Kinds the worker can run; empty means any kind.
	Kinds []string `json:"kinds,omitempty"`
	// Max tasks to return, 1 to 100; default 1.
	Max int `json:"max,omitempty"`
	// Wait long-polls up to this long (at most 60s) when no task is ready.
	Wait string `json:"wait,omitempty"`
	// LeaseTTL is how long the lease lasts without a heartbeat, 1s to 1h;
	// default 30s.
	LeaseTTL string `json:"lease_ttl,omitempty"`
	// Labels are the worker's labels ({"gpu": "true", "mem": "64"}): it is
	// given only tasks whose requirements they satisfy, and no task with
	// requirements when it has none.
	Labels map[string]string `json:"labels,omitempty"`
}

// ClaimedTask is a task leased to a remote worker. Every later write of
// the attempt carries LeaseToken.
type ClaimedTask struct {
	Task
	LeaseToken     string    `json:"lease_token"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	// Parents are a flow member's parents' outcomes by key; absent for a
	// task without parents.
	Parents map[string]Parent `json:"parents,omitempty"`
	// Signals are the task's waitpoints with the signals they received,
	// for a task that has any: what a handler resumed from a wait reads.
	Signals []Waitpoint `json:"signals,omitempty"`
}

// ClaimResponse answers a claim; Tasks is empty when none was ready
// before the wait ended.
type ClaimResponse struct {
	Tasks []ClaimedTask `json:"tasks"`
}

// HeartbeatRequest extends a lease.
type HeartbeatRequest struct {
	LeaseToken string `json:"lease_token"`
	// LeaseTTL defaults to the lease TTL of the claim (which the token
	// carries).
	LeaseTTL string `json:"lease_ttl,omitempty"`
}

// HeartbeatResponse says until when the lease holds, and whether the task's
// cancellation was requested (the worker should stop and fail or cancel).
type HeartbeatResponse struct {
	LeaseExpiresAt  time.Time `json:"lease_expires_at"`
	CancelRequested bool      `json:"cancel_requested"`
}

// ProgressRequest appends a progress event under the lease.
type ProgressRequest struct {
	LeaseToken string          `json:"lease_token"`
	Progress   json.RawMessage `json:"progress"`
}

// CompleteRequest completes the attempt with an optional result.
type CompleteRequest struct {
	LeaseToken string          `json:"lease_token"`
	Result     json.RawMessage `json:"result,omitempty"`
}

// FailRequest ends the attempt unsuccessfully. By default the task is
// retried with backoff while attempts remain; Permanent fails it now,
// Cancel cancels it, RetryIn retries after that delay, and Snooze runs it
// again after that delay without spending the attempt. RateLimited, with
// Snooze, says an upstream refused the task for its rate (an HTTP 429):
// the task's rate limits are also held back for every task until the
// snooze ends.
type FailRequest struct {
	LeaseToken  string `json:"lease_token"`
	Error       string `json:"error"`
	Permanent   bool   `json:"permanent,omitempty"`
	Cancel      bool   `json:"cancel,omitempty"`
	RetryIn     string `json:"retry_in,omitempty"`
	Snooze      string `json:"snooze,omitempty"`
	RateLimited bool   `json:"rate_limited,omitempty"`
}

// Outcome answers complete and fail: the state the task moved to, and when
// it runs again if it is pending.
type Outcome struct {
	ID    string     `json:"id"`
	State string     `json:"state"`
	RunAt *time.Time `json:"run_at,omitempty"`
}

// MaxOutcomes bounds how many outcomes one POST /v1/outcomes may report.
const MaxOutcomes = 1000

// OutcomeInput is one attempt's outcome in a batch report: a completion
// with an optional Result or, when Error is given, a failure with the
// options of a FailRequest. Error is a pointer so that an empty message is
// refused as /fail refuses it instead of reading as a completion.
type OutcomeInput struct {
	// ID is the task's id; LeaseToken must be the token of its claim.
	ID          string          `json:"id"`
	LeaseToken  string          `json:"lease_token"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       *string         `json:"error,omitempty"`
	Permanent   bool            `json:"permanent,omitempty"`
	Cancel      bool            `json:"cancel,omitempty"`
	RetryIn     string          `json:"retry_in,omitempty"`
	Snooze      string          `json:"snooze,omitempty"`
	RateLimited bool            `json:"rate_limited,omitempty"`
}

// OutcomesRequest reports up to MaxOutcomes attempts' outcomes at once,
// each task at most once.
type OutcomesRequest struct {
	Outcomes []OutcomeInput `json:"outcomes"`
}

// OutcomeResult answers one reported outcome: the state the task moved to
// (with RunAt when it is pending), as Outcome says, or Error, why this
// outcome was not recorded.
type OutcomeResult struct {
	ID    string     `json:"id,omitempty"`
	State string     `json:"state,omitempty"`
	RunAt *time.Time `json:"run_at,omitempty"`
	Error *ErrorBody `json:"error,omitempty"`
}

// OutcomesResponse answers an OutcomesRequest, one result per outcome in
// request order.
type OutcomesResponse struct {
	Outcomes []OutcomeResult `json:"outcomes"`
}

// Error is the body of every error response.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong: Code is stable for programs, Message is
// for people, Field names the offending input when there is one
// ("tasks[2].kind").
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Error codes.
const (
	CodeBadRequest      = "bad_request"        // 400: malformed JSON, unknown fields, bad parameters
	CodeUnauthorized    = "unauthorized"       // 401: missing or wrong bearer token
	CodeForbidden       = "forbidden"          // 403: a read-only token asked for a change
	CodeNotFound        = "not_found"          // 404
	CodeMethod          = "method_not_allowed" // 405
	CodeConflict        = "conflict"           // 409: the task's state forbids it
	CodeLeaseLost       = "lease_lost"         // 409: the lease token is stale
	CodeFlowNotFound    = "flow_not_found"     // 404: no flow has the id
	CodeAlreadyFinished = "already_finished"   // 409: the flow has ended
	CodeWaitpointClosed = "waitpoint_closed"   // 409: the waitpoint's wait ended
	CodeLimitNotFound   = "limit_not_found"    // 404: no limit has the name
	CodeLimitReached    = "limit_reached"      // 409: a reject limit refused the enqueue
	CodeTooLarge        = "payload_too_large"  // 413
	CodeInvalid         = "invalid"            // 422: well-formed but invalid task
	CodeUnsupportedType = "unsupported_media_type"
	CodeUnavailable     = "unavailable" // 503: shutting down or backend down
	CodeInternal        = "internal"    // 500
)

// CodeForStatus is the error code that goes with an HTTP status: what the
// server sends for it, and what a client assumes when a response carried no
// code.
func CodeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethod
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusUnprocessableEntity:
		return CodeInvalid
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedType
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	case http.StatusInternalServerError:
		return CodeInternal
	}
	return ""
}

// StatusForCode is the HTTP status that goes with an error code, as the
// server answers it on its own (an error of one outcome in a batch carries
// only its code); 0 for a code it does not know.
func StatusForCode(code string) int {
	switch code {
	case CodeLeaseLost, CodeAlreadyFinished, CodeWaitpointClosed, CodeLimitReached:
		return http.StatusConflict
	case CodeFlowNotFound, CodeLimitNotFound:
		return http.StatusNotFound
	}
	for _, status := range []int{
		http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed,
		http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity,
		http.StatusUnsupportedMediaType, http.StatusServiceUnavailable, http.StatusInternalServerError,
	} {
		if CodeForStatus(status) == code {
			return status
		}
	}
	return 0
}

// FromTask converts a stored task.
func FromTask(t *store.Task) Task {
	out := Task{
		ID: t.ID, Kind: t.Kind, Queue: t.Queue, State: string(t.State), Args: t.Args,
		Priority: t.Priority, Attempt: t.Attempt, MaxAttempts: t.MaxAttempts,
		UniqueKey: t.UniqueKey, Metadata: t.Metadata, Result: t.Result,
		Errors: make([]AttemptError, len(t.Errors)), CancelRequested: t.CancelRequested,
		Worker: t.LeaseOwner, RunAt: t.RunAt.UTC(), CreatedAt: t.CreatedAt.UTC(),
		AttemptedAt: timePtr(t.AttemptedAt), FinalizedAt: timePtr(t.FinalizedAt),
		FlowID: t.FlowID, Key: t.FlowKey,
		Limits: t.LimitKeys, Cost: t.Cost, Requires: FromRequirements(t.Requires), FairnessKey: t.FairnessKey,
	}
	if t.State == store.StatePending {
		// A claim sets a reason aside with the task; it means nothing
		// once the task moved on.
		out.BlockedReason = FromBlocked(t.Blocked)
	}
	if t.AttemptTimeout > 0 {
		out.Timeout = t.AttemptTimeout.String()
	}
	if len(out.Args) == 0 {
		out.Args = json.RawMessage("null")
	}
	for i, e := range t.Errors {
		out.Errors[i] = AttemptError{Attempt: e.Attempt, At: e.At.UTC(), Error: e.Error, Stack: e.Stack}
	}
	return out
}

// FromEvent converts a stored event.
func FromEvent(e store.Event) Event {
	return Event{Seq: e.Seq, TaskID: e.TaskID, Type: string(e.Type), Attempt: e.Attempt, At: e.At.UTC(), Data: e.Data, Queue: e.Queue, Kind: e.Kind}
}

// FromQueueStats converts queue statistics; every state has a count.
func FromQueueStats(qs store.QueueStats) Queue {
	q := Queue{Name: qs.Queue, Paused: qs.Paused, Counts: make(map[string]int64, 5), OldestReadyAt: timePtr(qs.OldestReadyAt)}
	for _, s := range store.States() {
		q.Counts[string(s)] = qs.Counts[s]
	}
	return q
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
