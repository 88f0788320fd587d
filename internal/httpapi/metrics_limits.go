package httpapi

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftworks/weft/internal/maintenance"
	"github.com/weftworks/weft/store"
)

// topKeys bounds the keys per limit reported with their waiting tasks, so
// that a limit with a million keys costs ten series, not a million.
const topKeys = 10

var (
	limitInUseDesc   = prometheus.NewDesc("weft_limit_in_use", "Slots of the limit held by running tasks, over all its keys.", []string{"limit"}, nil)
	limitWaitingDesc = prometheus.NewDesc("weft_limit_waiting", "Pending tasks set aside until their key of the limit has room (its cap or its rate).", []string{"limit"}, nil)
	limitKeyDesc     = prometheus.NewDesc("weft_limit_key_waiting", "Pending tasks waiting on one key of the limit, for the limit's 10 keys with the most.", []string{"limit", "key"}, nil)
	blockedDesc      = prometheus.NewDesc("weft_tasks_blocked", "Pending tasks held back, by reason: limit (set aside by a limit's cap or rate) and queue_paused (pending in a paused queue).", []string{"reason"}, nil)
)

// limitCollector reads the limits' counters at scrape time, as
// queueCollector reads the queues': one read of every limit's totals,
// and one page of each limit's busiest keys.
type limitCollector struct{ st store.Store }

func (c *limitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- limitInUseDesc
	ch <- limitWaitingDesc
	ch <- limitKeyDesc
	ch <- blockedDesc
}

func (c *limitCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	limits, err := c.st.ListLimits(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(limitInUseDesc, err)
		return
	}
	waiting := 0
	for _, l := range limits {
		waiting += l.Waiting
		ch <- prometheus.MustNewConstMetric(limitInUseDesc, prometheus.GaugeValue, float64(l.InUse), l.Name)
		ch <- prometheus.MustNewConstMetric(limitWaitingDesc, prometheus.GaugeValue, float64(l.Waiting), l.Name)
		if l.Waiting == 0 {
			continue
		}
		keys, _, err := c.st.LimitKeyStates(ctx, l.Name, "", topKeys)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(limitKeyDesc, err)
			continue
		}
		for _, k := range keys {
			if k.Waiting > 0 {
				ch <- prometheus.MustNewConstMetric(limitKeyDesc, prometheus.GaugeValue, float64(k.Waiting), l.Name, k.Key)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(blockedDesc, prometheus.GaugeValue, float64(waiting), store.BlockedLimit)
	stats, err := c.st.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(blockedDesc, err)
		return
	}
	var paused int64
	for _, qs := range stats {
		if qs.Paused {
			paused += qs.Counts[store.StatePending]
		}
	}
	ch <- prometheus.MustNewConstMetric(blockedDesc, prometheus.GaugeValue, float64(paused), store.BlockedQueuePaused)
}

// limitDriftCounters report what this process's limits reconciler
// corrected (maintenance.LimitCorrections): there is no drift unless
// something changed the counters outside Weft's transactions.
func limitDriftCounters() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_limit_drift_keys_total", Help: "Limit keys whose counters the limits reconciler of this process found wrong and corrected.",
		}, func() float64 { return float64(maintenance.LimitCorrections().Keys) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_limit_drift_stale_holds_total", Help: "Limit slots the limits reconciler of this process found held by tasks no longer running, and freed.",
		}, func() float64 { return float64(maintenance.LimitCorrections().StaleHolds) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weft_limit_released_total", Help: "Waiting tasks whose key had room that the limits reconciler of this process made claimable.",
		}, func() float64 { return float64(maintenance.LimitCorrections().Released) }),
	}
}
