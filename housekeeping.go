package weft

import (
	"context"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/weftworks/weft/internal/maintenance"
	"github.com/weftworks/weft/internal/rollup"
	"github.com/weftworks/weft/store"
)

// A started client's housekeeping: its node heartbeat, and — on the
// elected maintenance leader — lease rescue, cron, wait timeouts, rollups,
// the limits' counters and retention.

// rescueName names the lease-rescue reconciler (and its knob,
// WEFT_LEASE_RESCUE_INTERVAL).
const rescueName = "lease_rescue"

// retentionName names the purge of finished tasks (knob
// WEFT_RETENTION_INTERVAL).
const retentionName = "retention"

// Retention works in small passes with pauses between them, so that claims
// and completions queued behind a pass never wait long: measured while
// purging 1,000,000 rows, passes of 1,000 back to back put enqueue-to-start
// p99 at 26 ms; passes of 250 with 2 ms pauses keep it near its usual value.
const (
	purgePasses = 80
	purgeLimit  = 250
	purgeWindow = 2500
	purgePause  = 2 * time.Millisecond
)

// leaderRole is the role whose holder runs the singleton reconcilers.
const leaderRole = "maintenance"

// leadership elects, through the store, the one client among all those on
// the database that runs the singleton reconcilers. Its lease is the
// client's LeaseTTL, renewed every third of it.
func (c *Client) leadership() *maintenance.Leadership {
	return &maintenance.Leadership{
		Lead: func(ctx context.Context) (bool, error) {
			_, held, err := c.st.Lead(ctx, leaderRole, c.nodeID, c.cfg.LeaseTTL)
			return held, err
		},
		Resign: func(ctx context.Context) error { return c.st.Resign(ctx, leaderRole, c.nodeID) },
		Every:  c.cfg.LeaseTTL / 3,
	}
}

// reconcilers are the background loops a started client runs.
func (c *Client) reconcilers() []maintenance.Reconciler {
	var cursor string // where the retention sweep resumes
	return []maintenance.Reconciler{{
		// Every node's liveness: a node silent for a lease TTL is dead, and
		// the leader's rescue frees its tasks without waiting for their
		// leases.
		Name:     heartbeatName,
		Interval: c.cfg.LeaseTTL / 3,
		Tick:     func(ctx context.Context) error { return c.st.TouchNode(ctx, c.node()) },
	}, {
		Name:      rescueName,
		Interval:  max(c.cfg.RescueInterval, 0),
		Singleton: true,
		Tick: func(ctx context.Context) error {
			n, err := c.st.Rescue(ctx, store.RescueParams{Limit: rescueBatch, DeadAfter: c.cfg.LeaseTTL})
			if n > 0 {
				c.log.Info("weft: rescued tasks with expired leases", "count", n)
			}
			return err
		},
	}, {
		Name:      backendName,
		Interval:  10 * time.Second,
		Singleton: true,
		Tick:      c.st.Maintain,
	}, {
		Name:      cronName,
		Interval:  max(c.cfg.CronInterval, 0),
		Singleton: true,
		Tick:      c.RunSchedules,
	}, {
		Name:      waitsName,
		Interval:  max(c.cfg.WaitTimeoutInterval, 0),
		Singleton: true,
		Tick:      c.expireWaits,
	}, {
		Name:      rollupsName,
		Interval:  max(c.cfg.RollupInterval, 0),
		Singleton: true,
		Tick:      rollup.New(c.st, c.cfg.Now).Tick,
	}, {
		Name:      maintenance.LimitsName,
		Interval:  max(c.cfg.LimitsInterval, 0),
		Singleton: true,
		Tick:      maintenance.Limits(c.st, c.log),
	}, {
		Name:      retentionName,
		Interval:  max(c.cfg.RetentionInterval, 0),
		Singleton: true,
		Tick: func(ctx context.Context) error {
			now := c.cfg.Now()
			before := make(map[TaskState]time.Time, len(c.cfg.Retention))
			for st, age := range c.cfg.Retention {
				if age >= 0 {
					before[st] = now.Add(-age)
				}
			}
			total := 0
			defer func() {
				if total > 0 {
					c.log.Info("weft: purged finished tasks", "count", total)
				}
			}()
			for range purgePasses {
				res, err := c.st.Purge(ctx, store.PurgeParams{Before: before, After: cursor, Limit: purgeLimit, Window: purgeWindow})
				if err != nil {
					return err
				}
				total += res.Deleted
				cursor = res.Next
				if res.Done {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(purgePause):
				}
			}
			return nil
		},
	}}
}

// rollupsName names the counting of events into per-minute rollups
// (knob WEFT_ROLLUPS_INTERVAL).
const rollupsName = "rollups"

// backendName names the backend's own housekeeping (Store.Maintain).
const backendName = "backend"

// waitsName names the reconciler that ends waits whose timeout passed
// (knob WEFT_WAIT_TIMEOUTS_INTERVAL).
const waitsName = "wait_timeouts"

// expireBatch bounds the waits one ExpireWaits call ends.
const expireBatch = 500

// expireWaits ends the waits whose timeout passed. A timeout due before
// the next tick is waited for here, so timeouts land within milliseconds
// of their time rather than within an interval of it; the interval only
// bounds how late a wait made by another node is seen.
func (c *Client) expireWaits(ctx context.Context) error {
	deadline := c.cfg.Now().Add(c.cfg.WaitTimeoutInterval)
	for {
		n, next, err := c.st.ExpireWaits(ctx, expireBatch)
		if err != nil {
			return err
		}
		if n > 0 {
			c.log.Info("weft: waits timed out", "count", n)
		}
		if n == expireBatch {
			continue
		}
		if next.IsZero() || !next.Before(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next.Sub(c.cfg.Now())):
		}
	}
}

// cronName names the schedule runner (knob WEFT_CRON_INTERVAL).
const cronName = "cron"

// heartbeatName names the node heartbeat.
const heartbeatName = "node_heartbeat"

// node is this client's liveness row, with the queues it works, its labels
// and the kinds it runs (none when it claims every kind, to fail the unknown ones).
func (c *Client) node() store.Node {
	host, _ := os.Hostname()
	n := store.Node{ID: c.nodeID, Host: host, PID: os.Getpid(), StartedAt: c.started, Queues: slices.Sorted(maps.Keys(c.cfg.Queues)), Labels: c.cfg.Labels}
	if c.cfg.Workers != nil && !c.cfg.FailUnknownKinds {
		n.Kinds = slices.Sorted(maps.Keys(c.cfg.Workers.kinds))
	}
	return n
}

// rescueBatch bounds one rescue pass, so the writer is never held long.
const rescueBatch = 1000

// maintenanceGrace bounds how long Stop waits for reconcilers.
const maintenanceGrace = 5 * time.Second
