package weftest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// ErrMismatch: the tasks enqueued are not the ones expected. The error's
// text says what was expected and lists what was enqueued.
var ErrMismatch = errors.New("weftest: enqueued tasks do not match")

// Match narrows which tasks count, beyond their kind and args. Zero
// fields match any value.
type Match struct {
	// AnyArgs counts tasks of the kind whatever their args.
	AnyArgs     bool
	Queue       string
	Priority    int
	MaxAttempts int
	UniqueKey   string
	// RunAt is when the task is due, to the microsecond: with the Env's
	// clock a delay is exact (Env.Now plus the delay).
	RunAt time.Time
	// Metadata matches when each of its keys is in the task's metadata
	// with an equal value (compared as JSON).
	Metadata map[string]any
	// State is the task's state now (pending until a test runs it).
	State weft.TaskState
	// Count, when positive, is exactly how many tasks must match; zero
	// means at least one.
	Count int
}

// maxListed bounds the tasks a mismatch lists.
const maxListed = 50

// Enqueued returns the tasks of args' kind, with args equal to args
// (compared as JSON) unless m says AnyArgs, that match m, oldest first. When
// their number is not what m asks for (at least one, or exactly m.Count),
// the error is ErrMismatch listing every task enqueued.
func (e *Env) Enqueued(ctx context.Context, args weft.TaskArgs, m *Match) ([]*weft.TaskRecord, error) {
	var mm Match
	if m != nil {
		mm = *m
	}
	if mm.Count < 0 {
		return nil, fmt.Errorf("weftest: Match.Count %d is negative", mm.Count)
	}
	want := mm.Count
	if want == 0 {
		want = atLeastOne
	}
	return e.enqueued(ctx, args, mm, want)
}

// atLeastOne is enqueued's want for "one or more".
const atLeastOne = -1

// enqueued is Enqueued expecting exactly want tasks, or at least one.
func (e *Env) enqueued(ctx context.Context, args weft.TaskArgs, m Match, want int) ([]*weft.TaskRecord, error) {
	if args == nil {
		return nil, errors.New("weftest: args are nil: pass a value of the args type (with Match.AnyArgs to match any args)")
	}
	wantArgs, err := normalize(args)
	if err != nil {
		return nil, fmt.Errorf("weftest: encode args: %w", err)
	}
	wantMeta, err := normalize(m.Metadata)
	if err != nil {
		return nil, fmt.Errorf("weftest: encode Match.Metadata: %w", err)
	}
	tasks, err := e.list(ctx, store.ListParams{Kind: args.Kind()})
	if err != nil {
		return nil, err
	}
	var found []*weft.TaskRecord
	for _, t := range tasks {
		if m.matches(t, wantArgs, wantMeta) {
			found = append(found, t)
		}
	}
	if (want == atLeastOne && len(found) > 0) || len(found) == want {
		return found, nil
	}
	all, err := e.list(ctx, store.ListParams{})
	if err != nil {
		return nil, err
	}
	count := fmt.Sprintf("exactly %d tasks", want)
	switch want {
	case atLeastOne:
		count = "a task"
	case 0:
		count = "no task"
	case 1:
		count = "exactly 1 task"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%v: want %s of kind %s%s, found %d\n", ErrMismatch, count, args.Kind(), m.describe(args), len(found))
	fmt.Fprintf(&b, "enqueued (%d):", len(all))
	for i, t := range all {
		if i == maxListed {
			fmt.Fprintf(&b, "\n  ... and %d more", len(all)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n  %s", describe(t))
	}
	return found, &mismatchError{msg: b.String()}
}

// mismatchError is ErrMismatch with what was expected and what was found.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string        { return e.msg }
func (e *mismatchError) Is(target error) bool { return target == ErrMismatch }

// RequireEnqueued fails t unless Enqueued finds the tasks m asks for, and
// returns them.
func RequireEnqueued(t testing.TB, e *Env, args weft.TaskArgs, m *Match) []*weft.TaskRecord {
	t.Helper()
	tasks, err := e.Enqueued(context.Background(), args, m)
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

// RequireNotEnqueued fails t if a task of args' kind and args matches m
// (whose Count is ignored), listing what was enqueued.
func RequireNotEnqueued(t testing.TB, e *Env, args weft.TaskArgs, m *Match) {
	t.Helper()
	var mm Match
	if m != nil {
		mm = *m
	}
	if _, err := e.enqueued(context.Background(), args, mm, 0); err != nil {
		t.Fatal(err)
	}
}

// matches reports whether t matches m, given args and metadata as
// normalize made them.
func (m Match) matches(t *weft.TaskRecord, args, meta any) bool {
	switch {
	case m.Queue != "" && t.Queue != m.Queue,
		m.Priority != 0 && t.Priority != m.Priority,
		m.MaxAttempts != 0 && t.MaxAttempts != m.MaxAttempts,
		m.UniqueKey != "" && t.UniqueKey != m.UniqueKey,
		!m.RunAt.IsZero() && !t.RunAt.Equal(m.RunAt.Truncate(time.Microsecond)),
		m.State != "" && t.State != m.State:
		return false
	}
	if !m.AnyArgs {
		got, err := normalizeJSON(t.Args)
		if err != nil || !reflect.DeepEqual(got, args) {
			return false
		}
	}
	if len(m.Metadata) > 0 {
		got, err := normalizeJSON(t.Metadata)
		gotMap, ok := got.(map[string]any)
		if err != nil || !ok {
			return false
		}
		for k, v := range meta.(map[string]any) {
			if !reflect.DeepEqual(gotMap[k], v) {
				return false
			}
		}
	}
	return true
}

// describe says what m asks for beyond the kind.
func (m Match) describe(args weft.TaskArgs) string {
	var parts []string
	if !m.AnyArgs {
		b, _ := json.Marshal(args)
		parts = append(parts, "args "+string(b))
	}
	add := func(set bool, format string, v any) {
		if set {
			parts = append(parts, fmt.Sprintf(format, v))
		}
	}
	add(m.Queue != "", "queue %s", m.Queue)
	add(m.Priority != 0, "priority %d", m.Priority)
	add(m.MaxAttempts != 0, "max_attempts %d", m.MaxAttempts)
	add(m.UniqueKey != "", "unique_key %q", m.UniqueKey)
	add(!m.RunAt.IsZero(), "run_at %s", m.RunAt.UTC().Format(time.RFC3339Nano))
	if len(m.Metadata) > 0 {
		b, _ := json.Marshal(m.Metadata)
		parts = append(parts, "metadata with "+string(b))
	}
	add(m.State != "", "state %s", m.State)
	if len(parts) == 0 {
		return ""
	}
	return " with " + strings.Join(parts, ", ")
}

// describe is one line about a task for a mismatch's list.
func describe(t *weft.TaskRecord) string {
	s := fmt.Sprintf("%s queue=%s state=%s priority=%d max_attempts=%d run_at=%s args=%s",
		t.Kind, t.Queue, t.State, t.Priority, t.MaxAttempts, t.RunAt.UTC().Format(time.RFC3339Nano), compactJSON(t.Args))
	if t.UniqueKey != "" {
		s += fmt.Sprintf(" unique_key=%q", t.UniqueKey)
	}
	if len(t.Metadata) > 0 {
		s += " metadata=" + compactJSON(t.Metadata)
	}
	return s
}

// compactJSON is raw with its object keys sorted and no insignificant
// space, so that the same value reads the same from either backend
// (PostgreSQL's JSONB reorders keys); raw as it is when it is not JSON.
func compactJSON(raw json.RawMessage) string {
	v, err := normalizeJSON(raw)
	if err != nil {
		return string(raw)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(b)
}

// normalize encodes v as JSON and decodes it back, so that it compares
// equal to the same JSON read from a store.
func normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return normalizeJSON(b)
}

func normalizeJSON(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
