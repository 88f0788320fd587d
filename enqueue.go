package weft

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/weftworks/weft/internal/tracing"
	"github.com/weftworks/weft/store"
)

// EnqueueOpts are the options of one task. Zero fields take the defaults
// from the args' own EnqueueOpts (see ArgsWithOpts), then Weft's; Delay and
// RunAt are taken together, so options that give either replace both
// defaults. The rules are the store's (store.NewTask), the same as over
// HTTP, and a refusal is a *ValidationError naming the field as the HTTP
// API does.
type EnqueueOpts struct {
	// Queue defaults to "default".
	Queue string
	// Priority: higher runs first within a queue. Default 0; it must fit
	// in 32 bits.
	Priority int
	// Delay runs the task this long from now. Zero means none; negative is
	// refused.
	Delay time.Duration
	// RunAt runs the task at this time; zero means now. Giving both Delay
	// and RunAt is refused (field "delay").
	RunAt time.Time
	// MaxAttempts is 1 to 10,000; zero means the default, 25.
	MaxAttempts int
	// Timeout bounds each attempt, overriding the worker's WithTimeout.
	// Zero means the task sets none; negative is refused.
	Timeout time.Duration
	// UniqueKey makes the enqueue idempotent while a task with the same
	// key is pending, running or completed: the existing task's id comes
	// back with Duplicate set.
	UniqueKey string
	// Metadata is stored with the task, encoded as a JSON object.
	Metadata map[string]any
	// Limits names the limits (Client.SetLimit) the task draws on, each
	// with the key it draws under: limit name → key, as
	// {"per-customer": "acme"}. The limits must exist (an unknown one is
	// refused, field "limits"). Layers merge limit by limit: these beat
	// the args' defaults (ArgsWithOpts), which beat the keys the kind
	// derives from the args (WithLimitKeys); an empty key takes the task
	// out of that limit.
	Limits map[string]string
	// Cost is the units the task takes from its limits' rates; zero
	// means 1. It needs Limits.
	Cost int
	// Requires lists the worker labels (Config.Labels) a worker needs to
	// claim the task: label → "value" (equal), ">=n" or "<=n" (numbers),
	// as {"gpu": "true", "mem": ">=64"}. Layers merge label by label; an
	// empty expression drops the label. A malformed expression is refused
	// (field "requires").
	Requires map[string]string
	// FairnessKey places the task in its queue's fair share (a tenant, a
	// customer): within one priority, claims go to keys in proportion to
	// their weights (Client.SetFairness), so that one key's backlog does
	// not starve the others.
	FairnessKey string
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
	tasks, err := c.cfg.Workers.newTasks(params)
	if err != nil {
		return nil, err
	}
	ctx, end := tracing.StartEnqueue(ctx, c.cfg.TracerProvider, tasks)
	res, err := c.st.Enqueue(ctx, tasks)
	end(err)
	return res, err
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
	tasks, err := c.cfg.Workers.newTasks(params)
	if err != nil {
		return nil, err
	}
	txe := c.st.TxEnqueuer()
	if txe == nil {
		return nil, fmt.Errorf("weft: %T: %w", tx, ErrTxUnsupported)
	}
	ctx, end := tracing.StartEnqueue(ctx, c.cfg.TracerProvider, tasks)
	res, err := txe.EnqueueTx(ctx, tx, tasks)
	end(err)
	return res, err
}

// newTasks translates params for the store, which validates them: only
// what the store cannot see (nil args, values JSON cannot encode, label
// requirements that do not parse) is refused here. The kinds registered
// in ws (nil for none) derive their tasks' limit keys.
func (ws *Workers) newTasks(params []EnqueueParams) ([]store.NewTask, error) {
	tasks := make([]store.NewTask, len(params))
	for i, p := range params {
		t, err := ws.newTask(p)
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

// newTask translates one task; ws (nil for none) derives its limit keys
// when it registered the kind with WithLimitKeys.
func (ws *Workers) newTask(p EnqueueParams) (store.NewTask, *ValidationError) {
	bad := func(field, msg string) *ValidationError { return &ValidationError{Field: field, Message: msg} }
	if p.Args == nil {
		return store.NewTask{}, bad("args", "must not be nil")
	}
	var o EnqueueOpts
	if d, ok := p.Args.(ArgsWithOpts); ok {
		o = d.EnqueueOpts()
	}
	if p.Opts != nil {
		o = mergeOpts(o, *p.Opts)
	}
	args, err := json.Marshal(p.Args)
	if err != nil {
		return store.NewTask{}, bad("args", "cannot encode as JSON: "+err.Error())
	}
	t := store.NewTask{
		Kind: p.Args.Kind(), Queue: o.Queue, Args: args, Priority: o.Priority, RunAt: o.RunAt, Delay: o.Delay,
		MaxAttempts: o.MaxAttempts, AttemptTimeout: o.Timeout, UniqueKey: o.UniqueKey,
		Cost: o.Cost, FairnessKey: o.FairnessKey,
	}
	limits := o.Limits
	if derive := ws.limitKeys(t.Kind); derive != nil {
		derived, err := derive(p.Args, args)
		if err != nil {
			return store.NewTask{}, bad("limits", err.Error())
		}
		limits = mergeKeys(derived, o.Limits)
	}
	t.LimitKeys = dropEmpty(limits)
	if t.Requires, err = requirements(o.Requires); err != nil {
		return store.NewTask{}, bad("requires", err.Error())
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

// mergeOpts lays the non-zero fields of top over base. Delay and RunAt say
// together when the task runs, so top's pair replaces base's whole: one
// layer giving both still reaches the store, which refuses it.
func mergeOpts(base, top EnqueueOpts) EnqueueOpts {
	if top.Queue != "" {
		base.Queue = top.Queue
	}
	if top.Priority != 0 {
		base.Priority = top.Priority
	}
	if top.Delay != 0 || !top.RunAt.IsZero() {
		base.Delay, base.RunAt = top.Delay, top.RunAt
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
	base.Limits = mergeKeys(base.Limits, top.Limits)
	if top.Cost != 0 {
		base.Cost = top.Cost
	}
	base.Requires = mergeKeys(base.Requires, top.Requires)
	if top.FairnessKey != "" {
		base.FairnessKey = top.FairnessKey
	}
	return base
}

// mergeKeys lays top's entries over base's, key by key, without changing
// either; an empty value in top is kept, so that it can still remove the
// key once every layer is merged (dropEmpty).
func mergeKeys(base, top map[string]string) map[string]string {
	if len(top) == 0 {
		return base
	}
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string, len(top))
	}
	maps.Copy(out, top)
	return out
}

// dropEmpty is m without its empty values; nil when nothing is left.
func dropEmpty(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if v == "" {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(m))
		}
		out[k] = v
	}
	return out
}

// requirements parses EnqueueOpts.Requires, in label order so that the
// stored task is the same whatever the map's order.
func requirements(exprs map[string]string) ([]store.Requirement, error) {
	var out []store.Requirement
	for _, label := range slices.Sorted(maps.Keys(exprs)) {
		if exprs[label] == "" {
			continue
		}
		r, err := store.ParseRequirement(label, exprs[label])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
