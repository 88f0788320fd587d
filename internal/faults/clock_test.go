package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// TestClockSkew runs two worker nodes on one database, one of them with
// its clock an hour ahead of real time ("ahead") or an hour behind
// ("behind"), and checks that leases stay safe: every task completed, none
// with two outcomes. It also records what the skew does, for
// docs/reliability.md.
//
// The skew is injected into the store's clock (sqlite.Options.Now,
// postgres.Options.Now): every time the store writes or compares — lease
// expiry, run_at, heartbeats, the leader's lease, event times — comes from
// it. The engine's own timers (lease renewal every LeaseTTL/3, its local
// view of when a lease runs out, the sleep until the next run_at) use
// time.Now, which Config cannot replace; they measure durations, which a
// constant skew leaves alone, except the sleep until the next run_at (see
// the behind case).
func TestClockSkew(t *testing.T) {
	sz := runSizes()
	for _, sk := range []struct {
		name string
		skew time.Duration
	}{{"ahead", time.Hour}, {"behind", -time.Hour}} {
		t.Run(sk.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b backend) { clockRun(t, b, sk.name, sk.skew, sz.clockTasks) })
		})
	}
}

func clockRun(t *testing.T, b backend, name string, skew time.Duration, n int) {
	const lease, rescueEvery = time.Second, 500 * time.Millisecond
	db := b.newDB(t)
	st := b.open(t, db)
	spec := workerSpec{backend: b.name, db: db, dir: t.TempDir(), lease: lease, rescue: rescueEvery, workers: 4}
	skewSpec := spec
	skewSpec.skew = skew
	normal := startWorker(t, spec, "real")
	skewed := startWorker(t, skewSpec, name)
	all := []*proc{normal, skewed}
	normal.waitReady(t, 30*time.Second)
	skewed.waitReady(t, 30*time.Second)
	smp := startSampler(st, normal.node, skewed.node)
	var report []string
	logf := func(format string, a ...any) { report = append(report, fmt.Sprintf(format, a...)) }
	ranBy := func(ids []string) map[string]int {
		byNode := map[string]int{}
		for _, p := range all {
			r, _ := readLedgers(t, []*proc{p})
			for _, id := range ids {
				byNode[p.node] += r[id]
			}
		}
		return byNode
	}

	// Tasks ready now, by the real clock.
	cpuReal, cpuSkewed := cpuTime(normal), cpuTime(skewed)
	ids := mustEnqueueLedger(t, st, 0, n, time.Time{})
	waitCompleted(t, st, len(ids), time.Minute)
	logf("%d tasks due now (real clock): executions by node %v; CPU time meanwhile: real %s, %s %s", n, ranBy(ids),
		(cpuTime(normal) - cpuReal).Round(10*time.Millisecond), name, (cpuTime(skewed) - cpuSkewed).Round(10*time.Millisecond))

	if skew > 0 {
		// Due in 30 minutes: the node ahead sees them due already.
		later := mustEnqueueLedger(t, st, len(ids), 50, time.Now().Add(30*time.Minute))
		ids = append(ids, later...)
		waitCompleted(t, st, len(ids), 30*time.Second)
		logf("50 tasks due in 30 minutes: all run at once, executions by node %v", ranBy(later))
	} else {
		// Due two hours ago, as if enqueued by a node two hours behind:
		// both nodes see them due.
		past := mustEnqueueLedger(t, st, len(ids), n, time.Now().Add(-2*time.Hour))
		ids = append(ids, past...)
		waitCompleted(t, st, len(ids), time.Minute)
		logf("%d tasks due 2 hours ago: executions by node %v", n, ranBy(past))
	}

	// The skewed node killed inside a handler: who rescues its task, and
	// when?
	if !skewed.arm("hold") {
		t.Fatalf("worker process %s is gone", skewed.node)
	}
	runAt := time.Time{}
	if skew < 0 {
		runAt = time.Now().Add(-2 * time.Hour)
	}
	// Enough tasks that both nodes claim some: a node that has just run a
	// burst claims ahead about 25 ms of its throughput, which can be a
	// few dozen no-op tasks.
	last := mustEnqueueLedger(t, st, len(ids), 200, runAt)
	ids = append(ids, last...)
	m, ok := skewed.await(10*time.Second, 0)
	if !ok {
		t.Fatalf("the %s node never ran one of the last 200 tasks; log:\n%s", name, tail(skewed.log))
	}
	killed := time.Now()
	if skew > 0 {
		// The dead node's leases, and its maintenance leadership, run out
		// an hour from now by the real clock: the real node rescues
		// nothing meanwhile.
		time.Sleep(2*lease + rescueEvery)
		task, err := st.Get(context.Background(), m.task)
		if err != nil {
			t.Fatal(err)
		}
		leader, _ := st.Leader(context.Background(), "maintenance")
		running, err := st.List(context.Background(), store.ListParams{States: []store.State{store.StateRunning}})
		if err != nil {
			t.Fatal(err)
		}
		stuck := 0
		for _, r := range running {
			if r.LeaseOwner == skewed.node {
				stuck++
			}
		}
		logf("%s node killed inside a handler: %s later its task is %s (owner %s, lease expires in %s); %d tasks running under the dead node; "+
			"maintenance leader %s, its lease expiring in %s",
			name, time.Since(killed).Round(time.Millisecond), task.State, task.LeaseOwner, time.Until(task.LeaseExpiresAt).Round(time.Second),
			stuck, leader.Holder, time.Until(leader.ExpiresAt).Round(time.Second))
		// Another node an hour ahead takes over within a lease TTL.
		restarted := time.Now()
		again := startWorker(t, skewSpec, name+"-2")
		all = append(all, again)
		again.waitReady(t, 30*time.Second)
		waitCompleted(t, st, len(ids), time.Minute)
		task, _ = st.Get(context.Background(), m.task)
		logf("a new %s node started: the task was completed by %s %s after its start (attempt %d)",
			name, task.LeaseOwner, time.Since(restarted).Round(time.Millisecond), task.Attempt)
	} else {
		waitCompleted(t, st, len(ids), time.Minute)
		task, err := st.Get(context.Background(), m.task)
		if err != nil {
			t.Fatal(err)
		}
		logf("%s node killed inside a handler: its task was completed by %s %s later (attempt %d)",
			name, task.LeaseOwner, time.Since(killed).Round(time.Millisecond), task.Attempt)
	}
	// Stopped first: a node that stops removes its own row.
	obs := smp.stop()
	for _, p := range all {
		if p == skewed {
			continue
		}
		if err := p.stop(t); err != nil {
			t.Errorf("worker process %s: %v after SIGTERM, want a clean exit", p.node, err)
		}
	}
	checkExits(t, all)

	bk := audit(t, st, ids, all)
	if bk.completedAt[m.task] == m.attempt {
		t.Errorf("task %s was completed by attempt %d, whose handler was killed before it returned", m.task, m.attempt)
	}
	// Which clock writes a lease: the claiming node's. The latest expiry
	// seen is that of a lease just written, a TTL from its writer's now;
	// the earliest may be a dead node's lease watched for seconds.
	for owner, o := range obs.leases {
		want := time.Duration(0)
		if strings.HasPrefix(owner, name) {
			want = skew
		}
		if d := o.max - want; d > lease || d < -2*time.Second {
			t.Errorf("leases of %s expire %s to %s from now (real clock); want a lease TTL after %s", owner, o.min, o.max, want)
		}
	}
	logf("leases as written (expiry minus real now): %s", obs.leaseSummary())
	logf("maintenance leader (share of %d samples): %s; samples in which a node row was missing (removed by the leader as dead): %v",
		obs.samples, obs.leaderSummary(), obs.unregistered)
	future, rescuedBy := 0, map[string]int{}
	for _, r := range bk.rescues {
		if r.at.After(time.Now().Add(30 * time.Minute)) {
			future++
		}
		rescuedBy[r.completedBy]++
	}
	logf("%d rescues, %d of them stamped an hour ahead (by a rescuer whose clock is); rescued tasks were completed by %v", len(bk.rescues), future, rescuedBy)
	logf("outcomes recorded by node %v", bk.completedBy)
	logf("%s", bk)
	t.Logf("%s, clock %s by %s:\n  %s", b.name, name, skew.Abs(), strings.Join(report, "\n  "))
}

// cpuTime is the CPU time p has used so far (user and system), from
// /proc; 0 where there is none.
func cpuTime(p *proc) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis. utime and stime are fields
	// 14 and 15 of the line, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// sampler watches leases and the maintenance leader while a run goes on.
type sampler struct {
	done chan struct{}
	out  chan observed
}

// observed is what a sampler saw.
type observed struct {
	samples int
	// leases by owner: how far from the real now the leases of running
	// tasks expire.
	leases map[string]*span
	// leaders counts the samples in which each node held the maintenance
	// lease.
	leaders map[string]int
	// unregistered counts, per watched node, the samples in which it had
	// no node row: the leader took it for dead and removed it.
	unregistered map[string]int
	errs         int
}

// span is the range of a set of durations.
type span struct{ min, max time.Duration }

func (s *span) add(d time.Duration) {
	s.min, s.max = min(s.min, d), max(s.max, d)
}

// startSampler samples st every 25 ms until stopped, and watches the node
// rows of nodes.
func startSampler(st store.Store, nodes ...string) *sampler {
	s := &sampler{done: make(chan struct{}), out: make(chan observed, 1)}
	go func() {
		o := observed{leases: map[string]*span{}, leaders: map[string]int{}, unregistered: map[string]int{}}
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				s.out <- o
				return
			case <-tick.C:
			}
			ctx := context.Background()
			running, err := st.List(ctx, store.ListParams{States: []store.State{store.StateRunning}, Limit: 1000})
			now := time.Now()
			if err != nil {
				o.errs++
				continue
			}
			o.samples++
			for _, task := range running {
				if task.LeaseExpiresAt.IsZero() {
					continue
				}
				d := task.LeaseExpiresAt.Sub(now)
				if sp := o.leases[task.LeaseOwner]; sp != nil {
					sp.add(d)
				} else {
					o.leases[task.LeaseOwner] = &span{d, d}
				}
			}
			if l, err := st.Leader(ctx, "maintenance"); err == nil {
				o.leaders[l.Holder]++
			}
			if rows, err := st.Nodes(ctx); err == nil {
				for _, node := range nodes {
					if !slices.ContainsFunc(rows, func(n store.Node) bool { return n.ID == node }) {
						o.unregistered[node]++
					}
				}
			}
		}
	}()
	return s
}

func (s *sampler) stop() observed {
	close(s.done)
	return <-s.out
}

func (o observed) leaseSummary() string {
	var parts []string
	for owner, sp := range o.leases {
		parts = append(parts, fmt.Sprintf("%s %s to %s", owner, sp.min.Round(10*time.Millisecond), sp.max.Round(10*time.Millisecond)))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func (o observed) leaderSummary() string {
	var parts []string
	for holder, k := range o.leaders {
		parts = append(parts, fmt.Sprintf("%s %d%%", holder, 100*k/max(o.samples, 1)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
