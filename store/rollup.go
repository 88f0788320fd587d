package store

import (
	"context"
	"math"
	"time"
)

// Rollups are per-minute time series of what happened to the tasks of each
// queue and kind: how many were enqueued, completed, failed, retried and
// cancelled, and histograms of how long they waited and ran. A reconciler
// counts them from the feed of every task's events (Reader.EventsAfter)
// and adds them here, so a dashboard draws charts without Prometheus.

// HistogramBounds are the upper bounds of a Histogram's buckets, but the
// last, which is unbounded: from 1 ms to an hour, about three per decade.
var HistogramBounds = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute,
	5 * time.Minute, 15 * time.Minute, time.Hour,
}

// Histogram counts durations in the buckets of HistogramBounds: entry i
// counts those at most HistogramBounds[i] and above the previous bound;
// the last entry those above an hour. A nil Histogram is empty.
type Histogram []int64

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	if len(*h) == 0 {
		*h = make(Histogram, len(HistogramBounds)+1)
	}
	i := 0
	for i < len(HistogramBounds) && d > HistogramBounds[i] {
		i++
	}
	(*h)[i]++
}

// Add adds o's counts to h.
func (h *Histogram) Add(o Histogram) {
	if len(o) == 0 {
		return
	}
	if len(*h) == 0 {
		*h = make(Histogram, len(HistogramBounds)+1)
	}
	for i := range min(len(*h), len(o)) {
		(*h)[i] += o[i]
	}
}

// Count is the number of durations counted.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile estimates the q-quantile (0 < q <= 1) by linear interpolation
// within the bucket it falls in; the last bucket's durations count as an
// hour. Zero when the histogram is empty.
func (h Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, c := range h {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := time.Duration(0), HistogramBounds[len(HistogramBounds)-1]
			if i > 0 {
				lo = HistogramBounds[min(i, len(HistogramBounds))-1]
			}
			if i < len(HistogramBounds) {
				hi = HistogramBounds[i]
			}
			frac := math.Max(0, (rank-seen)/float64(c))
			return lo + time.Duration(frac*float64(hi-lo))
		}
		seen += float64(c)
	}
	return HistogramBounds[len(HistogramBounds)-1]
}

// Rollup is one minute of one queue and kind.
type Rollup struct {
	// Minute is the start of the minute, in UTC.
	Minute time.Time
	Queue  string
	Kind   string
	// Enqueued, Completed, Failed, Retried (retries scheduled after a
	// failed attempt) and Cancelled count events of the minute.
	Enqueued, Completed, Failed, Retried, Cancelled int64
	// Wait counts how long attempts that started in the minute waited
	// since their task became ready; Run how long the attempts that ended
	// in the minute ran.
	Wait, Run Histogram
}

// Add adds o's counts to r.
func (r *Rollup) Add(o Rollup) {
	r.Enqueued += o.Enqueued
	r.Completed += o.Completed
	r.Failed += o.Failed
	r.Retried += o.Retried
	r.Cancelled += o.Cancelled
	r.Wait.Add(o.Wait)
	r.Run.Add(o.Run)
}

// RollupRetention is how long rollups are kept.
const RollupRetention = 7 * 24 * time.Hour

// Rollups stores per-minute rollups and the feed cursor up to which they
// were counted.
type Rollups interface {
	// RollupCursor is the cursor of the feed of events (EventFilter.After)
	// up to which events were counted into rollups; 0 before any.
	RollupCursor(ctx context.Context) (int64, error)
	// AddRollups adds rows to the stored ones — the counts and histograms
	// of a minute, queue and kind already stored are summed — and moves
	// the cursor from from to to, in one transaction, if it still is at
	// from. It reports false, having written nothing, when it was not (a
	// previous leader moved it): each event is counted once.
	AddRollups(ctx context.Context, from, to int64, rows []Rollup) (bool, error)
	// ReadRollups reads the rollups of minutes at or after since, by
	// minute, then queue, then kind.
	ReadRollups(ctx context.Context, since time.Time) ([]Rollup, error)
	// PurgeRollups deletes the rollups of minutes before before and says
	// how many.
	PurgeRollups(ctx context.Context, before time.Time) (int, error)
}
