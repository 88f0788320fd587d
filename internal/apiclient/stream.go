package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// AppendStream appends frames to a claimed task's output stream under the
// lease, and returns them as stored. ErrLeaseLost when the lease is gone.
func (c *Client) AppendStream(ctx context.Context, id string, req api.StreamRequest) (api.StreamResponse, error) {
	var out api.StreamResponse
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/stream", req, &out)
	return out, err
}

// StreamPage reads one page of a task's output stream: at most limit
// frames (0 for the server's default) after the cursor after, and the end
// when the page holds the last frames of a final task.
func (c *Client) StreamPage(ctx context.Context, id string, after int64, limit int) (api.FramePage, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/tasks/" + url.PathEscape(id) + "/stream"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.FramePage
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Stream follows a task's output stream after the cursor after: it yields
// each frame as it is written and, once the task is final, its end (a
// Frame of Kind api.FrameEnd), then stops. A stream the server ended
// without the end (it drained for shutdown) just stops: resume from the
// last Seq. A failure is the last element.
func (c *Client) Stream(ctx context.Context, id string, after int64) iter.Seq2[api.Frame, error] {
	path := "/v1/tasks/" + url.PathEscape(id) + "/stream?follow=true"
	if after > 0 {
		path += "&after=" + strconv.FormatInt(after, 10)
	}
	return ndjson[api.Frame](ctx, c, path, "stream of "+id)
}

// Result reads a task's outcome, waiting up to wait (at most 5m) for it to
// be final; Final in the answer says whether it is.
func (c *Client) Result(ctx context.Context, id string, wait time.Duration) (api.TaskResult, error) {
	var out api.TaskResult
	err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id)+"/result?wait="+url.QueryEscape(wait.String()), nil, &out)
	return out, err
}

// ndjson reads an NDJSON response of GET path line by line as values of
// T; what names the stream in errors. A failure is the last element.
func ndjson[T any](ctx context.Context, c *Client, path, what string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		req, err := c.newRequest(ctx, http.MethodGet, path, nil)
		if err != nil {
			yield(zero, err)
			return
		}
		req.Header.Set("Accept", "application/x-ndjson")
		resp, err := c.send(ctx, req)
		if err != nil {
			yield(zero, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			yield(zero, errorFrom(resp))
			return
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue // keep-alive
			}
			var v T
			if err := json.Unmarshal(line, &v); err != nil {
				yield(zero, fmt.Errorf("%s: bad line from the server: %w", what, err))
				return
			}
			if !yield(v, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			yield(zero, fmt.Errorf("%s: stream interrupted: %w", what, err))
		}
	}
}
