package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrLimitNotFound is returned for a limit name that is not defined.
var ErrLimitNotFound = errors.New("limit not found")

// ErrLimitReached is returned by an enqueue refused by a limit whose
// OnLimit is OnLimitReject; errors.As a *LimitReachedError names the
// limit and the key.
var ErrLimitReached = errors.New("limit reached")

// LimitReachedError says which limit and key refused an enqueue.
type LimitReachedError struct {
	Index int // the task's position in its batch, -1 for a batch of one
	Limit string
	Key   string
	InUse int
	Cap   int
}

func (e *LimitReachedError) Error() string {
	return fmt.Sprintf("limit %q is reached for key %q (%d of %d in use) and rejects new tasks", e.Limit, e.Key, e.InUse, e.Cap)
}

// Unwrap makes the error match ErrLimitReached.
func (e *LimitReachedError) Unwrap() error { return ErrLimitReached }

// OnLimit is what a limit does with a new task for a key that is at its
// concurrency cap.
type OnLimit string

// The strategies at the limit.
const (
	// OnLimitQueue (the default) keeps the task pending until a slot is
	// free.
	OnLimitQueue OnLimit = "queue"
	// OnLimitReject refuses the enqueue (ErrLimitReached, HTTP 409).
	OnLimitReject OnLimit = "reject"
	// OnLimitCancelInProgress asks the running tasks of the key to cancel:
	// the newest task wins.
	OnLimitCancelInProgress OnLimit = "cancel_in_progress"
	// OnLimitKeepLatest keeps at most one pending task per key: an older
	// pending one (not yet running) is cancelled when a new one arrives.
	OnLimitKeepLatest OnLimit = "keep_latest"
)

// Bounds on limits.
const (
	// MaxLimitKeyLength bounds a key a task names for a limit.
	MaxLimitKeyLength = 256
	// MaxTaskLimits bounds the limits one task draws on.
	MaxTaskLimits = 8
	// MaxLimitOverrides bounds a limit's per-key overrides.
	MaxLimitOverrides = 10000
	// MaxRequires bounds a task's label requirements.
	MaxRequires = 16
)

// Limit is a named limit, shared by every task that names it whatever its
// kind or queue. A task draws on it under a key (a customer, an API
// account): each key has its own counters. A limit may cap concurrency,
// rate, or both.
type Limit struct {
	Name string
	// Concurrency, when positive, caps the tasks of one key that hold a
	// lease at once; Overrides beat it for the keys they name (0 there
	// stops the key).
	Concurrency int
	Overrides   map[string]int
	// Rate, when positive, allows Rate units per Period for each key,
	// with bursts of up to Burst units (default 1: evenly spaced), by the
	// generic cell rate algorithm: one timestamp per key, exact at any
	// window.
	Rate   int
	Period time.Duration
	Burst  int
	// OnLimit is what a new task does when its key is at the concurrency
	// cap; default OnLimitQueue.
	OnLimit   OnLimit
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Cap is the concurrency cap for key: its override, else Concurrency;
// 0 with no concurrency cap means unlimited, which HasCap tells.
func (l Limit) Cap(key string) int {
	if n, ok := l.Overrides[key]; ok {
		return n
	}
	return l.Concurrency
}

// HasCap reports whether the limit caps concurrency for any key.
func (l Limit) HasCap() bool { return l.Concurrency > 0 || len(l.Overrides) > 0 }

// HasRate reports whether the limit caps the rate.
func (l Limit) HasRate() bool { return l.Rate > 0 }

// Interval is the rate's emission interval in microseconds: the time one
// unit takes to come back.
func (l Limit) Interval() int64 {
	if l.Rate <= 0 {
		return 0
	}
	return max(1, l.Period.Microseconds()/int64(l.Rate))
}

// PrepareLimit validates l and fills in its defaults (Burst 1 with a
// rate, OnLimit queue). Problems are *ValidationError with Index -1.
func PrepareLimit(l Limit) (Limit, error) {
	bad := func(field, format string, args ...any) error {
		return &ValidationError{Index: -1, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if !ValidName(l.Name) {
		return Limit{}, bad("name", "%q is not a valid name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", l.Name, MaxNameLength)
	}
	if l.Concurrency < 0 {
		return Limit{}, bad("concurrency", "%d is negative", l.Concurrency)
	}
	if len(l.Overrides) > MaxLimitOverrides {
		return Limit{}, bad("overrides", "%d keys exceed the limit of %d", len(l.Overrides), MaxLimitOverrides)
	}
	for _, k := range slices.Sorted(maps.Keys(l.Overrides)) {
		if err := checkLimitKey(k); err != "" {
			return Limit{}, bad("overrides", "key %q: %s", k, err)
		}
		if l.Overrides[k] < 0 {
			return Limit{}, bad("overrides", "key %q: %d is negative", k, l.Overrides[k])
		}
	}
	switch {
	case l.Rate < 0:
		return Limit{}, bad("rate", "%d is negative", l.Rate)
	case l.Rate > 0 && l.Period < time.Millisecond:
		return Limit{}, bad("period", "%s: a rate needs a period of at least 1ms", l.Period)
	case l.Rate > 0 && l.Period > 366*24*time.Hour:
		return Limit{}, bad("period", "%s exceeds 366 days", l.Period)
	case l.Rate == 0 && l.Period != 0:
		return Limit{}, bad("period", "given without a rate")
	case l.Burst < 0:
		return Limit{}, bad("burst", "%d is negative", l.Burst)
	case l.Rate == 0 && l.Burst != 0:
		return Limit{}, bad("burst", "given without a rate")
	case l.Rate > 0 && l.Burst == 0:
		l.Burst = 1
	}
	if l.Rate > 0 && l.Period.Microseconds()/int64(l.Rate) < 1 {
		return Limit{}, bad("rate", "%d per %s is more than one per microsecond", l.Rate, l.Period)
	}
	if !l.HasCap() && !l.HasRate() {
		return Limit{}, bad("concurrency", "a limit needs a concurrency cap, a rate, or both")
	}
	switch l.OnLimit {
	case "":
		l.OnLimit = OnLimitQueue
	case OnLimitQueue, OnLimitReject, OnLimitCancelInProgress, OnLimitKeepLatest:
	default:
		return Limit{}, bad("on_limit", "%q is not one of queue, reject, cancel_in_progress, keep_latest", l.OnLimit)
	}
	if l.OnLimit != OnLimitQueue && !l.HasCap() {
		return Limit{}, bad("on_limit", "%s needs a concurrency cap", l.OnLimit)
	}
	return l, nil
}

func checkLimitKey(k string) string {
	switch {
	case k == "":
		return "must not be empty"
	case len(k) > MaxLimitKeyLength:
		return fmt.Sprintf("%d bytes exceeds the limit of %d", len(k), MaxLimitKeyLength)
	case !utf8.ValidString(k) || strings.ContainsRune(k, 0) || strings.ContainsRune(k, limitKeySep):
		return "must be UTF-8 text without NUL or U+001F characters"
	}
	return ""
}

// limitKeySep joins a limit's name and a key into one string (LimitRef.ID).
const limitKeySep = '\x1f'

// LimitRef is one (limit, key) a task draws on.
type LimitRef struct {
	Limit string
	Key   string
}

// ID is the ref as one string, as backends index it.
func (r LimitRef) ID() string { return r.Limit + string(limitKeySep) + r.Key }

// ParseLimitRef is the inverse of LimitRef.ID.
func ParseLimitRef(id string) LimitRef {
	name, key, _ := strings.Cut(id, string(limitKeySep))
	return LimitRef{Limit: name, Key: key}
}

// Refs lists a task's limits in the one order every claim acquires them
// in (by limit name), so that claims cannot deadlock.
func Refs(limits map[string]string) []LimitRef {
	refs := make([]LimitRef, 0, len(limits))
	for _, name := range slices.Sorted(maps.Keys(limits)) {
		refs = append(refs, LimitRef{Limit: name, Key: limits[name]})
	}
	return refs
}

// Requirement is a label a worker must have to claim a task: Label equal
// to Value (Op "="), or, for numbers, at least (">=") or at most ("<=")
// Value.
type Requirement struct {
	Label string
	Op    string
	Value string
}

// ParseRequirement reads the requirement for label from expr: "v" (equal),
// ">=n" or "<=n" (a number).
func ParseRequirement(label, expr string) (Requirement, error) {
	r := Requirement{Label: label, Op: "=", Value: expr}
	for _, op := range []string{">=", "<="} {
		if v, ok := strings.CutPrefix(expr, op); ok {
			r.Op, r.Value = op, strings.TrimSpace(v)
			if _, err := strconv.ParseFloat(r.Value, 64); err != nil {
				return Requirement{}, fmt.Errorf("label %q: %q after %s is not a number", label, r.Value, op)
			}
		}
	}
	if !validLabel(label) {
		return Requirement{}, fmt.Errorf("label %q is not a valid name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", label, MaxNameLength)
	}
	return r, nil
}

// String is the requirement's expression as ParseRequirement reads it.
func (r Requirement) String() string {
	if r.Op == "=" {
		return r.Value
	}
	return r.Op + r.Value
}

// Satisfied reports whether a worker with labels may claim a task with
// the requirement.
func (r Requirement) Satisfied(labels map[string]string) bool {
	v, ok := labels[r.Label]
	if !ok {
		return false
	}
	if r.Op == "=" {
		return v == r.Value
	}
	have, err1 := strconv.ParseFloat(v, 64)
	want, err2 := strconv.ParseFloat(r.Value, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	if r.Op == ">=" {
		return have >= want
	}
	return have <= want
}

func validLabel(s string) bool { return ValidName(s) }

// CheckLabels validates a worker's labels.
func CheckLabels(labels map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !validLabel(k) {
			return &ValidationError{Index: -1, Field: "labels", Message: fmt.Sprintf("%q is not a valid label name", k)}
		}
		if len(labels[k]) > MaxLimitKeyLength || !utf8.ValidString(labels[k]) {
			return &ValidationError{Index: -1, Field: "labels", Message: fmt.Sprintf("label %q: the value must be UTF-8 of at most %d bytes", k, MaxLimitKeyLength)}
		}
	}
	return nil
}

// BlockedReason says why a pending task is not being claimed.
type BlockedReason struct {
	// Reason is "limit" (Limit and Key at their concurrency cap), "rate"
	// (Limit and Key out of units until Until), "no_matching_worker" or
	// "queue_paused".
	Reason string    `json:"reason"`
	Limit  string    `json:"limit,omitempty"`
	Key    string    `json:"key,omitempty"`
	Until  time.Time `json:"until,omitzero"`
}

// The reasons of BlockedReason.
const (
	BlockedLimit            = "limit"
	BlockedRate             = "rate"
	BlockedNoMatchingWorker = "no_matching_worker"
	BlockedQueuePaused      = "queue_paused"
)

// LimitKeyState is one key's counters under a limit.
type LimitKeyState struct {
	Key string
	// InUse is the number of tasks of the key holding a lease.
	InUse int
	// Cap is the key's concurrency cap (0 without one).
	Cap int
	// Waiting is the number of pending tasks set aside for the key until
	// it has room.
	Waiting int
	// NextAllowedAt is when the key's rate allows one more unit; zero
	// when it allows one now.
	NextAllowedAt time.Time
}

// LimitInfo is a limit with its totals over its keys.
type LimitInfo struct {
	Limit
	InUse   int
	Waiting int
	Keys    int
}

// LimitDrift is what a reconciliation of limit counters corrected: there
// is none unless a counter was changed outside the claim, finish and
// rescue transactions.
type LimitDrift struct {
	// Keys lists the keys whose in-use count was wrong.
	Keys []LimitRef
	// StaleHolds counts slots held by tasks no longer running.
	StaleHolds int
	// Released counts set-aside tasks made claimable again.
	Released int
}

// Limiter is the role that keeps limits, fairness weights and the
// counters claims consult.
type Limiter interface {
	// SetLimit creates or replaces a limit; it applies from the next
	// claim on every node. Tasks set aside under the old values are
	// reconsidered.
	SetLimit(ctx context.Context, l Limit) (Limit, error)
	// GetLimit returns a limit with its totals (ErrLimitNotFound).
	GetLimit(ctx context.Context, name string) (LimitInfo, error)
	// ListLimits returns every limit, by name.
	ListLimits(ctx context.Context) ([]LimitInfo, error)
	// LimitKeyStates returns a limit's keys in use or waiting, busiest
	// first, a page of at most limit after cursor ("" for the first); the
	// next cursor is "" at the end.
	LimitKeyStates(ctx context.Context, name string, cursor string, limit int) ([]LimitKeyState, string, error)
	// DeleteLimit removes a limit (ErrLimitNotFound): tasks naming it no
	// longer wait for it.
	DeleteLimit(ctx context.Context, name string) error
	// SetFairness sets the weights of a queue's fairness keys (default 1;
	// a weight of 0 removes an override).
	SetFairness(ctx context.Context, queue string, weights map[string]int) error
	// Fairness returns a queue's weight overrides.
	Fairness(ctx context.Context, queue string) (map[string]int, error)
	// ReconcileLimits recomputes the counters from the task rows,
	// corrects them and says what it corrected; it also makes claimable
	// the set-aside tasks whose key has room.
	ReconcileLimits(ctx context.Context) (LimitDrift, error)
}

// Admission is the claim-time state of one (limit, key), read under the
// claim's lock.
type Admission struct {
	Limit Limit
	// Defined is false when the task names a limit that was deleted: it
	// then does not hold the task back.
	Defined bool
	InUse   int
	// TAT is the rate's theoretical arrival time, in microseconds.
	TAT int64
}

// Admit decides whether a task drawing cost units on refs (in Refs order)
// may be claimed at nowUS, given the keys' state, and if so takes its
// slots and units from state. It returns nil when admitted, otherwise the
// reason, naming the first ref that refused. State is left unchanged when
// the task is refused, so a task needing several limits takes all or
// none.
func Admit(state map[LimitRef]*Admission, refs []LimitRef, cost int, nowUS int64) *BlockedReason {
	if cost <= 0 {
		cost = 1
	}
	for _, r := range refs {
		a := state[r]
		if a == nil || !a.Defined {
			continue
		}
		if a.Limit.HasCap() && a.InUse >= a.Limit.Cap(r.Key) {
			return &BlockedReason{Reason: BlockedLimit, Limit: r.Limit, Key: r.Key}
		}
		if a.Limit.HasRate() {
			t := a.Limit.Interval()
			tat := max(a.TAT, nowUS) + int64(cost)*t
			if tat-nowUS > int64(a.Limit.Burst)*t {
				return &BlockedReason{Reason: BlockedRate, Limit: r.Limit, Key: r.Key,
					Until: time.UnixMicro(tat - int64(a.Limit.Burst)*t).UTC()}
			}
		}
	}
	for _, r := range refs {
		a := state[r]
		if a == nil || !a.Defined {
			continue
		}
		if a.Limit.HasCap() {
			a.InUse++
		}
		if a.Limit.HasRate() {
			a.TAT = max(a.TAT, nowUS) + int64(cost)*a.Limit.Interval()
		}
	}
	return nil
}

// HoldTAT is the theoretical arrival time that holds a rate-limited key
// back until untilUS for every task: its next unit is allowed then and
// not before.
func HoldTAT(l Limit, tat, untilUS int64) int64 {
	if !l.HasRate() {
		return tat
	}
	return max(tat, untilUS+int64(l.Burst-1)*l.Interval())
}

// NextAllowed is when a key with theoretical arrival time tat allows one
// more unit (zero when it allows one at nowUS).
func NextAllowed(l Limit, tat, nowUS int64) time.Time {
	if !l.HasRate() {
		return time.Time{}
	}
	at := tat + l.Interval() - int64(l.Burst)*l.Interval()
	if at <= nowUS {
		return time.Time{}
	}
	return time.UnixMicro(at).UTC()
}

// FairnessQuantum is the virtual time one task of weight 1 advances its
// fairness key by.
const FairnessQuantum = 1_000_000

// FairStart is a task's start tag in its queue's fair ordering: it starts
// at its key's last finish tag, but never before the queue's virtual time
// v, so that a key that was idle banks no credit. It returns the start
// tag and the key's new finish tag for a task of cost units at weight.
func FairStart(v, lastFinish int64, weight, cost int) (start, finish int64) {
	if weight <= 0 {
		weight = 1
	}
	if cost <= 0 {
		cost = 1
	}
	start = max(v, lastFinish)
	step := int64(FairnessQuantum) * int64(cost) / int64(weight)
	if step < 1 {
		step = 1
	}
	if start > math.MaxInt64-step {
		return start, math.MaxInt64
	}
	return start, start + step
}

// MaxCost bounds a task's Cost.
const MaxCost = 1_000_000

// checkGate validates the fields of t that decide how it is claimed.
func checkGate(t *NewTask) *ValidationError {
	bad := func(field, format string, args ...any) *ValidationError {
		return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if len(t.LimitKeys) > MaxTaskLimits {
		return bad("limits", "%d limits exceed the limit of %d per task", len(t.LimitKeys), MaxTaskLimits)
	}
	for _, name := range slices.Sorted(maps.Keys(t.LimitKeys)) {
		if !ValidName(name) {
			return bad("limits", "%q is not a valid limit name", name)
		}
		if msg := checkLimitKey(t.LimitKeys[name]); msg != "" {
			return bad("limits", "the key for %q %s", name, msg)
		}
	}
	if t.Cost < 0 || t.Cost > MaxCost {
		return bad("cost", "%d is out of range (0 to %d; 0 means 1)", t.Cost, MaxCost)
	}
	if t.Cost > 0 && len(t.LimitKeys) == 0 {
		return bad("cost", "given without limits to draw on")
	}
	if len(t.Requires) > MaxRequires {
		return bad("requires", "%d requirements exceed the limit of %d", len(t.Requires), MaxRequires)
	}
	seen := map[string]bool{}
	for _, r := range t.Requires {
		if seen[r.Label] {
			return bad("requires", "label %q is required twice", r.Label)
		}
		seen[r.Label] = true
		if _, err := ParseRequirement(r.Label, r.String()); err != nil || (r.Op != "=" && r.Op != ">=" && r.Op != "<=") {
			if err == nil {
				err = fmt.Errorf("label %q: %q is not one of =, >=, <=", r.Label, r.Op)
			}
			return bad("requires", "%s", err.Error())
		}
	}
	if t.FairnessKey != "" {
		if msg := checkLimitKey(t.FairnessKey); msg != "" {
			return bad("fairness_key", "%s", msg)
		}
	}
	return nil
}

// Gate is how a task with limits, requirements or a fairness key is
// claimed, as backends store it (one JSON column, NULL for other tasks,
// whose claims never read it).
type Gate struct {
	Limits   map[string]string `json:"limits,omitempty"`
	Cost     int               `json:"cost,omitempty"`
	Requires []GateRequirement `json:"requires,omitempty"`
	Fair     string            `json:"fair,omitempty"`
}

// GateRequirement is a Requirement as stored.
type GateRequirement struct {
	Label string `json:"l"`
	Op    string `json:"o"`
	Value string `json:"v"`
	// Num is Value as a number, for >= and <= (claims compare it in SQL,
	// so it is written even when zero).
	Num float64 `json:"n"`
}

// GateOf is t's gate, or nil when t is claimed like any other task.
func GateOf(t NewTask) *Gate {
	if len(t.LimitKeys) == 0 && len(t.Requires) == 0 && t.FairnessKey == "" {
		return nil
	}
	g := &Gate{Limits: t.LimitKeys, Cost: t.Cost, Fair: t.FairnessKey}
	for _, r := range t.Requires {
		gr := GateRequirement{Label: r.Label, Op: r.Op, Value: r.Value}
		if r.Op != "=" {
			gr.Num, _ = strconv.ParseFloat(r.Value, 64)
		}
		g.Requires = append(g.Requires, gr)
	}
	return g
}

// Apply copies the gate's fields onto t.
func (g *Gate) Apply(t *Task) {
	if g == nil {
		return
	}
	t.LimitKeys, t.Cost, t.FairnessKey = g.Limits, g.Cost, g.Fair
	for _, r := range g.Requires {
		t.Requires = append(t.Requires, Requirement{Label: r.Label, Op: r.Op, Value: r.Value})
	}
}
