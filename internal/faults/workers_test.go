package faults_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// TestWorkersKilled kills worker processes with SIGKILL at random moments,
// over and over, while three of them drain a stream of tasks, and
// restarts each under a new node id. Random kills every 100-400 ms land
// wherever a process happens to be — claiming, in a handler, recording
// outcomes, renewing leases, leading maintenance — and some kills are
// aimed: right after a handler's ledger write, either while the handler
// still runs ("held") or as it returns and its outcome is being recorded
// ("marked"); and some newly started processes are killed within 50 ms.
// At the end every task must be completed, with exactly one
// terminal event, and in the ledgers at least once.
func TestWorkersKilled(t *testing.T) {
	sz := runSizes()
	eachBackend(t, func(t *testing.T, b backend) {
		db := b.newDB(t)
		st := b.open(t, db)
		spec := workerSpec{
			backend: b.name, db: db, dir: t.TempDir(),
			// Short leases, so that what a killed process held is rescued
			// within a second, while the chaos goes on.
			lease: 600 * time.Millisecond, rescue: 300 * time.Millisecond,
			workers: 4,
		}
		var all []*proc
		incarnation := 0
		start := func(slot int) *proc {
			incarnation++
			p := startWorker(t, spec, fmt.Sprintf("w%d-%d", slot, incarnation))
			all = append(all, p)
			return p
		}
		slots := []*proc{start(0), start(1), start(2)}
		for _, p := range slots {
			p.waitReady(t, 30*time.Second)
		}

		// The feed: tasks at a steady rate over the first three quarters
		// of the chaos, so that kills keep landing on work in progress.
		n := sz.chaosTasks()
		feedFor := sz.chaos * 3 / 4
		type feed struct {
			ids []string
			err error
		}
		fed := make(chan feed, 1)
		go func() {
			const batch = 25
			var ids []string
			began := time.Now()
			for len(ids) < n {
				// Each batch is due at its share of the feed time.
				due := began.Add(time.Duration(int64(feedFor) * int64(len(ids)) / int64(n)))
				time.Sleep(time.Until(due))
				more, err := enqueueLedger(st, len(ids), min(batch, n-len(ids)), time.Time{})
				if err != nil {
					fed <- feed{err: err}
					return
				}
				ids = append(ids, more...)
			}
			fed <- feed{ids: ids}
		}()
		takeFeed := func(f feed) []string {
			if f.err != nil {
				t.Fatalf("feeding tasks: %v", f.err)
			}
			return f.ids
		}

		var (
			ids                    []string
			kills, held, marked    int
			heldIdle, markedIdle   int
			leaderKills, starting  int
			heldAtKill             int // tasks the victims held, summed
			maxHeldAtKill          int
			heldTasks, markedTasks []marker
		)
		began := time.Now()
		deadline := began.Add(sz.chaos)
		for time.Now().Before(deadline) {
			time.Sleep(100*time.Millisecond + rand.N(300*time.Millisecond))
			if ids == nil {
				select {
				case f := <-fed:
					ids = takeFeed(f)
				default:
				}
			}
			if ids != nil && countState(t, st, store.StateCompleted) == n {
				break
			}
			i := rand.IntN(len(slots))
			p := slots[i]
			if l, err := st.Leader(context.Background(), "maintenance"); err == nil && l.Holder == p.node && l.Current(time.Now()) {
				leaderKills++
			}
			if !p.isReady() {
				starting++
			}
			// What the victim holds just before it dies: its handlers, and
			// outcomes not yet recorded (a slot is freed when the handler
			// returns, before its outcome commits).
			if running, err := st.List(context.Background(), store.ListParams{States: []store.State{store.StateRunning}}); err == nil {
				k := 0
				for _, task := range running {
					if task.LeaseOwner == p.node {
						k++
					}
				}
				heldAtKill += k
				maxHeldAtKill = max(maxHeldAtKill, k)
			}
			switch r := rand.IntN(100); {
			case r < 10 && p.isReady():
				if m, ok := p.armedKill("hold", time.Second, 0); ok {
					held++
					heldTasks = append(heldTasks, m)
				} else {
					heldIdle++
				}
			case r < 20 && p.isReady():
				if m, ok := p.armedKill("mark", time.Second, rand.N(4*time.Millisecond)); ok {
					marked++
					markedTasks = append(markedTasks, m)
				} else {
					markedIdle++
				}
			default:
				p.kill()
			}
			kills++
			slots[i] = start(i)
			if rand.IntN(10) == 0 {
				// Now and then the newcomer dies young: while it opens the
				// database, registers, takes leadership or first claims.
				time.Sleep(rand.N(50 * time.Millisecond))
				if !slots[i].isReady() {
					starting++
				}
				slots[i].kill()
				kills++
				slots[i] = start(i)
			}
		}
		chaos := time.Since(began)
		if ids == nil {
			ids = takeFeed(<-fed)
		}
		// The survivors finish the work: what the last victims held is
		// rescued once their leases run out.
		for _, p := range slots {
			p.waitReady(t, 30*time.Second)
		}
		waitCompleted(t, st, n, time.Minute)
		drained := time.Since(began)
		for _, p := range slots {
			if err := p.stop(t); err != nil {
				t.Errorf("worker process %s: %v after SIGTERM, want a clean exit; log:\n%s", p.node, err, tail(p.log))
			}
		}

		checkExits(t, all)
		bk := audit(t, st, ids, all)
		// A held handler never returned: its attempt must not be the one
		// whose outcome was recorded.
		for _, m := range heldTasks {
			if bk.completedAt[m.task] == m.attempt {
				t.Errorf("task %s was completed by attempt %d, whose handler %s was killed before it returned", m.task, m.attempt, m.node)
			}
		}
		// A marked handler returned 0-4 ms before the kill, which so landed
		// before its outcome committed (rescued, run again) or after.
		before := 0
		for _, m := range markedTasks {
			if bk.completedAt[m.task] != m.attempt {
				before++
			}
		}
		t.Logf("%s: %d SIGKILLs in %s (%d at random moments, %d of them while the process was starting; %d held inside a handler after its ledger write; "+
			"%d marked as the handler returned: %d before the outcome committed, %d after; %d armed kills found no work; %d hit the maintenance leader), "+
			"%d processes in all; the victims held %d running tasks just before they died (at most %d at once); drained %s after the chaos began",
			b.name, kills, chaos.Round(time.Millisecond), kills-held-marked, starting, held, marked, before, marked-before,
			heldIdle+markedIdle, leaderKills, len(all), heldAtKill, maxHeldAtKill, drained.Round(time.Millisecond))
		t.Logf("%s: %s", b.name, bk)
		if held == 0 || marked == 0 {
			// Not a failure of Weft; worth knowing if the aim is off.
			t.Logf("%s: warning: no held (%d) or no marked (%d) kill found work", b.name, held, marked)
		}
	})
}
