package weft

import (
	"context"
	"fmt"

	"github.com/weftworks/weft/store"
)

// Limits, fairness and routing: named limits shared by every task that
// names them (concurrency and rate per key), fair shares of a queue among
// its fairness keys, and worker labels that tasks may require. All of it
// is enforced by the store inside each claim, on every node.

type (
	// Limit is a named limit: a concurrency cap per key (with per-key
	// overrides), a rate per key (Rate units per Period, bursts of
	// Burst), or both, and what a new task does when its key is at the
	// cap (OnLimit).
	Limit = store.Limit
	// LimitInfo is a limit with its totals over its keys: slots in use,
	// tasks waiting, keys.
	LimitInfo = store.LimitInfo
	// LimitKeyState is one key's counters under a limit.
	LimitKeyState = store.LimitKeyState
	// OnLimit is what a limit does with a new task for a key at its cap.
	OnLimit = store.OnLimit
	// BlockedReason says why a pending task is not being claimed
	// (TaskRecord.Blocked).
	BlockedReason = store.BlockedReason
	// Requirement is one worker label a task requires
	// (TaskRecord.Requires).
	Requirement = store.Requirement
)

// The strategies at the limit (Limit.OnLimit).
const (
	// OnLimitQueue, the default, keeps the task pending until its key
	// has a free slot.
	OnLimitQueue = store.OnLimitQueue
	// OnLimitReject refuses the enqueue with a *LimitReachedError
	// (ErrLimitReached).
	OnLimitReject = store.OnLimitReject
	// OnLimitCancelInProgress asks the key's running tasks to cancel: the
	// newest task wins.
	OnLimitCancelInProgress = store.OnLimitCancelInProgress
	// OnLimitKeepLatest keeps at most one pending task per key: an older
	// pending one is cancelled when a new one arrives (a debounce).
	OnLimitKeepLatest = store.OnLimitKeepLatest
)

// The reasons of BlockedReason.Reason.
const (
	// BlockedLimit: the key of Limit is at its concurrency cap.
	BlockedLimit = store.BlockedLimit
	// BlockedRate: the key of Limit is out of units until Until.
	BlockedRate = store.BlockedRate
	// BlockedNoMatchingWorker: no live worker has the labels the task
	// requires.
	BlockedNoMatchingWorker = store.BlockedNoMatchingWorker
	// BlockedQueuePaused: the task's queue is paused.
	BlockedQueuePaused = store.BlockedQueuePaused
)

// SetLimit creates or replaces the limit l.Name, and returns it as stored
// (with its defaults: Burst 1 with a rate, OnLimit queue). It applies from
// the next claim on every node; tasks waiting under the old values are
// reconsidered. Invalid values are a *ValidationError naming the field
// (name, concurrency, overrides, rate, period, burst, on_limit).
func (c *Client) SetLimit(ctx context.Context, l Limit) (Limit, error) {
	l, err := store.PrepareLimit(l)
	if err != nil {
		return Limit{}, err
	}
	return c.st.SetLimit(ctx, l)
}

// Limit reads a limit with its totals; ErrLimitNotFound when there is
// none.
func (c *Client) Limit(ctx context.Context, name string) (LimitInfo, error) {
	return c.st.GetLimit(ctx, name)
}

// Limits lists every limit with its totals, by name.
func (c *Client) Limits(ctx context.Context) ([]LimitInfo, error) { return c.st.ListLimits(ctx) }

// MaxLimitKeysPage bounds a page of LimitKeys.
const MaxLimitKeysPage = 1000

// LimitKeys reads a page of at most limit of a limit's keys that hold
// slots or have tasks waiting, those with the most waiting first, after
// cursor ("" for the first page). The cursor it returns reads the next
// page; it is "" after the last.
func (c *Client) LimitKeys(ctx context.Context, name, cursor string, limit int) ([]LimitKeyState, string, error) {
	if limit <= 0 || limit > MaxLimitKeysPage {
		return nil, "", &ValidationError{Index: -1, Field: "limit", Message: fmt.Sprintf("%d is out of range (1 to %d)", limit, MaxLimitKeysPage)}
	}
	return c.st.LimitKeyStates(ctx, name, cursor, limit)
}

// DeleteLimit removes a limit; ErrLimitNotFound when there is none. Tasks
// that name it no longer wait for it.
func (c *Client) DeleteLimit(ctx context.Context, name string) error {
	return c.st.DeleteLimit(ctx, name)
}

// SetFairness sets the weights of a queue's fairness keys
// (EnqueueOpts.FairnessKey): within one priority, claims go to the keys
// with pending tasks in proportion to their weights. A key not named
// weighs 1; a weight of 0 puts a key back to 1.
func (c *Client) SetFairness(ctx context.Context, queue string, weights map[string]int) error {
	return c.st.SetFairness(ctx, queue, weights)
}

// Fairness reads a queue's fairness weights other than the default, 1.
func (c *Client) Fairness(ctx context.Context, queue string) (map[string]int, error) {
	return c.st.Fairness(ctx, queue)
}
