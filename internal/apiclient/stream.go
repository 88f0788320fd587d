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

	"github.com/weftworks/weft/internal/api"
)

// AppendStream appends frames to a claimed task's output stream under the
// lease, and returns them as stored, without their data. ErrLeaseLost when
// the lease is gone.
func (c *Client) AppendStream(ctx context.Context, id string, req api.StreamRequest) (api.StreamResponse, error) {
	var out api.StreamResponse
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/stream", req, &out)
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
