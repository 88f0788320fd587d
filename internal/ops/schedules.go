package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/weftworks/weft/internal/api"
	"github.com/weftworks/weft/store"
)

// Schedules lists every schedule by name.
func (s *Service) Schedules(ctx context.Context) (api.ScheduleList, error) {
	scs, err := s.b.Schedules(ctx)
	if err != nil {
		return api.ScheduleList{}, err
	}
	out := api.ScheduleList{Schedules: make([]api.Schedule, len(scs))}
	for i, sc := range scs {
		out.Schedules[i] = api.FromSchedule(sc)
	}
	return out, nil
}

// Schedule reads the schedule name; a 404 naming it when there is none.
func (s *Service) Schedule(ctx context.Context, name string) (api.Schedule, error) {
	sc, err := s.schedule(ctx, name)
	if err != nil {
		return api.Schedule{}, err
	}
	return api.FromSchedule(sc), nil
}

// schedule reads one stored schedule.
func (s *Service) schedule(ctx context.Context, name string) (store.Schedule, error) {
	if err := checkScheduleName(name); err != nil {
		return store.Schedule{}, err
	}
	scs, err := s.b.Schedules(ctx)
	if err != nil {
		return store.Schedule{}, err
	}
	for _, sc := range scs {
		if sc.Name == name {
			return sc, nil
		}
	}
	return store.Schedule{}, noSchedule(name)
}

// PutSchedule creates or replaces the schedule name, its first slot the
// first after now, and returns it as stored. Everything is validated
// before anything is written: a bad spec, kind, args or missed policy is
// a 422 naming the field.
func (s *Service) PutSchedule(ctx context.Context, name string, in api.ScheduleInput) (api.Schedule, error) {
	if err := checkScheduleName(name); err != nil {
		return api.Schedule{}, err
	}
	sc, err := store.PrepareSchedule(store.Schedule{
		Name: name, Spec: in.Spec, Kind: in.Kind, Queue: in.Queue, Args: in.Args, Priority: in.Priority,
		MaxAttempts: in.MaxAttempts, Metadata: in.Metadata, Missed: store.Missed(in.Missed), Paused: in.Paused,
	}, store.Limits{}, time.Now())
	if err != nil {
		return api.Schedule{}, err
	}
	if err := s.b.PutSchedule(ctx, sc); err != nil {
		return api.Schedule{}, err
	}
	return s.Schedule(ctx, name)
}

// PauseSchedule stops the schedule name from enqueueing and returns it.
func (s *Service) PauseSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return s.setSchedulePaused(ctx, name, true)
}

// ResumeSchedule lets the schedule name enqueue again and returns it;
// slots missed meanwhile follow its missed policy.
func (s *Service) ResumeSchedule(ctx context.Context, name string) (api.Schedule, error) {
	return s.setSchedulePaused(ctx, name, false)
}

func (s *Service) setSchedulePaused(ctx context.Context, name string, paused bool) (api.Schedule, error) {
	if err := checkScheduleName(name); err != nil {
		return api.Schedule{}, err
	}
	if err := s.b.PauseSchedule(ctx, name, paused); err != nil {
		return api.Schedule{}, scheduleErr(name, err)
	}
	return s.Schedule(ctx, name)
}

// DeleteSchedule removes the schedule name and returns it as it was.
// Tasks it already enqueued stay.
func (s *Service) DeleteSchedule(ctx context.Context, name string) (api.Schedule, error) {
	sc, err := s.schedule(ctx, name)
	if err != nil {
		return api.Schedule{}, err
	}
	if err := s.b.DeleteSchedule(ctx, name); err != nil {
		return api.Schedule{}, scheduleErr(name, err)
	}
	return api.FromSchedule(sc), nil
}

// TriggerSchedule enqueues one task from the schedule name now, as a slot
// would but without a slot's unique key, whether or not the schedule is
// paused; its next slot does not move.
func (s *Service) TriggerSchedule(ctx context.Context, name string) (api.Triggered, error) {
	sc, err := s.schedule(ctx, name)
	if err != nil {
		return api.Triggered{}, err
	}
	res, err := s.b.Enqueue(ctx, []store.NewTask{sc.Task("")})
	if err != nil {
		return api.Triggered{}, fmt.Errorf("trigger schedule %s: %w", name, err)
	}
	return api.Triggered{Schedule: name, ID: res[0].ID}, nil
}

// checkScheduleName refuses a name no schedule can have. It is the
// request's path, not a field of a body: a malformed request (400), as a
// queue's name is.
func checkScheduleName(name string) error {
	if !store.ValidName(name) {
		return badRequest("name", "%q is not a valid schedule name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", name, store.MaxNameLength)
	}
	return nil
}

// noSchedule is the 404 of a schedule that does not exist.
func noSchedule(name string) error {
	return &api.FieldError{Status: http.StatusNotFound, Field: "name", Message: fmt.Sprintf("no schedule named %q (weft schedules lists them)", name)}
}

// scheduleErr says that a store call found no schedule in the words of a
// schedule, not of a task.
func scheduleErr(name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return noSchedule(name)
	}
	return err
}
