package store

import "strings"

// State is the lifecycle state of a task. A task is stored in exactly one
// state at a time.
type State string

// The states of a task. Pending tasks are ready once their RunAt has passed.
const (
	StatePending State = "pending"
	// StateBlocked: the task waits on something other than time before it
	// may run — its dependencies in a flow, a concurrency limit or a
	// budget. It holds no lease.
	StateBlocked State = "blocked"
	StateRunning State = "running"
	// StateWaiting: the task suspended itself on a waitpoint until a
	// signal (or its timeout) arrives. It holds no lease and no slot.
	StateWaiting   State = "waiting"
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	// StateSkipped: terminal; the condition the task waited on can never
	// hold (a dependency failed), so it never ran.
	StateSkipped State = "skipped"
)

// stateInfo is everything the rest of the code asks of a state; it is the
// one place that lists them.
var stateInfo = []struct {
	state    State
	terminal bool
	// cancellable: Cancel finalizes a task in this state at once (a
	// running task is cancelled cooperatively instead).
	cancellable bool
	// retryable: Retry makes a task in this state pending again.
	retryable bool
	// holdsKey: a task in this state holds its unique key, so no other
	// task with the key can be enqueued; failed, cancelled and skipped
	// tasks give it up so the work can be submitted again.
	holdsKey bool
}{
	{StatePending, false, true, false, true},
	{StateBlocked, false, true, false, true},
	{StateRunning, false, false, false, true},
	{StateWaiting, false, true, false, true},
	{StateCompleted, true, false, false, true},
	{StateFailed, true, false, true, false},
	{StateCancelled, true, false, true, false},
	{StateSkipped, true, false, true, false},
}

// States lists every state in lifecycle order.
func States() []State {
	out := make([]State, len(stateInfo))
	for i, s := range stateInfo {
		out[i] = s.state
	}
	return out
}

// TerminalStates lists the states no task leaves on its own.
func TerminalStates() []State { return statesWhere(func(terminal, _ bool) bool { return terminal }) }

// KeyHoldingStates lists the states in which a task holds its unique key.
// The backends' unique indexes are partial indexes over exactly these
// states (their migrations and a test keep the two equal).
func KeyHoldingStates() []State { return statesWhere(func(_, holdsKey bool) bool { return holdsKey }) }

// statesWhere lists, in lifecycle order, the states whose properties
// satisfy keep.
func statesWhere(keep func(terminal, holdsKey bool) bool) []State {
	var out []State
	for _, s := range stateInfo {
		if keep(s.terminal, s.holdsKey) {
			out = append(out, s.state)
		}
	}
	return out
}

func (s State) info() (terminal, cancellable, retryable, ok bool) {
	for _, i := range stateInfo {
		if i.state == s {
			return i.terminal, i.cancellable, i.retryable, true
		}
	}
	return false, false, false, false
}

// Terminal reports whether no further transition can happen from s (short of
// an explicit retry by an operator).
func (s State) Terminal() bool {
	t, _, _, _ := s.info()
	return t
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	_, _, _, ok := s.info()
	return ok
}

// StateNames joins the names of states with sep, for messages ("one of
// pending, running, ...") and help texts.
func StateNames(states []State, sep string) string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	return strings.Join(names, sep)
}

// SQLOneOf renders "column is one of states" as an SQL condition of
// equalities joined by OR, "(state = 'a' OR state = 'b')": SQLite
// evaluates such a chain with plain comparisons, where an IN list of more
// than two constants costs an ephemeral index per statement. A query must
// spell a partial index's condition the same way for SQLite to use the
// index.
func SQLOneOf(column string, states []State) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, s := range states {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(column + " = '" + string(s) + "'")
	}
	b.WriteByte(')')
	return b.String()
}

// SQLList renders states as an SQL list of string literals, "('a', 'b')",
// so that backends' statements are generated from this one list. State
// names are fixed identifiers, never input, so quoting them is safe.
func SQLList(states []State) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, s := range states {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("'" + string(s) + "'")
	}
	b.WriteByte(')')
	return b.String()
}
