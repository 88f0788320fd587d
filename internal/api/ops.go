package api

import (
	"encoding/json"
	"time"

	"github.com/weftworks/weft/store"
)

// Schedule is a stored schedule: at every slot of Spec, a task of Kind
// with Args is enqueued into Queue.
type Schedule struct {
	Name        string          `json:"name"`
	Spec        string          `json:"spec"`
	Kind        string          `json:"kind"`
	Queue       string          `json:"queue"`
	Args        json.RawMessage `json:"args"`
	Priority    int             `json:"priority"`
	MaxAttempts int             `json:"max_attempts"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	// Missed is "skip" or "run_once": what happens to slots missed while
	// no server ran the schedule.
	Missed string `json:"missed"`
	Paused bool   `json:"paused"`
	// NextAt is the next slot.
	NextAt    time.Time `json:"next_at"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ScheduleList lists schedules by name.
type ScheduleList struct {
	Schedules []Schedule `json:"schedules"`
}

// ScheduleInput creates or replaces a schedule (PUT /v1/schedules/{name}).
// Zero fields take the defaults of an enqueue; Missed defaults to "skip".
type ScheduleInput struct {
	// Spec is a cron expression ("0 3 * * *"), a descriptor ("@hourly")
	// or "@every <duration>" (at least 1s).
	Spec        string          `json:"spec"`
	Kind        string          `json:"kind"`
	Args        json.RawMessage `json:"args,omitempty"`
	Queue       string          `json:"queue,omitempty"`
	Priority    int             `json:"priority,omitempty"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	Missed      string          `json:"missed,omitempty"`
	Paused      bool            `json:"paused,omitempty"`
}

// Triggered answers a trigger: the task enqueued from the schedule.
type Triggered struct {
	Schedule string `json:"schedule"`
	ID       string `json:"id"`
}

// FromSchedule converts a stored schedule.
func FromSchedule(sc store.Schedule) Schedule {
	out := Schedule{
		Name: sc.Name, Spec: sc.Spec, Kind: sc.Kind, Queue: sc.Queue, Args: sc.Args, Priority: sc.Priority,
		MaxAttempts: sc.MaxAttempts, Metadata: sc.Metadata, Missed: string(sc.Missed), Paused: sc.Paused,
		NextAt: sc.NextAt.UTC(), CreatedAt: sc.CreatedAt.UTC(), UpdatedAt: sc.UpdatedAt.UTC(),
	}
	if len(out.Args) == 0 {
		out.Args = json.RawMessage("{}")
	}
	return out
}

// Bulk actions, as BulkRequest.Action names them.
const (
	BulkRetry  = string(store.BulkRetry)
	BulkCancel = string(store.BulkCancel)
	BulkDelete = string(store.BulkDelete)
	BulkRunNow = string(store.BulkRunNow)
)

// MaxBulkIDs bounds how many ids one bulk request may name.
const MaxBulkIDs = MaxBatch

// BulkRequest applies one action to the tasks a filter selects, or to the
// tasks named by ids (POST /v1/tasks/bulk). Exactly one of Filter and IDs
// is given; an empty filter selects every task.
type BulkRequest struct {
	// Action is retry, cancel, delete or run_now.
	Action string      `json:"action"`
	Filter *TaskFilter `json:"filter,omitempty"`
	IDs    []string    `json:"ids,omitempty"`
	// DryRun counts the tasks the action would look at, changing nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// TaskFilter selects tasks as a listing does. Since and Until are RFC 3339
// times bounding the creation time (at or after Since, before Until).
type TaskFilter struct {
	Queue  string   `json:"queue,omitempty"`
	Kind   string   `json:"kind,omitempty"`
	States []string `json:"states,omitempty"`
	Since  string   `json:"since,omitempty"`
	Until  string   `json:"until,omitempty"`
}

// BulkResult answers a bulk request: how many tasks the action looked at
// (matched) and how many it changed; changed is 0 on a dry run.
type BulkResult struct {
	Action  string `json:"action"`
	DryRun  bool   `json:"dry_run"`
	Matched int    `json:"matched"`
	Changed int    `json:"changed"`
}

// Worker types.
const (
	// WorkerNode is a process running Weft's engine: weft serve, weft
	// worker's host process, or a Go program with workers.
	WorkerNode = "node"
	// WorkerRemote is a worker that claims over the HTTP API.
	WorkerRemote = "remote"
)

// Worker is a node or a remote worker, as the registry records it.
type Worker struct {
	ID string `json:"id"`
	// Type is "node" or "remote".
	Type string `json:"type"`
	// Host is a node's host name, or the address a remote worker's claims
	// come from.
	Host string `json:"host"`
	// PID is a node's process id.
	PID int `json:"pid,omitempty"`
	// Queues are the queues it works.
	Queues []string `json:"queues"`
	// Kinds are the kinds it runs; absent when it takes every kind.
	Kinds []string `json:"kinds,omitempty"`
	// Labels are its worker labels; it claims the tasks whose
	// requirements they satisfy. Absent when it has none.
	Labels map[string]string `json:"labels,omitempty"`
	// Running counts the tasks it holds now.
	Running int `json:"running"`
	// Live is true when it was seen within the last two minutes, or holds
	// a task.
	Live bool `json:"live"`
	// StartedAt is when a node started, or a remote worker was first seen.
	StartedAt time.Time `json:"started_at"`
	// LastSeenAt is a node's latest heartbeat, or a remote worker's latest
	// recorded claim.
	LastSeenAt time.Time `json:"last_seen_at"`
}

// WorkerList lists nodes, then remote workers, each by id.
type WorkerList struct {
	Workers []Worker `json:"workers"`
}
