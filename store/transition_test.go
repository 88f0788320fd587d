package store

import (
	"errors"
	"testing"
	"time"
)

func TestPlanCancel(t *testing.T) {
	now := time.Unix(100, 0)
	for _, tc := range []struct {
		from      State
		requested bool
		action    CancelAction
		to        State
		event     EventType
		err       error
	}{
		{from: StatePending, action: CancelNow, to: StateCancelled, event: EventCancelled},
		{from: StateBlocked, action: CancelNow, to: StateCancelled, event: EventCancelled},
		{from: StateWaiting, action: CancelNow, to: StateCancelled, event: EventCancelled},
		{from: StateRunning, action: CancelRequest, to: StateRunning, event: EventCancelRequested},
		{from: StateRunning, requested: true, action: CancelNothing, to: StateRunning},
		{from: StateCompleted, to: StateCompleted, err: ErrAlreadyFinished},
		{from: StateFailed, to: StateFailed, err: ErrAlreadyFinished},
		{from: StateCancelled, to: StateCancelled, err: ErrAlreadyFinished},
		{from: StateSkipped, to: StateSkipped, err: ErrAlreadyFinished},
	} {
		task := &Task{ID: "t", Queue: "q", State: tc.from, Attempt: 2, CancelRequested: tc.requested}
		action, ch, err := PlanCancel(task, now)
		if !errors.Is(err, tc.err) || action != tc.action || task.State != tc.to {
			t.Errorf("cancel of %s (requested %v): action %v, state %s, err %v; want %v, %s, %v",
				tc.from, tc.requested, action, task.State, err, tc.action, tc.to, tc.err)
			continue
		}
		if tc.event == "" {
			if len(ch.Events) != 0 {
				t.Errorf("cancel of %s wrote events %+v", tc.from, ch.Events)
			}
			continue
		}
		if len(ch.Events) != 1 || ch.Events[0].Type != tc.event || ch.Events[0].Attempt != 2 {
			t.Errorf("cancel of %s: events %+v, want one %s", tc.from, ch.Events, tc.event)
		}
		if tc.action == CancelNow {
			if ch.Counts[QueueState{"q", tc.from}] != -1 || ch.Counts[QueueState{"q", StateCancelled}] != 1 || !task.FinalizedAt.Equal(now) {
				t.Errorf("cancel of %s: counts %v, finalized %v", tc.from, ch.Counts, task.FinalizedAt)
			}
		}
	}
}

func TestPlanRetry(t *testing.T) {
	for _, s := range States() {
		task := &Task{ID: "t", Queue: "q", State: s, Attempt: 3, MaxAttempts: 3, LeaseEpoch: 5}
		ch, err := PlanRetry(task, "")
		retryable := s == StateFailed || s == StateCancelled || s == StateSkipped
		if retryable != (err == nil) {
			t.Errorf("retry of %s: %v", s, err)
			continue
		}
		if !retryable {
			if !errors.Is(err, ErrConflict) {
				t.Errorf("retry of %s: %v, want ErrConflict", s, err)
			}
			continue
		}
		if !ch.Wake || ch.Counts[QueueState{"q", StatePending}] != 1 || len(ch.Events) != 1 || string(ch.Events[0].Data) != `{"from":"`+string(s)+`"}` {
			t.Errorf("retry of %s: change %+v", s, ch)
		}
		RetryRow(task, time.Unix(9, 0))
		if task.State != StatePending || task.LeaseEpoch != 6 || task.MaxAttempts != 4 || !task.RunAt.Equal(time.Unix(9, 0)) {
			t.Errorf("retried row: %+v", task)
		}
	}
	if _, err := PlanRetry(&Task{ID: "t", State: StateFailed, UniqueKey: "k"}, "other"); !errors.Is(err, ErrConflict) {
		t.Errorf("retry while another task holds the key: %v, want ErrConflict", err)
	}
}

func TestReconcileFinish(t *testing.T) {
	outcomes := []Outcome{
		{TaskID: "a", Epoch: 1, State: StateCompleted, Event: EventCompleted},
		{TaskID: "b", Epoch: 1, State: StatePending, Event: EventRetryScheduled},
		{TaskID: "c", Epoch: 1, State: StatePending, Refund: true, Event: EventSnoozed},
		{TaskID: "a", Epoch: 1, State: StateCompleted, Event: EventCompleted},
		{TaskID: "d", Epoch: 7, State: StateFailed, Event: EventFailed},
		{TaskID: "gone", Epoch: 1, State: StateFailed, Event: EventFailed},
	}
	applied := map[LeaseKey]FinishedRow{
		{"a", 1}: {State: StateCompleted, Attempt: 1, Queue: "q"},
		{"b", 1}: {State: StateCancelled, Attempt: 2, Queue: "q"}, // a cancel request won
		{"c", 1}: {State: StatePending, Attempt: 0, Queue: "q"},
	}
	if got := Unapplied(outcomes, applied); len(got) != 2 || got[0] != "d" || got[1] != "gone" {
		t.Fatalf("unapplied = %v", got)
	}
	res, ch := ReconcileFinish(outcomes, applied, map[string]bool{"gone": true})
	want := []struct {
		state State
		err   error
	}{{StateCompleted, nil}, {StateCancelled, nil}, {StatePending, nil}, {"", ErrLeaseLost}, {"", ErrLeaseLost}, {"", ErrNotFound}}
	for i, w := range want {
		if res[i].State != w.state || !errors.Is(res[i].Err, w.err) || (w.err == nil) != (res[i].Err == nil) {
			t.Errorf("outcome %d: %+v, want %s %v", i, res[i], w.state, w.err)
		}
	}
	if len(ch.Events) != 3 || ch.Events[1].Type != EventCancelled || ch.Events[2].Attempt != 1 {
		t.Errorf("events %+v: want completed, cancelled (the request won), snoozed naming attempt 1", ch.Events)
	}
	if !ch.Wake || ch.Counts[QueueState{"q", StateRunning}] != -3 {
		t.Errorf("change %+v", ch)
	}
}

func TestPurgePlan(t *testing.T) {
	if _, err := (PurgeParams{Before: map[State]time.Time{StatePending: {}}}).Plan(); !errors.Is(err, ErrInvalid) {
		t.Errorf("purging pending tasks: %v, want ErrInvalid", err)
	}
	plan, err := PurgeParams{Before: map[State]time.Time{StateSkipped: {}, StateCompleted: {}}}.Plan()
	if err != nil || plan.Window != 10000 || plan.Limit != 1000 || len(plan.Cutoffs) != 2 ||
		plan.Cutoffs[0].State != StateCompleted || plan.Cutoffs[1].State != StateSkipped {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	if r := plan.Result("x", 1000, "y"); r.Next != "x" || r.Done {
		t.Errorf("a full window is looked at again: %+v", r)
	}
	if r := plan.Result("x", 3, "y"); r.Next != "y" || r.Done {
		t.Errorf("a window not full moves on: %+v", r)
	}
	if r := plan.Result("x", 3, ""); !r.Done {
		t.Errorf("the last window ends the sweep: %+v", r)
	}
}

func TestClaimRequestValidate(t *testing.T) {
	ok := ClaimRequest{Owner: "n", LeaseTTL: time.Second}
	if err := ok.Validate(); err != nil {
		t.Errorf("a request with no queues: %v", err)
	}
	for field, r := range map[string]ClaimRequest{
		"owner":         {LeaseTTL: time.Second},
		"lease_ttl":     {Owner: "n"},
		"not_resumable": {Owner: "n", LeaseTTL: time.Second, NotResumable: []string{"it's"}},
		"kinds":         {Owner: "n", LeaseTTL: time.Second, Kinds: []string{""}},
	} {
		var ve *ValidationError
		if err := r.Validate(); !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("%+v: %v, want a validation error on %s", r, err, field)
		}
	}
}

func TestStateLists(t *testing.T) {
	if got := SQLList(TerminalStates()); got != "('completed', 'failed', 'cancelled', 'skipped')" {
		t.Errorf("terminal states: %s", got)
	}
	if got := SQLList(KeyHoldingStates()); got != "('pending', 'blocked', 'running', 'waiting', 'completed')" {
		t.Errorf("key-holding states: %s", got)
	}
	for _, s := range States() {
		if !s.Valid() {
			t.Errorf("%s is not valid", s)
		}
	}
	if State("bogus").Valid() || State("bogus").Terminal() {
		t.Error("an unknown state is valid or terminal")
	}
}

func TestSQLOneOf(t *testing.T) {
	if got := SQLOneOf("state", KeyHoldingStates()); got != "(state = 'pending' OR state = 'blocked' OR state = 'running' OR state = 'waiting' OR state = 'completed')" {
		t.Errorf("key-holding condition: %s", got)
	}
}
