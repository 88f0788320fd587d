package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/weftworks/weft/internal/api"
)

// Limits lists the limits with their totals.
func (c *Client) Limits(ctx context.Context) (api.LimitList, error) {
	var out api.LimitList
	err := c.do(ctx, http.MethodGet, "/v1/limits", nil, &out)
	return out, err
}

// Limit reads a limit with its totals and a page of at most limit of its
// keys after cursor (0 and "" for the server's default page and the
// first).
func (c *Client) Limit(ctx context.Context, name, cursor string, limit int) (api.LimitDetail, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/limits/" + url.PathEscape(name)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.LimitDetail
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// SetLimit creates or replaces a limit and returns it as stored.
func (c *Client) SetLimit(ctx context.Context, name string, in api.LimitInput) (api.Limit, error) {
	var out api.Limit
	err := c.do(ctx, http.MethodPut, "/v1/limits/"+url.PathEscape(name), in, &out)
	return out, err
}

// DeleteLimit deletes a limit and returns it as it was.
func (c *Client) DeleteLimit(ctx context.Context, name string) (api.Limit, error) {
	var out api.Limit
	err := c.do(ctx, http.MethodDelete, "/v1/limits/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Fairness reads a queue's fairness weights.
func (c *Client) Fairness(ctx context.Context, queue string) (api.Fairness, error) {
	var out api.Fairness
	err := c.do(ctx, http.MethodGet, "/v1/queues/"+url.PathEscape(queue)+"/fairness", nil, &out)
	return out, err
}

// SetFairness sets the weights of the keys in.Weights names and returns
// the queue's weights as they now are.
func (c *Client) SetFairness(ctx context.Context, queue string, in api.FairnessInput) (api.Fairness, error) {
	var out api.Fairness
	err := c.do(ctx, http.MethodPut, "/v1/queues/"+url.PathEscape(queue)+"/fairness", in, &out)
	return out, err
}
