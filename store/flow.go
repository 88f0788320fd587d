package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Join is the condition over a flow member's parents' final outcomes that
// lets it run.
type Join string

// The join conditions. Only final outcomes count: a parent that is retried
// is not yet final.
const (
	// JoinAllSucceeded runs the member when every parent completed; one
	// failed, cancelled or skipped parent skips it. The default.
	JoinAllSucceeded Join = "all_succeeded"
	// JoinAnySucceeded runs it when one parent completed; it is skipped
	// when none can.
	JoinAnySucceeded Join = "any_succeeded"
	// JoinQuorum runs it when Quorum parents completed; it is skipped when
	// too few can.
	JoinQuorum Join = "quorum"
	// JoinAllDone runs it once every parent is final, whatever the
	// outcomes: a finalizer.
	JoinAllDone Join = "all_done"
	// JoinNoneSucceeded runs it only when every parent failed, was
	// cancelled or was skipped: compensation. One completed parent skips
	// it.
	JoinNoneSucceeded Join = "none_succeeded"
)

// Joins lists the join conditions.
func Joins() []Join {
	return []Join{JoinAllSucceeded, JoinAnySucceeded, JoinQuorum, JoinAllDone, JoinNoneSucceeded}
}

// tolerant reports whether the join lets a member run after a parent
// failed: such a member that completes absorbs its parents' failures, so
// they do not fail the flow.
func (j Join) tolerant() bool { return j != JoinAllSucceeded }

// FlowState is the state of a flow as a whole.
type FlowState string

// The flow states.
const (
	// FlowRunning: some member is not final.
	FlowRunning FlowState = "running"
	// FlowSucceeded: every member is final, and every failure was absorbed
	// by a finalizer or compensation member that completed.
	FlowSucceeded FlowState = "succeeded"
	// FlowFailed: every member is final, and a failure was not absorbed.
	FlowFailed FlowState = "failed"
	// FlowCancelled: the flow was cancelled; every member is final.
	FlowCancelled FlowState = "cancelled"
)

// FlowStates lists the flow states.
func FlowStates() []FlowState {
	return []FlowState{FlowRunning, FlowSucceeded, FlowFailed, FlowCancelled}
}

// Valid reports whether s is a flow state.
func (s FlowState) Valid() bool { return slices.Contains(FlowStates(), s) }

// Dependency forms in NewFlowMember.DependsOn besides a member's key.
const (
	// GroupSuffix after a key ("split/*") depends on that member and on
	// every member it adds to the flow while it runs (and those add), so a
	// fan-in sees a dynamic fan-out whole.
	GroupSuffix = "/*"
	// AllMembers ("*") depends on every other member of the flow that
	// does not itself depend on AllMembers, including those added later:
	// a batch's completion callback.
	AllMembers = "*"
)

// Reasons a member was skipped or cancelled by its flow, as its skipped or
// cancelled event and FlowMember.Reason record them.
const (
	// ReasonDependencyFailed and the like: the parent named with the
	// reason made the member's join condition impossible.
	ReasonDependencyFailed    = "dependency_failed"
	ReasonDependencyCancelled = "dependency_cancelled"
	ReasonDependencySkipped   = "dependency_skipped"
	ReasonDependencySucceeded = "dependency_succeeded"
	// ReasonJoinMet: the member only fed a child whose any_succeeded or
	// quorum condition was met without it, so it was cancelled.
	ReasonJoinMet = "join_met"
	// ReasonFlowCancelled: the flow was cancelled.
	ReasonFlowCancelled = "flow_cancelled"
)

// Flow events, written to members' logs.
const (
	// EventUnblocked: a member's join condition held; it became pending.
	EventUnblocked EventType = "unblocked"
	// EventSkipped: a member's join condition can no longer hold.
	EventSkipped EventType = "skipped"
	// EventReopened: a flow retry made a skipped or cancelled member wait
	// on its dependencies again.
	EventReopened EventType = "reopened"
)

// DefaultMaxFlowMembers bounds the members of one flow request.
const DefaultMaxFlowMembers = 10000

// NewFlowMember is one member of a flow to submit: a full task with a key
// unique in the flow and its dependencies.
type NewFlowMember struct {
	// Key names the member in its flow: 1 to 128 characters, as ValidName.
	Key  string
	Task NewTask
	// DependsOn names the member's parents by key, "key/*" for a member
	// and all it adds (GroupSuffix), or "*" (AllMembers).
	DependsOn []string
	// Join is the condition over the parents; empty means all_succeeded.
	// A member without parents must leave it empty.
	Join Join
	// Quorum is the number of parents that must complete, for JoinQuorum
	// only: 1 to the number of parents.
	Quorum int
	// LetRun keeps the other parents running once an any_succeeded or
	// quorum condition is met; by default those that feed only this
	// member are cancelled.
	LetRun bool
}

// NewFlow is a flow to submit atomically.
type NewFlow struct {
	// ID is assigned (a UUIDv7) when empty; otherwise it must be a UUID.
	ID string
	// Name is free text for people, at most 256 bytes.
	Name     string
	Metadata json.RawMessage
	Members  []NewFlowMember
}

// FlowResult is what submitting a flow made.
type FlowResult struct {
	ID string
	// Tasks maps each member's key to its task id.
	Tasks map[string]string
}

// FlowCounts counts a flow's members by state, exact at every commit.
type FlowCounts struct {
	Total int64 `json:"total"`
	// Blocked members wait on their dependencies.
	Blocked int64 `json:"blocked"`
	// Active members are pending, running or waiting.
	Active    int64 `json:"active"`
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
	Skipped   int64 `json:"skipped"`
}

// Done is the number of final members.
func (c FlowCounts) Done() int64 { return c.Completed + c.Failed + c.Cancelled + c.Skipped }

// Flow is a stored flow.
type Flow struct {
	ID       string
	Name     string
	State    FlowState
	Metadata json.RawMessage
	Counts   FlowCounts
	// CancelRequested is set once the flow is cancelled, before its
	// running members have stopped.
	CancelRequested bool
	CreatedAt       time.Time
	FinalizedAt     time.Time
	// Rate is the recent rate at which members finished, per second, and
	// ETA the time the rest will take at that rate; both zero until a few
	// members are done.
	Rate float64
	ETA  time.Duration
}

// FlowMember is a member as a flow's listing shows it.
type FlowMember struct {
	Key    string
	TaskID string
	Kind   string
	Queue  string
	State  State
	Join   Join
	Quorum int
	LetRun bool
	// DependsOn lists the keys of the member's parents.
	DependsOn []string
	// AddedBy is the key of the member that added this one while it ran,
	// or "".
	AddedBy string
	// Reason and ReasonKey say why the flow skipped or cancelled the
	// member, and which parent made its condition impossible.
	Reason    string
	ReasonKey string
}

// ParentOutcome is a parent's final outcome, as its child reads it.
type ParentOutcome struct {
	Key    string
	TaskID string
	State  State
	Result json.RawMessage
	Errors []AttemptError
}

// FlowListParams filters and pages a listing of flows, in id (creation)
// order; After is the last id of the previous page.
type FlowListParams struct {
	States []FlowState
	After  string
	Limit  int
}

// Flows stores flows: sets of tasks with dependencies between them.
type Flows interface {
	// EnqueueFlow stores a flow and its members atomically: members
	// without parents are pending, the others blocked. The flow is checked
	// by PrepareFlow first. A member whose unique key another task holds
	// refuses the whole flow with ErrConflict.
	EnqueueFlow(ctx context.Context, f NewFlow) (FlowResult, error)
	// Flow reads a flow; ErrFlowNotFound when there is none.
	Flow(ctx context.Context, id string) (*Flow, error)
	// FlowMembers lists a flow's members in the order they were added.
	FlowMembers(ctx context.Context, id string) ([]FlowMember, error)
	// ListFlows lists flows in id order.
	ListFlows(ctx context.Context, p FlowListParams) ([]*Flow, error)
	// FlowEvents reads the events of a flow's members with Seq > after,
	// oldest first.
	FlowEvents(ctx context.Context, id string, after int64, limit int) ([]Event, error)
	// CancelFlow cancels a flow in one transaction: its pending, blocked
	// and waiting members are cancelled, running ones asked to stop. A
	// cancelled flow may be cancelled again; a succeeded or failed one
	// yields ErrAlreadyFinished with the flow.
	CancelFlow(ctx context.Context, id string) (*Flow, error)
	// RetryFlow makes the failed and cancelled members of a flow pending
	// again and reopens those skipped or cancelled because of them;
	// completed members keep their results. ErrConflict, with the flow,
	// when no member needs it.
	RetryFlow(ctx context.Context, id string) (*Flow, error)
	// AddMembers adds members to the flow of a running member, under its
	// lease: they may depend on it, on each other and on other members,
	// and members depending on "key/*" of the adder wait for them too.
	AddMembers(ctx context.Context, taskID string, epoch int64, members []NewFlowMember) (FlowResult, error)
	// Parents reads the final outcomes of a member's parents.
	Parents(ctx context.Context, taskID string) ([]ParentOutcome, error)
}

// FlowMemberPrep is one member of a prepared flow.
type FlowMemberPrep struct {
	Key string
	// Parents are indexes into FlowBatch.Members for parents in the batch,
	// and ExternalParents keys of existing members (AddMembers only).
	Parents         []int
	ExternalParents []string
	// Groups are parents given as "key/*": each is also in Parents or
	// ExternalParents, and members the group's owner adds join them.
	Groups []string
	// All is true for a member depending on "*".
	All    bool
	Join   Join
	Quorum int
	LetRun bool
}

// FlowBatch is a validated flow: the tasks (with their defaults, as
// Prepare completes them) and each member's dependencies.
type FlowBatch struct {
	ID       string
	Name     string
	Metadata json.RawMessage
	Tasks    Batch
	Members  []FlowMemberPrep
}

// PrepareFlow validates a flow and completes it as Prepare completes
// tasks. Errors are *ValidationError naming the field as a JSON path
// (tasks[3].depends_on[1]); a flow of more than limits' member bound wraps
// ErrTooLarge as well.
func PrepareFlow(f NewFlow, limits Limits, now time.Time) (FlowBatch, error) {
	fb := FlowBatch{ID: f.ID, Name: f.Name}
	if fb.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return FlowBatch{}, fmt.Errorf("flow id: %w", err)
		}
		fb.ID = id.String()
	} else if _, err := uuid.Parse(fb.ID); err != nil {
		return FlowBatch{}, &ValidationError{Index: -1, Field: "id", Message: fmt.Sprintf("%q is not a UUID", fb.ID)}
	}
	if len(f.Name) > 256 {
		return FlowBatch{}, &ValidationError{Index: -1, Field: "name", Message: fmt.Sprintf("%d bytes exceeds the limit of 256", len(f.Name))}
	}
	md, verr := checkMetadata(f.Metadata, limits)
	if verr != nil {
		return FlowBatch{}, verr
	}
	fb.Metadata = md
	members, tasks, err := prepareMembers(f.Members, fb.ID, nil, limits, now)
	if err != nil {
		return FlowBatch{}, err
	}
	fb.Members, fb.Tasks = members, tasks
	return fb, nil
}

// PrepareAdded validates members that a running member adds to its flow
// flowID. existing holds the keys already in the flow.
func PrepareAdded(members []NewFlowMember, flowID string, existing map[string]bool, limits Limits, now time.Time) ([]FlowMemberPrep, Batch, error) {
	return prepareMembers(members, flowID, existing, limits, now)
}

// prepareMembers checks keys, dependencies and joins, then the tasks.
// existing is nil for a new flow.
func prepareMembers(members []NewFlowMember, flowID string, existing map[string]bool, limits Limits, now time.Time) ([]FlowMemberPrep, Batch, error) {
	bad := func(field, format string, a ...any) error {
		return &ValidationError{Index: -1, Field: field, Message: fmt.Sprintf(format, a...)}
	}
	if len(members) == 0 {
		return nil, Batch{}, bad("tasks", "a flow needs at least one task")
	}
	if n := limits.flowLimit(); len(members) > n {
		return nil, Batch{}, &ValidationError{Index: -1, Field: "tasks", Message: fmt.Sprintf("%d tasks exceeds the limit of %d per request", len(members), n), TooLarge: true}
	}
	index := make(map[string]int, len(members))
	for i, m := range members {
		field := fmt.Sprintf("tasks[%d].key", i)
		switch {
		case m.Key == "":
			return nil, Batch{}, bad(field, "must not be empty")
		case !ValidName(m.Key):
			return nil, Batch{}, bad(field, "%q is not a valid key (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", m.Key, MaxNameLength)
		}
		if j, dup := index[m.Key]; dup {
			return nil, Batch{}, bad(field, "%q is also the key of tasks[%d]", m.Key, j)
		}
		if _, dup := existing[m.Key]; dup {
			return nil, Batch{}, bad(field, "%q is already a member of the flow", m.Key)
		}
		index[m.Key] = i
	}
	out := make([]FlowMemberPrep, len(members))
	for i, m := range members {
		p := FlowMemberPrep{Key: m.Key, Join: m.Join, Quorum: m.Quorum, LetRun: m.LetRun}
		seen := map[string]bool{}
		for d, dep := range m.DependsOn {
			field := fmt.Sprintf("tasks[%d].depends_on[%d]", i, d)
			if dep == AllMembers {
				if existing != nil {
					return nil, Batch{}, bad(field, `"*" is only allowed when the flow is submitted`)
				}
				p.All = true
				continue
			}
			key, group := strings.CutSuffix(dep, GroupSuffix)
			if seen[key] {
				return nil, Batch{}, bad(field, "%q is listed twice", key)
			}
			seen[key] = true
			if key == m.Key {
				return nil, Batch{}, bad(field, "a task cannot depend on itself")
			}
			if j, ok := index[key]; ok {
				p.Parents = append(p.Parents, j)
			} else if _, ok := existing[key]; ok {
				p.ExternalParents = append(p.ExternalParents, key)
			} else {
				return nil, Batch{}, bad(field, "%q is not the key of a task in the flow", key)
			}
			if group {
				p.Groups = append(p.Groups, key)
			}
		}
		out[i] = p
	}
	// "*" depends on every member that does not itself depend on "*".
	for i := range out {
		if !out[i].All {
			continue
		}
		if len(out[i].Parents) > 0 || len(out[i].ExternalParents) > 0 {
			return nil, Batch{}, bad(fmt.Sprintf("tasks[%d].depends_on", i), `"*" already depends on every other task: list nothing else`)
		}
		for j := range out {
			if !out[j].All {
				out[i].Parents = append(out[i].Parents, j)
			}
		}
	}
	for i := range out {
		p := &out[i]
		n := len(p.Parents) + len(p.ExternalParents)
		if p.All && n == 0 {
			return nil, Batch{}, bad(fmt.Sprintf("tasks[%d].depends_on", i), `"*" needs at least one task that does not depend on "*"`)
		}
		if err := checkJoin(p, n, i); err != nil {
			return nil, Batch{}, err
		}
	}
	if cycle := findCycle(out); cycle != nil {
		keys := make([]string, len(cycle))
		for k, i := range cycle {
			keys[k] = out[i].Key
		}
		return nil, Batch{}, bad(fmt.Sprintf("tasks[%d].depends_on", cycle[0]), "dependency cycle: %s", strings.Join(keys, " -> "))
	}
	tasks := make([]NewTask, len(members))
	for i, m := range members {
		tasks[i] = m.Task
	}
	b, err := Prepare(tasks, limits, now)
	if err != nil {
		if ve, ok := err.(*ValidationError); ok {
			if ve.Index == -1 && len(tasks) == 1 {
				ve.Index = 0
			}
			return nil, Batch{}, &ValidationError{Index: -1, Field: fmt.Sprintf("tasks[%d].%s", ve.Index, ve.Field), Message: ve.Message}
		}
		return nil, Batch{}, err
	}
	b.flowID = flowID
	b.keys = make([]string, len(out))
	b.blocked = make([]bool, len(out))
	for i, m := range out {
		b.keys[i] = m.Key
		b.blocked[i] = len(m.Parents)+len(m.ExternalParents) > 0
	}
	return out, b, nil
}

// checkJoin checks a member's join against its number of parents n and
// fills in the default.
func checkJoin(p *FlowMemberPrep, n, i int) error {
	bad := func(field, format string, a ...any) error {
		return &ValidationError{Index: -1, Field: fmt.Sprintf("tasks[%d].%s", i, field), Message: fmt.Sprintf(format, a...)}
	}
	if n == 0 {
		if p.Join != "" {
			return bad("join", "a task without depends_on has no join condition")
		}
		if p.Quorum != 0 {
			return bad("quorum", "a task without depends_on has no quorum")
		}
		return nil
	}
	if p.Join == "" {
		p.Join = JoinAllSucceeded
	}
	if !slices.Contains(Joins(), p.Join) {
		names := make([]string, 0, 5)
		for _, j := range Joins() {
			names = append(names, string(j))
		}
		return bad("join", "%q is not one of %s", p.Join, strings.Join(names, ", "))
	}
	if p.Join == JoinQuorum {
		if p.Quorum < 1 || p.Quorum > n {
			return bad("quorum", "%d is out of range (1 to the %d tasks it depends on)", p.Quorum, n)
		}
	} else if p.Quorum != 0 {
		return bad("quorum", "only a quorum join takes a quorum")
	}
	if p.LetRun && p.Join != JoinAnySucceeded && p.Join != JoinQuorum {
		return bad("let_run", "only any_succeeded and quorum joins cancel parents, so only they take let_run")
	}
	return nil
}

// findCycle returns the indexes of members on a dependency cycle, in
// dependency order and starting and ending with the same member, or nil.
func findCycle(members []FlowMemberPrep) []int {
	const (
		unseen = iota
		onPath
		done
	)
	mark := make([]int, len(members))
	var path []int
	var visit func(i int) []int
	visit = func(i int) []int {
		mark[i] = onPath
		path = append(path, i)
		for _, p := range members[i].Parents {
			switch mark[p] {
			case onPath:
				// path runs from p along "depends on" edges to i, and i
				// depends on p: the cycle closes there.
				return append(slices.Clone(path[slices.Index(path, p):]), p)
			case unseen:
				if c := visit(p); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = done
		return nil
	}
	for i := range members {
		if mark[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

func (l Limits) flowLimit() int {
	if l.MaxFlowMembers > 0 {
		return l.MaxFlowMembers
	}
	return DefaultMaxFlowMembers
}

// JoinCounts are a blocked member's counters over its parents' final
// outcomes.
type JoinCounts struct {
	Parents   int
	Succeeded int
	// Failed counts failed and cancelled parents.
	Failed  int
	Skipped int
}

// Verdict is what a join condition says about its counters.
type Verdict int

// The verdicts.
const (
	Undecided Verdict = iota
	Satisfied
	Impossible
)

// Decide applies a join condition to counters.
func (j Join) Decide(quorum int, c JoinCounts) Verdict {
	bad := c.Failed + c.Skipped
	switch j {
	case JoinAnySucceeded:
		quorum = 1
	case JoinQuorum:
	case JoinAllDone:
		if c.Succeeded+bad == c.Parents {
			return Satisfied
		}
		return Undecided
	case JoinNoneSucceeded:
		switch {
		case c.Succeeded > 0:
			return Impossible
		case bad == c.Parents:
			return Satisfied
		}
		return Undecided
	default:
		quorum = c.Parents
	}
	switch {
	case c.Succeeded >= quorum:
		return Satisfied
	case bad > c.Parents-quorum:
		return Impossible
	}
	return Undecided
}

// Count adds a parent's final state to the counters.
func (c *JoinCounts) Count(s State, n int) {
	switch s {
	case StateCompleted:
		c.Succeeded += n
	case StateFailed, StateCancelled:
		c.Failed += n
	case StateSkipped:
		c.Skipped += n
	}
}

// SkipReason is the reason a member is skipped when its parent's final
// state made its join impossible.
func SkipReason(parent State) string {
	switch parent {
	case StateCompleted:
		return ReasonDependencySucceeded
	case StateCancelled:
		return ReasonDependencyCancelled
	case StateSkipped:
		return ReasonDependencySkipped
	}
	return ReasonDependencyFailed
}

// CountFlowState adds n members entering state s (n < 0: leaving it) to
// the counts. Pending, running and waiting are Active.
func (c *FlowCounts) CountFlowState(s State, n int64) {
	switch s {
	case StateBlocked:
		c.Blocked += n
	case StateCompleted:
		c.Completed += n
	case StateFailed:
		c.Failed += n
	case StateCancelled:
		c.Cancelled += n
	case StateSkipped:
		c.Skipped += n
	default:
		c.Active += n
	}
}

// A flow's rate is counted in windows of RateWindow: the members finished
// in the current window, and the rate of the previous one. Backends keep
// the three numbers with plain arithmetic in the statement that moves the
// counts (RateWindow rolls the window once a finish comes after it
// ended), so no read precedes the write.
const (
	// RateWindow is the length of a rate window.
	RateWindow = 30 * time.Second
	// etaAfter is how many members must be done before an ETA is shown.
	etaAfter = 3
)

// FlowRate is a flow's completion-rate state as backends store it.
type FlowRate struct {
	// WindowStart is when the current window began (zero before the first
	// member finished) and WindowDone how many finished since.
	WindowStart time.Time
	WindowDone  int64
	// PrevRate is the previous window's rate, per second.
	PrevRate float64
}

// Estimate fills in f.Rate and f.ETA at now: the current window's count,
// topped up with the previous window's rate for the part of a full window
// not yet observed, so a young window does not read as a stall or a burst.
func (r FlowRate) Estimate(f *Flow, now time.Time) {
	done := f.Counts.Done()
	if done < etaAfter || r.WindowStart.IsZero() || f.State != FlowRunning {
		return
	}
	w := RateWindow.Seconds()
	elapsed := max(now.Sub(r.WindowStart).Seconds(), 1)
	switch {
	case elapsed < w && r.PrevRate > 0:
		f.Rate = (float64(r.WindowDone) + r.PrevRate*(w-elapsed)) / w
	default:
		f.Rate = float64(r.WindowDone) / elapsed
	}
	if f.Rate > 0 {
		left := float64(f.Counts.Total - done)
		f.ETA = time.Duration(left / f.Rate * float64(time.Second)).Round(time.Second)
	}
}

// FinalFlowState says how a flow ends once every member is final:
// cancelled when it was cancelled, failed when a failure was not absorbed
// (unabsorbed > 0), succeeded otherwise.
func FinalFlowState(cancelRequested bool, unabsorbed int) FlowState {
	switch {
	case cancelRequested:
		return FlowCancelled
	case unabsorbed > 0:
		return FlowFailed
	}
	return FlowSucceeded
}

// TolerantJoins lists the joins whose completed member absorbs its
// parents' failures, for backends' statements.
func TolerantJoins() []Join {
	var out []Join
	for _, j := range Joins() {
		if j.tolerant() {
			out = append(out, j)
		}
	}
	return out
}

// ReopenMember is a flow member as a retry of its flow reads it.
type ReopenMember struct {
	State State
	Join  Join
	// Quorum and Parents (task ids) are the member's join.
	Quorum  int
	Parents []string
	// Reason is why the flow skipped or cancelled it, if it did.
	Reason string
}

// Reopened is one member a retry moves: to pending or blocked, with its
// counters over its parents recomputed.
type Reopened struct {
	TaskID string
	To     State
	Counts JoinCounts
}

// PlanReopen decides what a retry of a flow does. members maps task ids
// to members, children task ids to the ids of their children. roots are
// the members retried (nil: every failed or cancelled member, except those
// cancelled because a join was met without them); each must be failed,
// cancelled or skipped. The skipped and cancelled members downstream of
// the roots are reopened with them. A reopened member is pending when its
// join holds over its parents' states after the retry, blocked while it
// may still, and stays as it is when it cannot. ErrConflict when nothing
// is to be reopened.
func PlanReopen(members map[string]ReopenMember, children map[string][]string, roots []string) ([]Reopened, error) {
	if roots == nil {
		for id, m := range members {
			if (m.State == StateFailed || m.State == StateCancelled) && m.Reason != ReasonJoinMet {
				roots = append(roots, id)
			}
		}
		if len(roots) == 0 {
			return nil, fmt.Errorf("no member failed or was cancelled: %w", ErrConflict)
		}
	}
	open := map[string]bool{}
	queue := slices.Clone(roots)
	for _, id := range roots {
		m, ok := members[id]
		if !ok {
			return nil, fmt.Errorf("task %s: %w", id, ErrNotFound)
		}
		if _, _, retryable, _ := m.State.info(); !retryable {
			return nil, fmt.Errorf("task %s is %s, not failed, cancelled or skipped: %w", id, m.State, ErrConflict)
		}
		open[id] = true
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, c := range children[id] {
			if s := members[c].State; !open[c] && (s == StateSkipped || s == StateCancelled) {
				open[c] = true
				queue = append(queue, c)
			}
		}
	}
	// Decide parents before children, so a reopened member that stays
	// skipped counts as final for those below it.
	after := map[string]State{}
	var plan []Reopened
	var decide func(id string)
	decide = func(id string) {
		if _, done := after[id]; done {
			return
		}
		m := members[id]
		after[id] = m.State
		if !open[id] {
			return
		}
		to := StatePending
		var c JoinCounts
		if len(m.Parents) > 0 {
			c.Parents = len(m.Parents)
			for _, p := range m.Parents {
				decide(p)
				if s := after[p]; s.Terminal() {
					c.Count(s, 1)
				}
			}
			switch m.Join.Decide(m.Quorum, c) {
			case Undecided:
				to = StateBlocked
			case Impossible:
				return
			}
		}
		after[id] = to
		plan = append(plan, Reopened{TaskID: id, To: to, Counts: c})
	}
	for _, id := range slices.Sorted(maps.Keys(open)) {
		decide(id)
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("no member can run again: %w", ErrConflict)
	}
	slices.SortFunc(plan, func(a, b Reopened) int { return strings.Compare(a.TaskID, b.TaskID) })
	return plan, nil
}

// FlowTasks maps a flow's member keys to the task ids its insert made. A
// member whose unique key another task holds refuses the flow: a member
// is a step of this flow, not a task to share with others.
func FlowTasks(fb FlowBatch, res []EnqueueResult) (FlowResult, error) {
	out := FlowResult{ID: fb.ID, Tasks: make(map[string]string, len(res))}
	for i, r := range res {
		if r.Duplicate {
			return FlowResult{}, fmt.Errorf("tasks[%d] (%s): task %s already holds the unique key %q: %w",
				i, fb.Members[i].Key, r.ID, fb.Tasks.Task(i).UniqueKey, ErrConflict)
		}
		out.Tasks[fb.Members[i].Key] = r.ID
	}
	return out, nil
}
