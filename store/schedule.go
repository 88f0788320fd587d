package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ParseSpec parses a schedule's spec: the five-field cron syntax
// ("0 3 * * *"), descriptors such as "@hourly", and "@every <duration>"
// with a duration of at least a second.
func ParseSpec(spec string) (cron.Schedule, error) {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		// The cron library rounds what is under a second up to one,
		// negative durations included: refuse them rather than run a
		// schedule at a rate nobody asked for.
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (for example 90s, 5m or 1h30m)", strings.TrimSpace(rest))
		}
		if d < time.Second {
			return nil, fmt.Errorf("the interval %s is under a second: the shortest is @every 1s", d)
		}
	}
	return cron.ParseStandard(spec)
}

// PrepareSchedule validates a schedule as every entry path hands it to a
// backend — its name, spec and missed-slot policy, and the task it
// enqueues, which Prepare checks as it checks an enqueue — and fills in
// the defaults: the default queue and attempts, MissedSkip, and NextAt,
// the first slot after now. Problems are a *ValidationError naming the
// field ("name", "spec", "missed", "kind", "args", ...).
func PrepareSchedule(sc Schedule, limits Limits, now time.Time) (Schedule, error) {
	bad := func(field, msg string) error { return &ValidationError{Index: -1, Field: field, Message: msg} }
	if !ValidName(sc.Name) {
		return Schedule{}, bad("name", fmt.Sprintf("%q is not a valid schedule name", sc.Name))
	}
	sched, err := ParseSpec(sc.Spec)
	if err != nil {
		return Schedule{}, bad("spec", fmt.Sprintf("%q: %v", sc.Spec, err))
	}
	switch sc.Missed {
	case "":
		sc.Missed = MissedSkip
	case MissedSkip, MissedRunOnce:
	default:
		return Schedule{}, bad("missed", fmt.Sprintf("%q is not skip or run_once", sc.Missed))
	}
	// The task is validated as an enqueue would be, without writing it.
	probe, err := Prepare([]NewTask{sc.Task("")}, limits, now)
	if err != nil {
		return Schedule{}, err
	}
	p := probe.Task(0)
	sc.Queue, sc.Args, sc.MaxAttempts, sc.Metadata = p.Queue, p.Args, p.MaxAttempts, p.Metadata
	sc.NextAt = sched.Next(now)
	return sc, nil
}

// Task is the task the schedule enqueues, with uniqueKey: a slot's task
// has the key cron:<name>:<slot>, so that a slot is enqueued at most once
// across nodes; a task triggered by hand has none.
func (sc Schedule) Task(uniqueKey string) NewTask {
	return NewTask{
		Kind: sc.Kind, Queue: sc.Queue, Args: sc.Args, Priority: sc.Priority, MaxAttempts: sc.MaxAttempts,
		Metadata: sc.Metadata, UniqueKey: uniqueKey,
	}
}
