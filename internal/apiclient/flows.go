package apiclient

import (
	"context"
	"iter"
	"net/http"
	"net/url"

	"github.com/weftworks/weft/internal/api"
)

// SubmitFlow stores a flow and its members atomically: all of them or,
// when anything is wrong, none (the error's Field names it, as
// "tasks[2].depends_on[0]").
func (c *Client) SubmitFlow(ctx context.Context, in api.FlowInput) (api.FlowEnqueued, error) {
	var out api.FlowEnqueued
	if in.Tasks == nil {
		in.Tasks = []api.FlowTaskInput{} // "tasks": [] lets the server say the flow is empty
	}
	err := c.do(ctx, http.MethodPost, "/v1/flows", in, &out)
	return out, err
}

// Flow reads a flow, with its members unless members is false.
// ErrNotFound when there is no such flow.
func (c *Client) Flow(ctx context.Context, id string, members bool) (api.Flow, error) {
	path := "/v1/flows/" + url.PathEscape(id)
	if !members {
		path += "?members=false"
	}
	var out api.Flow
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// ListFlows reads one page of flows in creation order, without their
// members.
func (c *Client) ListFlows(ctx context.Context, p api.FlowListParams) (api.FlowList, error) {
	path := "/v1/flows"
	if q := p.Query(); len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out api.FlowList
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// CancelFlow cancels a flow's pending and blocked members and asks its
// running ones to stop. ErrConflict (already_finished) when the flow
// succeeded or failed.
func (c *Client) CancelFlow(ctx context.Context, id string) (api.Flow, error) {
	var out api.Flow
	err := c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/cancel", nil, &out)
	return out, err
}

// RetryFlow runs a flow's failed and cancelled members again, and what
// they made skip. ErrConflict when no member can run again.
func (c *Client) RetryFlow(ctx context.Context, id string) (api.Flow, error) {
	var out api.Flow
	err := c.do(ctx, http.MethodPost, "/v1/flows/"+url.PathEscape(id)+"/retry", nil, &out)
	return out, err
}

// FlowEvents streams the events of a flow's members, each with its key,
// as Events streams a task's; with follow, until the flow is final.
func (c *Client) FlowEvents(ctx context.Context, id string, after int64, follow bool) iter.Seq2[api.Event, error] {
	return c.events(ctx, "/v1/flows/"+url.PathEscape(id)+"/events", id, after, follow)
}

// AddMembers adds members to the flow of the claimed task id, under its
// lease (req.LeaseToken). ErrLeaseLost when the lease is gone.
func (c *Client) AddMembers(ctx context.Context, id string, req api.AddMembersRequest) (api.FlowEnqueued, error) {
	var out api.FlowEnqueued
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/members", req, &out)
	return out, err
}
