package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// enqueueLedger enqueues n ledgerKind tasks in batches, numbered from
// first, with runAt (zero: now), and returns their ids. It returns an
// error rather than failing the test: feeders call it from their own
// goroutines.
func enqueueLedger(st store.Store, first, n int, runAt time.Time) ([]string, error) {
	ids := make([]string, 0, n)
	for done := 0; done < n; {
		size := min(500, n-done)
		batch := make([]store.NewTask, size)
		for i := range batch {
			// Attempts are not what is under test: with the default 25, a
			// task rescued from 25 killed processes in a row would fail.
			batch[i] = store.NewTask{Kind: ledgerKind, Args: fmt.Appendf(nil, `{"n":%d}`, first+done+i), MaxAttempts: 1000, RunAt: runAt}
		}
		res, err := st.Enqueue(context.Background(), batch)
		if err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		for _, r := range res {
			ids = append(ids, r.ID)
		}
		done += size
	}
	return ids, nil
}

// mustEnqueueLedger is enqueueLedger for the test's goroutine.
func mustEnqueueLedger(t *testing.T, st store.Store, first, n int, runAt time.Time) []string {
	t.Helper()
	ids, err := enqueueLedger(st, first, n, runAt)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// countState counts the tasks in state, from the running counts.
func countState(t *testing.T, st store.Store, state store.State) int {
	t.Helper()
	stats, err := st.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range stats {
		n += int(q.Counts[state])
	}
	return n
}

// waitCompleted waits until n tasks are completed.
func waitCompleted(t *testing.T, st store.Store, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for countState(t, st, store.StateCompleted) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after %s only %d of %d tasks are completed (%d pending, %d running)", within,
				countState(t, st, store.StateCompleted), n, countState(t, st, store.StatePending), countState(t, st, store.StateRunning))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readLedgers returns how many times each task ran, from the ledgers of
// the processes ps, and how many runs each process made.
func readLedgers(t *testing.T, ps []*proc) (runs map[string]int, per map[string]int) {
	t.Helper()
	runs, per = map[string]int{}, map[string]int{}
	for _, p := range ps {
		b, err := os.ReadFile(p.ledger)
		if os.IsNotExist(err) {
			continue // killed before its first task
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Fatalf("ledger %s ends with half a line: %q", p.ledger, b[max(0, len(b)-40):])
		}
		for _, id := range strings.Fields(string(b)) {
			runs[id]++
			per[p.node]++
		}
	}
	return runs, per
}

// books is what the store and the ledgers say about a set of tasks once
// they are drained.
type books struct {
	tasks        int
	executions   int // ledger lines
	duplicates   int // executions beyond the first, summed over tasks
	dupTasks     int // tasks executed more than once
	attempts     int // claims, summed over tasks
	unexecuted   int // claims whose handler never wrote its ledger line
	maxAttempt   int
	rescued      map[string]int // rescued events by reason
	dupOutcomes  int            // tasks with more than one terminal event
	lost         int            // tasks not completed, or never executed
	completedAt  map[string]int // task id -> attempt whose outcome was recorded
	completedBy  map[string]int // node -> tasks whose outcome it recorded
	perProcess   map[string]int // node -> executions
	rescues      []rescue
	refused      int // outcomes the lease fence refused (worker logs)
	leaseLostLog int // handlers told their lease was lost (worker logs)
}

// rescue is one rescued event.
type rescue struct {
	task        string
	at          time.Time // as the rescuing node's clock had it
	completedBy string    // who completed the task in the end
}

// audit checks every task of ids and returns the books; it fails the test
// on a lost task, a second outcome, or more executions than claims.
func audit(t *testing.T, st store.Store, ids []string, ps []*proc) books {
	t.Helper()
	ctx := context.Background()
	runs, per := readLedgers(t, ps)
	b := books{tasks: len(ids), rescued: map[string]int{}, completedAt: map[string]int{}, completedBy: map[string]int{}, perProcess: per}
	known := make(map[string]bool, len(ids))
	for _, id := range ids {
		known[id] = true
	}
	for id := range runs {
		if !known[id] {
			t.Errorf("the ledgers name task %s, which the test never enqueued", id)
		}
	}
	var problems []string
	for _, id := range ids {
		task, err := st.Get(ctx, id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		evs, err := st.Events(ctx, id, 0, 0)
		if err != nil {
			t.Fatalf("events of %s: %v", id, err)
		}
		completed, terminal := 0, 0
		for _, ev := range evs {
			switch ev.Type {
			case store.EventCompleted:
				completed++
				terminal++
				b.completedAt[id] = ev.Attempt
			case store.EventFailed, store.EventCancelled:
				terminal++
			case store.EventRescued:
				var d struct {
					Reason string `json:"reason"`
				}
				_ = json.Unmarshal(ev.Data, &d)
				b.rescued[d.Reason]++
				b.rescues = append(b.rescues, rescue{task: id, at: ev.At, completedBy: task.LeaseOwner})
			}
		}
		if task.State == store.StateCompleted {
			b.completedBy[task.LeaseOwner]++
		}
		n := runs[id]
		b.executions += n
		b.attempts += task.Attempt
		b.maxAttempt = max(b.maxAttempt, task.Attempt)
		if n > 1 {
			b.duplicates += n - 1
			b.dupTasks++
		}
		b.unexecuted += max(task.Attempt-n, 0)
		switch {
		case task.State != store.StateCompleted || completed == 0:
			b.lost++
			problems = append(problems, fmt.Sprintf("task %s is %s after %d attempts, %d executions: lost", id, task.State, task.Attempt, n))
		case n == 0:
			b.lost++
			problems = append(problems, fmt.Sprintf("task %s is completed but no handler ran it", id))
		}
		if terminal > 1 || completed > 1 {
			b.dupOutcomes++
			problems = append(problems, fmt.Sprintf("task %s has %d terminal events (%d completed): its outcome was recorded twice", id, terminal, completed))
		}
		if n > task.Attempt {
			// Each claim starts one attempt and runs the handler at most
			// once: more executions than claims means a handler ran
			// without a claim of its own.
			problems = append(problems, fmt.Sprintf("task %s ran %d times in %d attempts", id, n, task.Attempt))
		}
	}
	var logs []string
	for _, p := range ps {
		logs = append(logs, p.log)
	}
	b.refused = countLog(t, logs, "weft: outcome refused")
	b.leaseLostLog = countLog(t, logs, "weft: lease lost; outcome not recorded")
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("%d problems; the first ones:\n%s", len(problems), strings.Join(problems[:min(20, len(problems))], "\n"))
	}
	return b
}

// String is the books as the tests report them.
func (b books) String() string {
	return fmt.Sprintf("tasks %d, lost %d, duplicated outcomes %d; executions %d, duplicated executions %d (on %d tasks); "+
		"claims %d, of which %d never reached the ledger write; max attempt %d; rescued %v; outcomes refused by the lease fence %d, handlers told their lease was lost %d",
		b.tasks, b.lost, b.dupOutcomes, b.executions, b.duplicates, b.dupTasks, b.attempts, b.unexecuted, b.maxAttempt,
		b.rescued, b.refused, b.leaseLostLog)
}
