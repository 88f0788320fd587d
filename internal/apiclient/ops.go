package apiclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/weftworks/weft/internal/api"
)

// Bulk applies one action to the tasks a filter or a list of ids selects
// and returns how many it matched and changed.
func (c *Client) Bulk(ctx context.Context, req api.BulkRequest) (api.BulkResult, error) {
	var out api.BulkResult
	err := c.do(ctx, http.MethodPost, "/v1/tasks/bulk", req, &out)
	return out, err
}

// DeleteTask deletes a finished task and returns it as it was.
// ErrConflict when it has not finished.
func (c *Client) DeleteTask(ctx context.Context, id string) (api.Task, error) {
	var out api.Task
	err := c.do(ctx, http.MethodDelete, "/v1/tasks/"+url.PathEscape(id), nil, &out)
	return out, err
}

// RunTask makes a pending task scheduled for later ready now.
func (c *Client) RunTask(ctx context.Context, id string) (api.Task, error) {
	var out api.Task
	err := c.do(ctx, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/run", nil, &out)
	return out, err
}

// Schedules lists the schedules.
func (c *Client) Schedules(ctx context.Context) (api.ScheduleList, error) {
	var out api.ScheduleList
	err := c.do(ctx, http.MethodGet, "/v1/schedules", nil, &out)
	return out, err
}

// Schedule reads one schedule.
func (c *Client) Schedule(ctx context.Context, name string) (api.Schedule, error) {
	return c.schedule(ctx, http.MethodGet, name, "", nil)
}

// PutSchedule creates or replaces a schedule and returns it as stored.
func (c *Client) PutSchedule(ctx context.Context, name string, in api.ScheduleInput) (api.Schedule, error) {
	return c.schedule(ctx, http.MethodPut, name, "", in)
}

// DeleteSchedule deletes a schedule and returns it as it was.
func (c *Client) DeleteSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return c.schedule(ctx, http.MethodDelete, name, "", nil)
}

// PauseSchedule stops a schedule from enqueueing.
func (c *Client) PauseSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return c.schedule(ctx, http.MethodPost, name, "/pause", nil)
}

// ResumeSchedule lets a paused schedule enqueue again.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return c.schedule(ctx, http.MethodPost, name, "/resume", nil)
}

// schedule sends one request about the schedule name.
func (c *Client) schedule(ctx context.Context, method, name, suffix string, in any) (api.Schedule, error) {
	var out api.Schedule
	err := c.do(ctx, method, "/v1/schedules/"+url.PathEscape(name)+suffix, in, &out)
	return out, err
}

// TriggerSchedule enqueues one task from a schedule now.
func (c *Client) TriggerSchedule(ctx context.Context, name string) (api.Triggered, error) {
	var out api.Triggered
	err := c.do(ctx, http.MethodPost, "/v1/schedules/"+url.PathEscape(name)+"/trigger", nil, &out)
	return out, err
}

// Workers lists the nodes and remote workers.
func (c *Client) Workers(ctx context.Context) (api.WorkerList, error) {
	var out api.WorkerList
	err := c.do(ctx, http.MethodGet, "/v1/workers", nil, &out)
	return out, err
}
