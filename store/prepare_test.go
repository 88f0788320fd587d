package store_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftworks/weft/store"
)

var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestPrepareRules(t *testing.T) {
	later := now.Add(48 * time.Hour)
	id := "0190a3c2-7b1e-7c3a-9d7e-3f5a2b1c4d5e"
	cases := []struct {
		name string
		task store.NewTask
		// field is the refused field, or "" when the task is accepted and
		// check holds for it.
		field string
		msg   string
		check func(store.NewTask) bool
	}{
		{name: "defaults", task: store.NewTask{Kind: "k"}, check: func(p store.NewTask) bool {
			_, err := uuid.Parse(p.ID)
			return err == nil && p.Queue == store.DefaultQueue && string(p.Args) == "{}" && p.RunAt.Equal(now) &&
				p.MaxAttempts == store.DefaultMaxAttempts && p.AttemptTimeout == 0 && p.Delay == 0 && p.Metadata == nil
		}},
		{name: "given id", task: store.NewTask{Kind: "k", ID: id}, check: func(p store.NewTask) bool { return p.ID == id }},
		{name: "bad id", task: store.NewTask{Kind: "k", ID: "not-a-uuid"}, field: "id"},
		{name: "no kind", task: store.NewTask{}, field: "kind"},
		{name: "bad kind", task: store.NewTask{Kind: "9lives"}, field: "kind"},
		{name: "bad queue", task: store.NewTask{Kind: "k", Queue: "a/b"}, field: "queue"},
		{name: "priority range", task: store.NewTask{Kind: "k", Priority: store.MaxPriority + 1}, field: "priority"},
		{name: "args not JSON", task: store.NewTask{Kind: "k", Args: json.RawMessage(`{"a":`)}, field: "args"},
		{name: "args NUL", task: store.NewTask{Kind: "k", Args: json.RawMessage(`"\u0000"`)}, field: "args"},
		{name: "args escaped backslash", task: store.NewTask{Kind: "k", Args: json.RawMessage(`"\\u0000"`)},
			check: func(p store.NewTask) bool { return string(p.Args) == `"\\u0000"` }},
		{name: "metadata null", task: store.NewTask{Kind: "k", Metadata: json.RawMessage(" null ")},
			check: func(p store.NewTask) bool { return p.Metadata == nil }},
		{name: "metadata array", task: store.NewTask{Kind: "k", Metadata: json.RawMessage(`[1]`)}, field: "metadata"},

		{name: "max_attempts 0 is the default", task: store.NewTask{Kind: "k", MaxAttempts: 0},
			check: func(p store.NewTask) bool { return p.MaxAttempts == store.DefaultMaxAttempts }},
		{name: "max_attempts 1", task: store.NewTask{Kind: "k", MaxAttempts: 1},
			check: func(p store.NewTask) bool { return p.MaxAttempts == 1 }},
		{name: "max_attempts at the limit", task: store.NewTask{Kind: "k", MaxAttempts: store.MaxAttemptsLimit},
			check: func(p store.NewTask) bool { return p.MaxAttempts == store.MaxAttemptsLimit }},
		{name: "max_attempts negative", task: store.NewTask{Kind: "k", MaxAttempts: -1}, field: "max_attempts", msg: "1 to 10000"},
		{name: "max_attempts over the limit", task: store.NewTask{Kind: "k", MaxAttempts: store.MaxAttemptsLimit + 1}, field: "max_attempts", msg: "1 to 10000"},

		{name: "timeout 0 is none", task: store.NewTask{Kind: "k", AttemptTimeout: 0},
			check: func(p store.NewTask) bool { return p.AttemptTimeout == 0 }},
		{name: "timeout", task: store.NewTask{Kind: "k", AttemptTimeout: time.Minute},
			check: func(p store.NewTask) bool { return p.AttemptTimeout == time.Minute }},
		{name: "timeout negative", task: store.NewTask{Kind: "k", AttemptTimeout: -time.Nanosecond}, field: "timeout", msg: "negative"},

		{name: "delay", task: store.NewTask{Kind: "k", Delay: time.Hour},
			check: func(p store.NewTask) bool { return p.RunAt.Equal(now.Add(time.Hour)) && p.Delay == 0 }},
		{name: "run_at", task: store.NewTask{Kind: "k", RunAt: later},
			check: func(p store.NewTask) bool { return p.RunAt.Equal(later) }},
		{name: "delay negative", task: store.NewTask{Kind: "k", Delay: -time.Second}, field: "delay", msg: "negative"},
		{name: "delay and run_at", task: store.NewTask{Kind: "k", Delay: time.Second, RunAt: later}, field: "delay", msg: "not both"},
		{name: "negative delay with run_at", task: store.NewTask{Kind: "k", Delay: -time.Second, RunAt: later}, field: "delay", msg: "negative"},

		{name: "unique key too long", task: store.NewTask{Kind: "k", UniqueKey: strings.Repeat("u", store.MaxUniqueKeyLength+1)}, field: "unique_key"},
		{name: "unique key NUL", task: store.NewTask{Kind: "k", UniqueKey: "a\x00"}, field: "unique_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := []store.NewTask{tc.task}
			b, err := store.Prepare(in, store.Limits{}, now)
			if tc.field != "" {
				var ve *store.ValidationError
				if !errors.As(err, &ve) || !errors.Is(err, store.ErrInvalid) || ve.Field != tc.field || ve.Index != -1 ||
					!strings.Contains(ve.Message, tc.msg) {
					t.Fatalf("err = %v, want a ValidationError on %q saying %q", err, tc.field, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Len() != 1 || !tc.check(b.Task(0)) {
				t.Fatalf("prepared %+v", b.Task(0))
			}
			if !reflect.DeepEqual(in[0], tc.task) {
				t.Fatalf("Prepare changed its input: %+v", in[0])
			}
		})
	}
}

func TestPrepareLimits(t *testing.T) {
	small := store.Limits{MaxArgsBytes: 8}
	for _, task := range []store.NewTask{
		{Kind: "k", Args: json.RawMessage(`"123456789"`)},
		{Kind: "k", Metadata: json.RawMessage(`{"a":12345}`)},
	} {
		if _, err := store.Prepare([]store.NewTask{task}, small, now); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%+v: err = %v, want over the limit", task, err)
		}
	}
	if _, err := store.Prepare([]store.NewTask{{Kind: "k", Args: json.RawMessage(`"1234"`)}}, small, now); err != nil {
		t.Errorf("within the limit: %v", err)
	}
}

func TestPrepareBatch(t *testing.T) {
	var ve *store.ValidationError
	_, err := store.Prepare(nil, store.Limits{}, now)
	if !errors.As(err, &ve) || ve.Field != "tasks" || ve.Index != -1 {
		t.Fatalf("empty batch: %v", err)
	}
	_, err = store.Prepare([]store.NewTask{{Kind: "a"}, {Kind: "b"}, {Kind: "c", Delay: -1}}, store.Limits{}, now)
	if !errors.As(err, &ve) || ve.Field != "delay" || ve.Index != 2 {
		t.Fatalf("bad third task: %v", err)
	}
	in := []store.NewTask{{Kind: "a"}, {Kind: "b", Delay: time.Minute}}
	b, err := store.Prepare(in, store.Limits{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != 2 || !b.Now().Equal(now) || b.Task(0).ID == b.Task(1).ID || !b.Task(1).RunAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("batch %+v %+v at %s", b.Task(0), b.Task(1), b.Now())
	}
	if in[0].ID != "" || in[1].RunAt != (time.Time{}) {
		t.Fatalf("Prepare filled its input in: %+v", in)
	}
}
