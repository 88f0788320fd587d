package engine

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

func TestLogOutcome(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	task := &store.Task{ID: "t1", Kind: "mail", Queue: "default", Attempt: 2}
	began := time.Now()
	now := began.Add(1500 * time.Millisecond)
	boom := &store.AttemptError{Attempt: 2, Error: "smtp: refused"}
	LogOutcome(log, task, store.Outcome{TaskID: "t1", State: store.StateFailed, Error: boom}, store.FinishResult{State: store.StateFailed}, began, now)
	LogOutcome(log, task, store.Outcome{TaskID: "t1", State: store.StatePending, Event: store.EventRetryScheduled, RunAt: now.Add(time.Minute), Error: boom},
		store.FinishResult{State: store.StatePending}, began, now)
	// A snooze ends nothing: not logged.
	LogOutcome(log, task, store.Outcome{TaskID: "t1", State: store.StatePending, Event: store.EventSnoozed}, store.FinishResult{State: store.StatePending}, began, now)
	// A cancel request that won over a retry is logged as the cancel it was.
	LogOutcome(log, &store.Task{ID: "t2"}, store.Outcome{TaskID: "t2", State: store.StatePending, Event: store.EventRetryScheduled}, store.FinishResult{State: store.StateCancelled}, time.Time{}, now)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines logged, want 3:\n%s", len(lines), buf.String())
	}
	var recs []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, m)
	}
	if r := recs[0]; r["msg"] != "weft: task finished" || r["level"] != "INFO" || r["id"] != "t1" || r["kind"] != "mail" || r["queue"] != "default" ||
		r["attempt"] != 2.0 || r["outcome"] != "failed" || r["duration"] != float64(1500*time.Millisecond) || r["error"] != "smtp: refused" {
		t.Errorf("failure logged as %v", r)
	}
	if r := recs[1]; r["msg"] != "weft: task will be retried" || r["outcome"] != "pending" || r["retry_at"] == nil || r["error"] != "smtp: refused" {
		t.Errorf("retry logged as %v", r)
	}
	if r := recs[2]; r["outcome"] != "cancelled" || r["kind"] != nil || r["duration"] != nil {
		t.Errorf("a cancel of a task known only by id logged as %v", r)
	}
}
