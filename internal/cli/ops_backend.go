package cli

import (
	"context"

	"github.com/weftworks/weft/internal/api"
)

// opsBackend is the part of backend behind the schedule, bulk and worker
// commands, over the HTTP API (apiclient's methods of the same names) or
// straight on a store (directBackend, below).
type opsBackend interface {
	DeleteTask(ctx context.Context, id string) (api.Task, error)
	RunTask(ctx context.Context, id string) (api.Task, error)
	Bulk(ctx context.Context, req api.BulkRequest) (api.BulkResult, error)
	Schedules(ctx context.Context) (api.ScheduleList, error)
	Schedule(ctx context.Context, name string) (api.Schedule, error)
	PutSchedule(ctx context.Context, name string, in api.ScheduleInput) (api.Schedule, error)
	DeleteSchedule(ctx context.Context, name string) (api.Schedule, error)
	PauseSchedule(ctx context.Context, name string) (api.Schedule, error)
	ResumeSchedule(ctx context.Context, name string) (api.Schedule, error)
	TriggerSchedule(ctx context.Context, name string) (api.Triggered, error)
	Workers(ctx context.Context) (api.WorkerList, error)
}

func (d *directBackend) DeleteTask(ctx context.Context, id string) (api.Task, error) {
	return wire(ctx, d.svc.DeleteTask, id)
}

func (d *directBackend) RunTask(ctx context.Context, id string) (api.Task, error) {
	return wire(ctx, d.svc.RunTask, id)
}

func (d *directBackend) Bulk(ctx context.Context, req api.BulkRequest) (api.BulkResult, error) {
	return wire(ctx, d.svc.Bulk, req)
}

func (d *directBackend) Schedules(ctx context.Context) (api.ScheduleList, error) {
	l, err := d.svc.Schedules(ctx)
	return l, wireError(ctx, err)
}

func (d *directBackend) Schedule(ctx context.Context, name string) (api.Schedule, error) {
	return wire(ctx, d.svc.Schedule, name)
}

func (d *directBackend) PutSchedule(ctx context.Context, name string, in api.ScheduleInput) (api.Schedule, error) {
	sc, err := d.svc.PutSchedule(ctx, name, in)
	return sc, wireError(ctx, err)
}

func (d *directBackend) DeleteSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return wire(ctx, d.svc.DeleteSchedule, name)
}

func (d *directBackend) PauseSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return wire(ctx, d.svc.PauseSchedule, name)
}

func (d *directBackend) ResumeSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return wire(ctx, d.svc.ResumeSchedule, name)
}

func (d *directBackend) TriggerSchedule(ctx context.Context, name string) (api.Triggered, error) {
	return wire(ctx, d.svc.TriggerSchedule, name)
}

func (d *directBackend) Workers(ctx context.Context) (api.WorkerList, error) {
	l, err := d.svc.Workers(ctx)
	return l, wireError(ctx, err)
}
