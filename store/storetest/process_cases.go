package storetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftworks/weft"
	"github.com/weftworks/weft/store"
)

// Multi-process cases: real worker processes (ChildMain) on one database,
// with the real clock. Their sizes are what a loaded two-core machine
// drains within the deadlines under the race detector, with every commit
// fsynced; the throughput figures are the benchmarks' business.

var processCases = []testCase{
	{"two processes drain 4,000 tasks, each exactly once", testTwoProcesses},
	{"three worker processes drain 6,000 tasks; one killed with SIGKILL loses nothing", testKilledProcess},
	{"the maintenance leader killed with SIGKILL is replaced", testLeaderFailover},
	{"flows on two processes, one killed with SIGKILL: each fan-in resolves once", testKilledFlowMember},
	{"limits across three processes, one killed with SIGKILL: never over the cap, its slots come back", testLimitProcesses},
}

// Environment of a worker process started by the suite.
const (
	envChild      = "WEFT_STORETEST_CHILD"
	envDB         = "WEFT_STORETEST_DB"
	envLedger     = "WEFT_STORETEST_LEDGER"
	envWorkMillis = "WEFT_STORETEST_WORK_MS"
	envLeaseMS    = "WEFT_STORETEST_LEASE_MS"
	envNodeID     = "WEFT_STORETEST_NODE"
)

type ledgerArgs struct {
	N int `json:"n"`
}

func (ledgerArgs) Kind() string { return "st.ledger" }

// ChildMain runs a worker process for the suite's multi-process cases when
// the environment asks for one, and exits; otherwise it returns at once.
// Call it first thing in the backend test package's TestMain, with the
// harness's Open: the worker opens its store with the real clock.
func ChildMain(open func(ctx context.Context, db string, now func() time.Time) (store.Store, error)) {
	if os.Getenv(envChild) == "" {
		return
	}
	if err := runChild(open); err != nil {
		fmt.Fprintln(os.Stderr, "storetest child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runChild works st.ledger tasks, appending one line per execution to its
// ledger file — "task-id pid" — until SIGTERM, then stops gracefully.
func runChild(open func(ctx context.Context, db string, now func() time.Time) (store.Store, error)) error {
	ctx := context.Background()
	st, err := open(ctx, os.Getenv(envDB), time.Now)
	if err != nil {
		return err
	}
	defer st.Close()
	ledger, err := os.OpenFile(os.Getenv(envLedger), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer ledger.Close()
	work, _ := strconv.Atoi(os.Getenv(envWorkMillis))
	leaseMS, _ := strconv.Atoi(os.Getenv(envLeaseMS))
	pid := os.Getpid()
	ws := weft.NewWorkers()
	weft.AddWorkerFunc(ws, func(ctx context.Context, t *weft.Task[ledgerArgs]) error {
		start := time.Now()
		if work > 0 {
			time.Sleep(time.Duration(work) * time.Millisecond)
		}
		// When the handler ran, in wall-clock nanoseconds: within the
		// task's lease, for the cases that check limits across processes.
		_, err := fmt.Fprintf(ledger, "%s %d %d %d\n", t.ID, pid, start.UnixNano(), time.Now().UnixNano())
		return err
	})
	c, err := weft.NewClient(st, &weft.Config{
		NodeID:         os.Getenv(envNodeID),
		Workers:        ws,
		Queues:         map[string]weft.QueueConfig{"default": {MaxWorkers: 20}},
		LeaseTTL:       time.Duration(leaseMS) * time.Millisecond,
		RescueInterval: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	if err := c.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-term
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.Stop(stopCtx)
}

type child struct {
	cmd    *exec.Cmd
	ledger string
}

// startChildren starts n worker processes whose leases last leaseMillis
// and whose handlers take workMillis[i] (the last value for the rest).
func startChildren(t *testing.T, e *env, n, leaseMillis int, workMillis ...int) []*child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var children []*child
	for i := 0; i < n; i++ {
		c := &child{ledger: filepath.Join(t.TempDir(), fmt.Sprintf("ledger-%d", i))}
		c.cmd = exec.Command(exe, "-test.run=^$")
		c.cmd.Env = append(os.Environ(), envChild+"=worker", envDB+"="+e.db, envLedger+"="+c.ledger,
			envWorkMillis+"="+strconv.Itoa(workMillis[min(i, len(workMillis)-1)]), envLeaseMS+"="+strconv.Itoa(leaseMillis),
			envNodeID+"="+fmt.Sprintf("node-%d", i))
		c.cmd.Stderr = os.Stderr
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("start worker process: %v", err)
		}
		t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			t.Fatalf("worker process %d did not get ready: %q %v", i, line, err)
		}
		children = append(children, c)
	}
	return children
}

func enqueueLedgerTasks(t *testing.T, e *env, n int) map[string]bool {
	t.Helper()
	ids := make(map[string]bool, n)
	for done := 0; done < n; {
		size := min(500, n-done)
		batch := make([]store.NewTask, size)
		for i := range batch {
			batch[i] = store.NewTask{Kind: ledgerArgs{}.Kind(), Args: []byte(fmt.Sprintf(`{"n":%d}`, done+i))}
		}
		res := e.enqueue(t, batch...)
		for _, r := range res {
			ids[r.ID] = true
		}
		done += size
	}
	return ids
}

// completed counts the completed tasks, from the queue statistics: cheap
// enough to poll while worker processes drain thousands of tasks. Every
// case checks each task's own record afterwards.
func completed(t *testing.T, e *env) int {
	t.Helper()
	return int(countsOf(t, e, e.st)[store.DefaultQueue].Counts[store.StateCompleted])
}

// readLedgers returns how often each task ran, and how many runs each
// process made.
func readLedgers(t *testing.T, children []*child) (map[string]int, []int) {
	t.Helper()
	runs := map[string]int{}
	per := make([]int, len(children))
	for i, c := range children {
		b, err := os.ReadFile(c.ledger)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if id, _, ok := strings.Cut(line, " "); ok {
				runs[id]++
				per[i]++
			}
		}
	}
	return runs, per
}

// assertCompletedOnce checks that every task is completed with exactly one
// completed event.
func assertCompletedOnce(t *testing.T, e *env, ids map[string]bool) {
	t.Helper()
	for id := range ids {
		evs := e.events(t, id)
		completed := 0
		for _, ev := range evs {
			if ev.Type == store.EventCompleted {
				completed++
			}
		}
		if completed != 1 {
			t.Fatalf("task %s has %d completed events, want exactly 1: %v", id, completed, eventTypes(evs))
		}
	}
}

func stopChildren(t *testing.T, children []*child) {
	t.Helper()
	for _, c := range children {
		if c.cmd.ProcessState != nil {
			continue
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("worker process exited with %v", err)
		}
	}
}

func testTwoProcesses(t *testing.T, e *env) {
	const n = 4000
	// Leases long enough that none expires: then each task runs once.
	children := startChildren(t, e, 2, 60000, 0)
	ids := enqueueLedgerTasks(t, e, n)
	eventually(t, drainWithin, "not every task completed", func() bool {
		return completed(t, e) == n
	})
	stopChildren(t, children)
	runs, per := readLedgers(t, children)
	if len(runs) != n {
		t.Fatalf("the ledgers name %d tasks, want %d", len(runs), n)
	}
	for id, k := range runs {
		if !ids[id] || k != 1 {
			t.Fatalf("task %s ran %d times (known %v), want exactly once", id, k, ids[id])
		}
	}
	if per[0] == 0 || per[1] == 0 {
		t.Fatalf("runs per process = %v: both processes should have worked", per)
	}
	t.Logf("runs per process: %v", per)
	assertCompletedOnce(t, e, ids)
}

// drainWithin bounds how long worker processes may take to drain a
// case's tasks on a loaded machine (where a commit may wait seconds for its
// fsync).
const drainWithin = 5 * time.Minute

func testKilledProcess(t *testing.T, e *env) {
	const n = 6000
	// Long enough that slow commits on a loaded machine do not make leases
	// run out under live workers (which only costs time: their outcomes are
	// refused and the tasks run again).
	const lease = 10 * time.Second
	// The victim's tasks take long enough that the tasks it claimed last
	// are still running when it is killed, however slow the machine.
	const victimWork = 5 * time.Second
	children := startChildren(t, e, 3, int(lease/time.Millisecond), int(victimWork/time.Millisecond), 2)
	ids := enqueueLedgerTasks(t, e, n)
	// Kill it while it holds tasks, so that there is something to rescue;
	// held is what it held (under which epoch) just before the kill.
	held := map[string]int64{}
	eventually(t, time.Minute, "the victim never held a running task", func() bool {
		running, err := e.st.List(e.ctx, store.ListParams{States: []store.State{store.StateRunning}})
		if err != nil {
			t.Fatal(err)
		}
		clear(held)
		for _, task := range running {
			// Waiting in its run queue (not started), or started in the
			// last four seconds: at least a second of work left, time for
			// the kill to land while it still holds the task.
			if task.LeaseOwner == "node-0" && (task.AttemptedAt.IsZero() || e.now().Sub(task.AttemptedAt) < victimWork-time.Second) {
				held[task.ID] = task.LeaseEpoch
			}
		}
		return len(held) > 0
	})
	victim := children[0]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	killed := time.Now()
	eventually(t, drainWithin, "not every task completed after a SIGKILL", func() bool {
		return completed(t, e) == n
	})
	stopChildren(t, children[1:])
	runs, per := readLedgers(t, children)
	for id := range ids {
		if runs[id] == 0 {
			t.Fatalf("task %s completed but no process ran it", id)
		}
	}
	// The tasks the victim held at the kill were rescued: when their leases
	// ran out, or when the leader found the victim's node silent (its row
	// lingers: it never stopped). Both take about a lease (plus a rescue
	// interval, plus a lease more if the victim was the leader); the bound
	// is far wider, for a loaded machine, and still far short of anything
	// but a rescue.
	const rescuedWithin = 2*lease + 30*time.Second
	rescued := 0
	for id, epoch := range held {
		for _, ev := range e.events(t, id) {
			if ev.Type != store.EventRescued {
				continue
			}
			rescued++
			if d := ev.At.Sub(killed); d > rescuedWithin {
				t.Fatalf("task %s rescued %s after the kill", id, d)
			}
			break
		}
		// A late write by the killed process, under its epoch, is refused.
		res, err := e.st.Finish(e.ctx, []store.Outcome{{TaskID: id, Epoch: epoch, State: store.StateFailed, Event: store.EventFailed}})
		if err != nil || !errors.Is(res[0].Err, store.ErrLeaseLost) {
			t.Fatalf("a late write by the killed process was not refused: %v %v", res, err)
		}
	}
	t.Logf("runs per process %v; the killed process held %d tasks, %d were rescued", per, len(held), rescued)
	if rescued != len(held) {
		t.Fatalf("%d of the %d tasks the killed process held were rescued, want all: none could finish before the kill", rescued, len(held))
	}
	assertCompletedOnce(t, e, ids)
}

func testLeaderFailover(t *testing.T, e *env) {
	const lease = 2 * time.Second
	children := startChildren(t, e, 3, int(lease/time.Millisecond), 0)
	var first store.Leader
	eventually(t, time.Minute, "no worker process became the maintenance leader", func() bool {
		l, err := e.st.Leader(e.ctx, "maintenance")
		first = l
		return err == nil && l.Current(e.now()) && strings.HasPrefix(l.Holder, "node-")
	})
	i, _ := strconv.Atoi(strings.TrimPrefix(first.Holder, "node-"))
	if err := children[i].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = children[i].cmd.Wait()
	killed := time.Now()
	// The lease runs out within one TTL; a renewal every TTL/3 then takes
	// it. The deadline is far wider, for a loaded machine.
	var next store.Leader
	eventually(t, time.Minute, "nobody took over from the killed leader", func() bool {
		l, err := e.st.Leader(e.ctx, "maintenance")
		next = l
		return err == nil && l.Holder != first.Holder && l.Current(e.now())
	})
	if next.Term <= first.Term {
		t.Fatalf("term %d after %d: a new leader must have a later term", next.Term, first.Term)
	}
	t.Logf("leader %s (term %d) killed; %s took over (term %d) after %s", first.Holder, first.Term, next.Holder, next.Term, time.Since(killed).Round(time.Millisecond))
	var rest []*child
	for j, c := range children {
		if j != i {
			rest = append(rest, c)
		}
	}
	stopChildren(t, rest)
}

func testKilledFlowMember(t *testing.T, e *env) {
	const flows = 200
	const lease = 10 * time.Second
	const victimWork = 5 * time.Second
	children := startChildren(t, e, 2, int(lease/time.Millisecond), int(victimWork/time.Millisecond), 2)
	ledger := func(key string, deps ...string) store.NewFlowMember {
		return store.NewFlowMember{Key: key, Task: store.NewTask{Kind: ledgerArgs{}.Kind()}, DependsOn: deps}
	}
	for range flows {
		e.submit(t, ledger("a"), ledger("b"), ledger("c", "a", "b"))
	}
	held := 0
	eventually(t, time.Minute, "the victim never held a running member", func() bool {
		running, err := e.st.List(e.ctx, store.ListParams{States: []store.State{store.StateRunning}})
		if err != nil {
			t.Fatal(err)
		}
		held = 0
		for _, task := range running {
			if task.LeaseOwner == "node-0" && (task.AttemptedAt.IsZero() || e.now().Sub(task.AttemptedAt) < victimWork-time.Second) {
				held++
			}
		}
		return held > 0
	})
	if err := children[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = children[0].cmd.Wait()
	eventually(t, drainWithin, "not every flow succeeded after a SIGKILL", func() bool {
		done, err := e.st.ListFlows(e.ctx, store.FlowListParams{States: []store.FlowState{store.FlowSucceeded}})
		if err != nil {
			t.Fatal(err)
		}
		return len(done) == flows
	})
	stopChildren(t, children[1:])
	all, err := e.st.ListFlows(e.ctx, store.FlowListParams{})
	if err != nil {
		t.Fatal(err)
	}
	rescued := 0
	for _, f := range all {
		ms, err := e.st.FlowMembers(e.ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			unblocked, completions := 0, 0
			for _, ev := range e.events(t, m.TaskID) {
				switch ev.Type {
				case store.EventUnblocked:
					unblocked++
				case store.EventCompleted:
					completions++
				case store.EventRescued:
					rescued++
				}
			}
			if completions != 1 || (m.Key == "c") != (unblocked == 1) || unblocked > 1 {
				t.Fatalf("flow %s member %s: %d completed and %d unblocked events", f.ID, m.Key, completions, unblocked)
			}
		}
		assertFlowCounts(t, e, f.ID)
	}
	t.Logf("the killed process held %d members; %d were rescued", held, rescued)
	if rescued == 0 {
		t.Fatal("no member was rescued: the kill did not land while the victim held one")
	}
}

func testLimitProcesses(t *testing.T, e *env) {
	const keys, per, cap = 4, 60, 2
	e.setLimit(t, store.Limit{Name: "cap", Concurrency: cap})
	// Leases short enough that the killed process's slots come back soon.
	children := startChildren(t, e, 3, 2000, 5)
	var batch []store.NewTask
	key := map[string]string{}
	for i := range keys * per {
		k := fmt.Sprintf("k%d", i%keys)
		batch = append(batch, store.NewTask{Kind: ledgerArgs{}.Kind(), Args: []byte(fmt.Sprintf(`{"n":%d}`, i)),
			LimitKeys: map[string]string{"cap": k}})
	}
	for _, r := range e.enqueue(t, batch...) {
		key[r.ID] = batch[len(key)].LimitKeys["cap"]
	}
	eventually(t, drainWithin, "the first tasks did not run", func() bool { return completed(t, e) >= 20 })
	if err := children[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = children[0].cmd.Wait()
	eventually(t, drainWithin, "not every limited task completed", func() bool { return completed(t, e) == keys*per })
	stopChildren(t, children[1:])
	type span struct{ start, end int64 }
	spans := map[string][]span{}
	for _, c := range children {
		b, err := os.ReadFile(c.ledger)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			if len(f) != 4 {
				continue
			}
			start, _ := strconv.ParseInt(f[2], 10, 64)
			end, _ := strconv.ParseInt(f[3], 10, 64)
			spans[key[f[0]]] = append(spans[key[f[0]]], span{start, end})
		}
	}
	for k, ss := range spans {
		for _, a := range ss {
			n := 0
			for _, b := range ss {
				if b.start <= a.start && b.end > a.start {
					n++
				}
			}
			if n > cap {
				t.Fatalf("%d handlers of key %s ran at once across the processes, over the cap of %d", n, k, cap)
			}
		}
	}
	e.noDrift(t)
}
