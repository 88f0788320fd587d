package weft

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/weftworks/weft/store"
)

// EnqueueOpts are the options of one task. Zero fields take the defaults
// from the args' own EnqueueOpts (see ArgsWithOpts), then Weft's.
type EnqueueOpts struct {
	// Queue defaults to "default".
	Queue string
	// Priority: higher runs first within a queue. Default 0.
	Priority int
	// Delay runs the task this long from now; must not be negative.
	Delay time.Duration
	// RunAt runs the task at this time; exclusive with Delay.
	RunAt time.Time
	// MaxAttempts defaults to 25.
	MaxAttempts int
	// Timeout bounds each attempt (overriding the worker's WithTimeout).
	Timeout time.Duration
	// UniqueKey makes the enqueue idempotent while a task with the same
	// key is pending, running or completed: the existing task's id comes
	// back with Duplicate set.
	UniqueKey string
	// Metadata is stored with the task, encoded as a JSON object.
	Metadata map[string]any
}

// ArgsWithOpts is implemented by args types that carry default options.
type ArgsWithOpts interface {
	EnqueueOpts() EnqueueOpts
}

// EnqueueResult is the outcome of enqueueing one task.
type EnqueueResult = store.EnqueueResult

// EnqueueParams is one task of a batch.
type EnqueueParams struct {
	Args TaskArgs
	Opts *EnqueueOpts
}

// Enqueue stores one task durably; it is acknowledged once committed.
func (c *Client) Enqueue(ctx context.Context, args TaskArgs, opts *EnqueueOpts) (EnqueueResult, error) {
	res, err := c.EnqueueMany(ctx, []EnqueueParams{{Args: args, Opts: opts}})
	if err != nil {
		return EnqueueResult{}, err
	}
	return res[0], nil
}

// EnqueueMany stores a batch atomically: every task, or none when any is
// invalid (the error is a *ValidationError naming it).
func (c *Client) EnqueueMany(ctx context.Context, params []EnqueueParams) ([]EnqueueResult, error) {
	tasks, err := newTasks(params)
	if err != nil {
		return nil, err
	}
	return c.st.Enqueue(ctx, tasks)
}

// EnqueueTx stores one task inside the caller's transaction tx — for the
// SQLite backend a *sql.Tx on the same database file; for PostgreSQL a
// pgx.Tx, or a *sql.Tx opened through pgx's database/sql driver. The task
// exists if and only if tx commits, and workers notice the commit within
// milliseconds. ErrTxUnsupported when the backend cannot use a TTx.
func EnqueueTx[TTx any](ctx context.Context, c *Client, tx TTx, args TaskArgs, opts *EnqueueOpts) (EnqueueResult, error) {
	res, err := EnqueueManyTx(ctx, c, tx, []EnqueueParams{{Args: args, Opts: opts}})
	if err != nil {
		return EnqueueResult{}, err
	}
	return res[0], nil
}

// EnqueueManyTx stores a batch inside the caller's transaction tx.
func EnqueueManyTx[TTx any](ctx context.Context, c *Client, tx TTx, params []EnqueueParams) ([]EnqueueResult, error) {
	tasks, err := newTasks(params)
	if err != nil {
		return nil, err
	}
	txe := c.st.TxEnqueuer()
	if txe == nil {
		return nil, fmt.Errorf("weft: %T: %w", tx, ErrTxUnsupported)
	}
	return txe.EnqueueTx(ctx, tx, tasks)
}

func newTasks(params []EnqueueParams) ([]store.NewTask, error) {
	if len(params) == 0 {
		return nil, &ValidationError{Index: -1, Field: "tasks", Message: "the batch is empty"}
	}
	tasks := make([]store.NewTask, len(params))
	now := time.Now()
	for i, p := range params {
		t, err := newTask(p, now)
		if err != nil {
			err.Index = i
			if len(params) == 1 {
				err.Index = -1
			}
			return nil, err
		}
		tasks[i] = t
	}
	return tasks, nil
}

func newTask(p EnqueueParams, now time.Time) (store.NewTask, *ValidationError) {
	bad := func(field, msg string) *ValidationError { return &ValidationError{Field: field, Message: msg} }
	if p.Args == nil {
		return store.NewTask{}, bad("args", "must not be nil")
	}
	var o EnqueueOpts
	if d, ok := p.Args.(ArgsWithOpts); ok {
		o = d.EnqueueOpts()
	}
	for _, layer := range []*EnqueueOpts{&o, p.Opts} {
		if layer == nil {
			continue
		}
		if layer.Delay < 0 {
			return store.NewTask{}, bad("delay", fmt.Sprintf("%s is negative", layer.Delay))
		}
		if layer.Delay > 0 && !layer.RunAt.IsZero() {
			return store.NewTask{}, bad("delay", "give either delay or run_at, not both")
		}
	}
	if p.Opts != nil {
		o = mergeOpts(o, *p.Opts)
	}
	if o.Timeout < 0 {
		return store.NewTask{}, bad("timeout", fmt.Sprintf("%s is negative", o.Timeout))
	}
	args, err := json.Marshal(p.Args)
	if err != nil {
		return store.NewTask{}, bad("args", "cannot encode as JSON: "+err.Error())
	}
	t := store.NewTask{
		Kind: p.Args.Kind(), Queue: o.Queue, Args: args, Priority: o.Priority, RunAt: o.RunAt,
		MaxAttempts: o.MaxAttempts, AttemptTimeout: o.Timeout, UniqueKey: o.UniqueKey,
	}
	if o.Delay > 0 {
		t.RunAt = now.Add(o.Delay)
	}
	if len(o.Metadata) > 0 {
		md, err := json.Marshal(o.Metadata)
		if err != nil {
			return store.NewTask{}, bad("metadata", "cannot encode as JSON: "+err.Error())
		}
		t.Metadata = md
	}
	return t, nil
}

// mergeOpts lays the non-zero fields of top over base.
func mergeOpts(base, top EnqueueOpts) EnqueueOpts {
	if top.Queue != "" {
		base.Queue = top.Queue
	}
	if top.Priority != 0 {
		base.Priority = top.Priority
	}
	if top.Delay != 0 {
		base.Delay, base.RunAt = top.Delay, time.Time{}
	}
	if !top.RunAt.IsZero() {
		base.RunAt, base.Delay = top.RunAt, 0
	}
	if top.MaxAttempts != 0 {
		base.MaxAttempts = top.MaxAttempts
	}
	if top.Timeout != 0 {
		base.Timeout = top.Timeout
	}
	if top.UniqueKey != "" {
		base.UniqueKey = top.UniqueKey
	}
	if top.Metadata != nil {
		base.Metadata = top.Metadata
	}
	return base
}
