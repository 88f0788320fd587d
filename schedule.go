package weft

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/weftworks/weft/store"
)

type (
	// ScheduleRecord is a stored schedule.
	ScheduleRecord = store.Schedule
	// Missed says what a schedule does about slots missed while no node
	// ran it (after downtime).
	Missed = store.Missed
)

// The missed-slot policies.
const (
	// MissedSkip enqueues nothing for slots that passed while nothing ran;
	// the schedule resumes with its next slot. The default.
	MissedSkip = store.MissedSkip
	// MissedRunOnce enqueues one task, at once, for the latest missed slot.
	MissedRunOnce = store.MissedRunOnce
)

// ScheduleOpts are the options of a schedule and of the tasks it enqueues.
type ScheduleOpts struct {
	Queue       string
	Priority    int
	MaxAttempts int
	Metadata    map[string]any
	// Missed defaults to MissedSkip.
	Missed Missed
	// Paused creates the schedule paused.
	Paused bool
}

// Schedule creates or replaces the schedule name: at every slot of spec —
// a cron expression ("*/5 * * * *", "@daily") or "@every <duration>" — a
// task with args is enqueued, at most once per slot across all nodes (its
// unique key is cron:<name>:<slot>). Schedules are run by the maintenance
// leader among the started clients on the database.
func (c *Client) Schedule(ctx context.Context, name, spec string, args TaskArgs, opts *ScheduleOpts) error {
	var o ScheduleOpts
	if opts != nil {
		o = *opts
	}
	// A schedule stores no limits or requirements (store.Schedule), so no
	// registry derives any: nil.
	var none *Workers
	task, verr := none.newTask(EnqueueParams{Args: args, Opts: &EnqueueOpts{Queue: o.Queue, Priority: o.Priority, MaxAttempts: o.MaxAttempts, Metadata: o.Metadata}})
	if verr != nil {
		verr.Index = -1
		return verr
	}
	sc, err := store.PrepareSchedule(store.Schedule{
		Name: name, Spec: spec, Kind: task.Kind, Queue: task.Queue, Args: task.Args,
		Priority: task.Priority, MaxAttempts: task.MaxAttempts, Metadata: task.Metadata,
		Missed: o.Missed, Paused: o.Paused,
	}, store.Limits{}, c.cfg.Now())
	if err != nil {
		return err
	}
	return c.st.PutSchedule(ctx, sc)
}

// Schedules lists the schedules.
func (c *Client) Schedules(ctx context.Context) ([]ScheduleRecord, error) { return c.st.Schedules(ctx) }

// PauseSchedule stops a schedule from enqueueing until ResumeSchedule.
func (c *Client) PauseSchedule(ctx context.Context, name string) error {
	return c.st.PauseSchedule(ctx, name, true)
}

// ResumeSchedule resumes a paused schedule. Slots missed while it was
// paused follow its Missed policy.
func (c *Client) ResumeSchedule(ctx context.Context, name string) error {
	return c.st.PauseSchedule(ctx, name, false)
}

// RemoveSchedule deletes a schedule; tasks it already enqueued stay.
func (c *Client) RemoveSchedule(ctx context.Context, name string) error {
	return c.st.DeleteSchedule(ctx, name)
}

// maxCatchUp bounds how many missed slots a due schedule steps over in one
// tick, so a very frequent schedule after a long downtime cannot hold the
// loop.
const maxCatchUp = 100000

// RunSchedules enqueues the due slot of every due schedule, at the
// client's clock (Config.Now), and advances the schedule, as the cron
// reconciler of the maintenance leader does every CronInterval. Running it
// besides the leader is safe: a slot is enqueued at most once (its unique
// key) and a schedule advances only from the slot it was read at. Tests
// call it, with a controllable clock, to make slots due without waiting
// for them (package weftest does).
func (c *Client) RunSchedules(ctx context.Context) error {
	now := c.cfg.Now()
	scs, err := c.st.Schedules(ctx)
	if err != nil {
		return err
	}
	// A slot this recent is current; older ones were missed.
	grace := max(2*c.cfg.CronInterval, 5*time.Second)
	for _, sc := range scs {
		if sc.Paused || sc.NextAt.After(now) {
			continue
		}
		sched, err := store.ParseSpec(sc.Spec)
		if err != nil {
			c.log.Error("weft: schedule has a bad spec", "schedule", sc.Name, "spec", sc.Spec, "err", err)
			continue
		}
		latest := sc.NextAt
		for i := 0; i < maxCatchUp; i++ {
			n := sched.Next(latest)
			if n.After(now) {
				break
			}
			latest = n
		}
		if sc.Missed == MissedRunOnce || now.Sub(latest) <= grace {
			_, err := c.st.Enqueue(ctx, []store.NewTask{sc.Task("cron:" + sc.Name + ":" + strconv.FormatInt(latest.Unix(), 10))})
			if err != nil {
				return fmt.Errorf("schedule %s: %w", sc.Name, err)
			}
		} else {
			c.log.Info("weft: skipped missed schedule slots", "schedule", sc.Name, "latest", latest)
		}
		if _, err := c.st.AdvanceSchedule(ctx, sc.Name, sc.NextAt, sched.Next(latest)); err != nil {
			return err
		}
	}
	return nil
}
