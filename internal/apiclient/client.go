// Package apiclient is a small typed client for Weft's HTTP API v1, used by
// the weft command line (and its remote worker). It speaks exactly the wire
// types of internal/api, turns error responses into *Error values that
// errors.Is can match (ErrNotFound, ErrConflict, ErrLeaseLost, ...), and
// says plainly when the server cannot be reached at all.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/weftworks/weft/internal/api"
)

// maxErrorBody bounds how much of an error response is read: enough for
// any api.Error, and a readable start of anything else.
const maxErrorBody = 64 << 10

// maxEventLine bounds one NDJSON line (an event, a frame). Progress data
// and frames are bounded at 1 MiB by default; this leaves room for that,
// escaped, plus the envelope.
const maxEventLine = 16 << 20

// Client calls one Weft server. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for the server at baseURL (for example
// "http://127.0.0.1:7070"), sending token as a bearer token when it is not
// empty. hc nil means a client without an overall timeout: requests are
// bounded by their contexts instead, since claims long-poll and event
// streams stay open.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// BaseURL is the server's base URL as the client uses it.
func (c *Client) BaseURL() string { return c.base }

// Enqueue stores one task. A duplicate (same unique key) comes back with
// Duplicate set and the existing task's id.
func (c *Client) Enqueue(ctx context.Context, in api.TaskInput) (api.Enqueued, error) {
	var out api.Enqueued
	err := c.do(ctx, http.MethodPost, "/v1/tasks", in, &out)
	return out, err
}

// EnqueueBatch stores tasks as one atomic batch: all of them or, when any
// is invalid, none (the error's Field names it, as "tasks[2].kind").
func (c *Client) EnqueueBatch(ctx context.Context, tasks []api.TaskInput) (api.BatchEnqueued, error) {
	var out api.BatchEnqueued
	if tasks == nil {
		tasks = []api.TaskInput{} // "tasks": [] lets the server say the batch is empty
	}
	err := c.do(ctx, http.MethodPost, "/v1/tasks", api.BatchInput{Tasks: tasks}, &out)
	return out, err
}

// Get reads one task.
func (c *Client) Get(ctx context.Context, id string) (api.Task, error) {
	var out api.Task
	err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), nil, &out)
	return out, err
}

// List reads one page of tasks in creation order.
func (c *Client) List(ctx context.Context, p api.ListParams) (api.TaskList, error) {
	q := p.Query()
	path := "/v1/tasks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.TaskList
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Cancel cancels a pending task, or requests the cancellation of a running
// one. ErrConflict when it already finished.
func (c *Client) Cancel(ctx context.Context, id string) (api.Task, error) {
	var out api.Task
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/cancel", nil, &out)
	return out, err
}

// Retry makes a failed or cancelled task pending again. ErrConflict when
// it is neither.
func (c *Client) Retry(ctx context.Context, id string) (api.Task, error) {
	var out api.Task
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/retry", nil, &out)
	return out, err
}

// Events streams a task's events with Seq > after, decoding the NDJSON
// response line by line as it arrives. With follow, the server keeps the
// stream open until the task is terminal and its terminal event was sent.
//
// The request is made when iteration starts. A failure (an error
// response, a dropped connection, a bad line) is yielded as the last
// element, with a zero Event; a stream the server ended cleanly just
// stops. Breaking out of the loop closes the connection.
func (c *Client) Events(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	return c.events(ctx, "/v1/tasks/"+url.PathEscape(id)+"/events", id, after, follow)
}

// events streams the events at path, of the task or flow id, as Events
// describes.
func (c *Client) events(ctx context.Context, path, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if follow {
		q.Set("follow", "true")
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return ndjson[api.Event](ctx, c, path, "events of "+id)
}

// Feed reads the events of every task as p selects them (GET
// /v1/events); with p.Follow it waits for more until ctx ends or the
// server ends the stream. A failure is the last element.
func (c *Client) Feed(ctx context.Context, p api.FeedParams) iter.Seq2[api.Event, error] {
	path := "/v1/events"
	if q := p.Query(); q != "" {
		path += "?" + q
	}
	return ndjson[api.Event](ctx, c, path, "events")
}

// Queues lists the queues with their counts.
func (c *Client) Queues(ctx context.Context) (api.QueueList, error) {
	var out api.QueueList
	err := c.do(ctx, http.MethodGet, "/v1/queues", nil, &out)
	return out, err
}

// PauseQueue stops claims from a queue on every node.
func (c *Client) PauseQueue(ctx context.Context, name string) (api.Queue, error) {
	var out api.Queue
	err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/pause", nil, &out)
	return out, err
}

// ResumeQueue lets claims from a paused queue go on.
func (c *Client) ResumeQueue(ctx context.Context, name string) (api.Queue, error) {
	var out api.Queue
	err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/resume", nil, &out)
	return out, err
}

// Signal delivers a signal with a waitpoint's token.
func (c *Client) Signal(ctx context.Context, req api.SignalRequest) (api.SignalReceipt, error) {
	var out api.SignalReceipt
	err := c.do(ctx, http.MethodPost, "/v1/signals", req, &out)
	return out, err
}

// SignalTask delivers a signal to a task's waitpoint by name.
func (c *Client) SignalTask(ctx context.Context, id string, req api.TaskSignalRequest) (api.SignalReceipt, error) {
	var out api.SignalReceipt
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/signals", req, &out)
	return out, err
}

// Waitpoints lists a task's waitpoints with their tokens and signals.
func (c *Client) Waitpoints(ctx context.Context, id string) (api.WaitpointList, error) {
	var out api.WaitpointList
	err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id)+"/waitpoints", nil, &out)
	return out, err
}

// CreateWaitpoint creates a waitpoint for the claimed task id under its
// lease (req.LeaseToken), or answers the one of that name it has, with its
// token. ErrLeaseLost when the lease is gone.
func (c *Client) CreateWaitpoint(ctx context.Context, id string, req api.WaitpointRequest) (api.Waitpoint, error) {
	var out api.Waitpoint
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/waitpoints", req, &out)
	return out, err
}

// Wait ends the attempt of the claimed task id by suspending it on its
// waitpoints. A wait the task's waitpoints cannot satisfy is ErrInvalid,
// and the task still runs under the lease.
func (c *Client) Wait(ctx context.Context, id string, req api.WaitRequest) (api.Outcome, error) {
	var out api.Outcome
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/wait", req, &out)
	return out, err
}

// Claim leases ready tasks to a remote worker, long-polling up to
// req.Wait when none is ready. ctx must outlive the wait.
func (c *Client) Claim(ctx context.Context, req api.ClaimRequest) (api.ClaimResponse, error) {
	var out api.ClaimResponse
	err := c.do(ctx, http.MethodPost, "/v1/claims", req, &out)
	return out, err
}

// Heartbeat extends a claimed task's lease and says whether its
// cancellation was requested. ErrLeaseLost when the lease is gone.
func (c *Client) Heartbeat(ctx context.Context, id string, req api.HeartbeatRequest) (api.HeartbeatResponse, error) {
	var out api.HeartbeatResponse
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/heartbeat", req, &out)
	return out, err
}

// Progress appends a progress event under the lease.
func (c *Client) Progress(ctx context.Context, id string, req api.ProgressRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/progress", req, nil)
}

// Complete completes the attempt.
func (c *Client) Complete(ctx context.Context, id string, req api.CompleteRequest) (api.Outcome, error) {
	var out api.Outcome
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/complete", req, &out)
	return out, err
}

// Fail ends the attempt unsuccessfully (retry, permanent failure, cancel
// or snooze, as req says).
func (c *Client) Fail(ctx context.Context, id string, req api.FailRequest) (api.Outcome, error) {
	var out api.Outcome
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/fail", req, &out)
	return out, err
}

// ReportOutcomes reports many attempts' outcomes in one request, at most
// api.MaxOutcomes, each task at most once. The answer has one result per
// outcome, in order: the state recorded, or the error that refused that
// outcome alone (see OutcomeErr). An error means that nothing was
// recorded.
func (c *Client) ReportOutcomes(ctx context.Context, outcomes []api.OutcomeInput) (api.OutcomesResponse, error) {
	var out api.OutcomesResponse
	if outcomes == nil {
		outcomes = []api.OutcomeInput{} // "outcomes": [] lets the server say the batch is empty
	}
	err := c.do(ctx, http.MethodPost, "/v1/outcomes", api.OutcomesRequest{Outcomes: outcomes}, &out)
	return out, err
}

// Health checks that the server is up (GET /healthz).
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Ready checks that the server can serve requests, its backend included
// (GET /readyz).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil)
}

// do sends one JSON request and decodes a 2xx JSON response into out (nil
// discards it, as for 204).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errorFrom(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		// Drain so the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, context.Cause(ctx))
		}
		return fmt.Errorf("%s %s: decode the response: %w", method, path, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("invalid server URL %q: %w", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// send performs req, telling a server that cannot be reached apart from
// other transport failures.
func (c *Client) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err == nil {
		return resp, nil
	}
	if ctx.Err() != nil {
		// Interrupted by the caller: not the server's fault.
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, context.Cause(ctx))
	}
	if unreachable(err) {
		return nil, &UnreachableError{Server: c.base, Err: err}
	}
	return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
}

// unreachable reports whether err means no connection was made: a failed
// dial (refused, no route, timeout) or a failed name lookup.
func unreachable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// errorFrom reads an error response.
func errorFrom(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var ae api.Error
	if json.Unmarshal(body, &ae) == nil && ae.Error.Code != "" {
		e.Code, e.Message, e.Field = ae.Error.Code, ae.Error.Message, ae.Error.Field
		return e
	}
	e.Code = api.CodeForStatus(resp.StatusCode)
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if strings.Contains(resp.Header.Get("Content-Type"), "html") || msg == "" {
		msg = "unexpected response from " + resp.Request.URL.Redacted() + " (is this a Weft server?)"
	}
	e.Message = msg
	return e
}
