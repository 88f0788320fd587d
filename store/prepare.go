package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Defaults applied by Prepare.
const (
	DefaultQueue        = "default"
	DefaultMaxAttempts  = 25
	DefaultMaxArgsBytes = 1 << 20
	// MaxNameLength bounds kind and queue names.
	MaxNameLength = 128
	// MaxUniqueKeyLength bounds unique keys.
	MaxUniqueKeyLength = 512
	// MaxAttemptsLimit bounds MaxAttempts.
	MaxAttemptsLimit = 10000
	// MinPriority and MaxPriority bound Priority to what every backend
	// stores (a 32-bit integer).
	MinPriority = math.MinInt32
	MaxPriority = math.MaxInt32
)

// Limits bounds what Prepare accepts. The zero value means the defaults.
type Limits struct {
	// MaxArgsBytes bounds the encoded size of a task's args and, separately,
	// of its metadata. Default 1 MiB.
	MaxArgsBytes int
	// MaxFlowMembers bounds the members of one flow request. Default
	// DefaultMaxFlowMembers.
	MaxFlowMembers int
}

// ArgsLimit is the effective bound on args, metadata and progress data.
func (l Limits) ArgsLimit() int {
	if l.MaxArgsBytes > 0 {
		return l.MaxArgsBytes
	}
	return DefaultMaxArgsBytes
}

// ValidName reports whether s may name a kind or a queue: 1 to 128
// characters, starting with a letter, then letters, digits, '_', '-', '.'
// or ':'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':'):
		default:
			return false
		}
	}
	return true
}

// Batch is a validated batch with its defaults filled in: the only input a
// backend writes. Its fields are unexported so that only Prepare makes one,
// which keeps every write path behind the same rules.
type Batch struct {
	tasks []NewTask
	now   time.Time
	// flowID, keys and blocked are set for the members of a flow.
	flowID  string
	keys    []string
	blocked []bool
}

// FlowID is the flow the batch's tasks are members of, or "" for plain
// tasks.
func (b Batch) FlowID() string { return b.flowID }

// FlowKey is the i-th task's key in its flow.
func (b Batch) FlowKey(i int) string { return b.keys[i] }

// Blocked reports whether the i-th task starts blocked on its
// dependencies rather than pending.
func (b Batch) Blocked(i int) bool { return b.blocked != nil && b.blocked[i] }

// Len is the number of tasks in the batch.
func (b Batch) Len() int { return len(b.tasks) }

// Task returns the i-th task as Prepare completed it: ID, Queue, Args,
// RunAt and MaxAttempts are set, Delay is folded into RunAt, and Metadata
// is nil or a JSON object. It is a copy, so that a backend cannot undo
// what Prepare checked.
func (b Batch) Task(i int) NewTask { return b.tasks[i] }

// Now is the time the batch was prepared at: what Delay and a zero RunAt
// were resolved against, and what backends record as the creation time.
func (b Batch) Now() time.Time { return b.now }

// Prepare validates a batch and returns it completed, leaving tasks
// untouched: an id, the default queue, RunAt (now, or now plus Delay),
// MaxAttempts, empty args as {}. An empty batch is refused with the field
// "tasks"; otherwise the first problem found is returned as a
// *ValidationError naming the task (Index -1 in a batch of one) and the
// field, and the batch must be rejected whole.
func Prepare(tasks []NewTask, limits Limits, now time.Time) (Batch, error) {
	if len(tasks) == 0 {
		return Batch{}, &ValidationError{Index: -1, Field: "tasks", Message: "the batch is empty"}
	}
	// The batch is filled in on a copy: callers may reuse their slice, and
	// retry it, without seeing ids or defaults appear in it.
	b := Batch{tasks: slices.Clone(tasks), now: now}
	for i := range b.tasks {
		if err := prepareOne(&b.tasks[i], limits, now); err != nil {
			err.Index = i
			if len(tasks) == 1 {
				err.Index = -1
			}
			return Batch{}, err
		}
	}
	return b, nil
}

func prepareOne(t *NewTask, limits Limits, now time.Time) *ValidationError {
	bad := func(field, format string, args ...any) *ValidationError {
		return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if t.Kind == "" {
		return bad("kind", "must not be empty")
	}
	if !ValidName(t.Kind) {
		return bad("kind", "%q is not a valid name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", t.Kind, MaxNameLength)
	}
	if t.Queue == "" {
		t.Queue = DefaultQueue
	} else if !ValidName(t.Queue) {
		return bad("queue", "%q is not a valid name (1-%d characters: a letter, then letters, digits, '_', '-', '.', ':')", t.Queue, MaxNameLength)
	}
	if t.Priority < MinPriority || t.Priority > MaxPriority {
		return bad("priority", "%d is out of range (%d to %d)", t.Priority, MinPriority, MaxPriority)
	}
	if len(bytes.TrimSpace(t.Args)) == 0 {
		t.Args = json.RawMessage("{}")
	}
	if len(t.Args) > limits.ArgsLimit() {
		return bad("args", "%d bytes exceeds the limit of %d bytes", len(t.Args), limits.ArgsLimit())
	}
	if !json.Valid(t.Args) {
		return bad("args", "not valid JSON")
	}
	if msg := portableJSON(t.Args); msg != "" {
		return bad("args", "%s", msg)
	}
	md, verr := checkMetadata(t.Metadata, limits)
	if verr != nil {
		return verr
	}
	t.Metadata = md
	switch {
	case t.MaxAttempts == 0:
		t.MaxAttempts = DefaultMaxAttempts
	case t.MaxAttempts < 0 || t.MaxAttempts > MaxAttemptsLimit:
		return bad("max_attempts", "%d is out of range (1 to %d; 0 means the default, %d)", t.MaxAttempts, MaxAttemptsLimit, DefaultMaxAttempts)
	}
	if t.AttemptTimeout < 0 {
		return bad("timeout", "%s is negative", t.AttemptTimeout)
	}
	if len(t.UniqueKey) > MaxUniqueKeyLength {
		return bad("unique_key", "%d bytes exceeds the limit of %d", len(t.UniqueKey), MaxUniqueKeyLength)
	}
	if !utf8.ValidString(t.UniqueKey) || strings.ContainsRune(t.UniqueKey, 0) {
		return bad("unique_key", "must be UTF-8 text without NUL characters")
	}
	switch {
	case t.Delay < 0:
		return bad("delay", "%s is negative", t.Delay)
	case t.Delay > 0 && !t.RunAt.IsZero():
		return bad("delay", "give delay or run_at, not both")
	case t.Delay > 0:
		t.RunAt, t.Delay = now.Add(t.Delay), 0
	case t.RunAt.IsZero():
		t.RunAt = now
	}
	if verr := checkGate(t); verr != nil {
		return verr
	}
	if t.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return bad("id", "cannot generate: %v", err)
		}
		t.ID = id.String()
	} else if _, err := uuid.Parse(t.ID); err != nil {
		return bad("id", "%q is not a UUID", t.ID)
	}
	return nil
}

// portableJSON says why valid JSON could not be stored by every backend —
// PostgreSQL's jsonb refuses invalid UTF-8 and the \u0000 escape — or ""
// when it can. Checked here so that every backend accepts the same input.
func portableJSON(b []byte) string {
	if !utf8.Valid(b) {
		return "not valid UTF-8"
	}
	for rest, off := b, 0; ; {
		i := bytes.Index(rest, []byte(`\u0000`))
		if i < 0 {
			return ""
		}
		// An even number of backslashes before it means the escape is real,
		// not the text \u0000 after an escaped backslash.
		k := 0
		for j := off + i - 1; j >= 0 && b[j] == '\\'; j-- {
			k++
		}
		if k%2 == 0 {
			return "contains the NUL character (\\u0000), which cannot be stored"
		}
		off += i + 1
		rest = b[off:]
	}
}

// checkMetadata checks a metadata object within limits: nil for none
// (empty or null), the object otherwise.
func checkMetadata(md json.RawMessage, limits Limits) (json.RawMessage, *ValidationError) {
	bad := func(format string, args ...any) *ValidationError {
		return &ValidationError{Index: -1, Field: "metadata", Message: fmt.Sprintf(format, args...)}
	}
	if t := bytes.TrimSpace(md); len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if len(md) > limits.ArgsLimit() {
		return nil, bad("%d bytes exceeds the limit of %d bytes", len(md), limits.ArgsLimit())
	}
	if !isJSONObject(md) {
		return nil, bad("must be a JSON object")
	}
	if msg := portableJSON(md); msg != "" {
		return nil, bad("%s", msg)
	}
	return md, nil
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// CheckProgress validates the data of a progress event: JSON, within the
// args size limit.
func CheckProgress(data []byte, limits Limits) error {
	if len(data) > 0 && !json.Valid(data) {
		return &ValidationError{Index: -1, Field: "progress", Message: "not valid JSON"}
	}
	if limit := limits.ArgsLimit(); len(data) > limit {
		return &ValidationError{Index: -1, Field: "progress", Message: fmt.Sprintf("%d bytes exceeds the limit of %d bytes", len(data), limit)}
	}
	return nil
}

// SortClaimed puts claimed tasks in the order a claim promises: highest
// priority first, then earliest run_at, then oldest.
func SortClaimed(tasks []*Task) {
	sort.Slice(tasks, func(i, j int) bool {
		a, b := tasks[i], tasks[j]
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if !a.RunAt.Equal(b.RunAt) {
			return a.RunAt.Before(b.RunAt)
		}
		return a.ID < b.ID
	})
}
