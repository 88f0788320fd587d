package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftworks/weft/internal/rollup"
	"github.com/weftworks/weft/store"
)

// metrics are the API's Prometheus metrics. Queue figures are read from
// the store's counters at scrape time, which costs the same at any table
// size, so they are always current and never drift.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	enqueued prometheus.Counter
	claimed  prometheus.Counter
	handler  http.Handler
}

func newMetrics(reg *prometheus.Registry, st store.Store) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_http_requests_total", Help: "HTTP API requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_http_request_duration_seconds", Help: "HTTP API request duration by route (streams last as long as they are followed).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route"}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_api_tasks_enqueued_total", Help: "Tasks enqueued through the HTTP API, duplicates included.",
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "weft_api_tasks_claimed_total", Help: "Tasks leased to remote workers.",
		}),
	}
	tasks, err := newTaskCollector(st)
	if err != nil {
		return nil, err
	}
	collectors := append([]prometheus.Collector{m.requests, m.duration, m.enqueued, m.claimed, &queueCollector{st: st}, &limitCollector{st: st}, tasks}, limitDriftCounters()...)
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m, nil
}

func (m *metrics) serve(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// instrument counts requests by route pattern, not by path, so task ids
// never become label values.
func (m *metrics) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, route := mux.Handler(r)
		if route == "" || route == "/" {
			route = "other"
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r)
		m.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusRecorder remembers the status code; Unwrap keeps flushing (for
// event streams) reachable through http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var (
	queueTasksDesc = prometheus.NewDesc("weft_queue_tasks", "Tasks per queue and state.", []string{"queue", "state"}, nil)
	queuePaused    = prometheus.NewDesc("weft_queue_paused", "1 while the queue's claims are paused.", []string{"queue"}, nil)
	queueWaitDesc  = prometheus.NewDesc("weft_queue_oldest_ready_seconds", "How long the queue's oldest ready task has waited.", []string{"queue"}, nil)
)

// queueCollector reads queue statistics at scrape time.
type queueCollector struct{ st store.Store }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueTasksDesc
	ch <- queuePaused
	ch <- queueWaitDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.st.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueTasksDesc, err)
		return
	}
	now := time.Now()
	for _, qs := range stats {
		for _, s := range store.States() {
			ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(qs.Counts[s]), qs.Queue, string(s))
		}
		paused := 0.0
		if qs.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(queuePaused, prometheus.GaugeValue, paused, qs.Queue)
		wait := 0.0
		if !qs.OldestReadyAt.IsZero() {
			wait = max(now.Sub(qs.OldestReadyAt).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(queueWaitDesc, prometheus.GaugeValue, wait, qs.Queue)
	}
}

// taskCollector counts what happens to tasks, per queue and kind, from
// the feed of every task's events (store.Reader.EventsAfter): enqueued,
// completed, failed, retried and cancelled tasks, and how long attempts
// waited and ran (rollup.Tracker). It follows the feed at scrape time,
// from where it was when the server started, so it needs no goroutine
// and counts every node's work, not only this process's: servers sharing
// a database report the same counts (aggregate them with max, not sum).
type taskCollector struct {
	st store.Reader

	mu     sync.Mutex
	cursor int64
	times  *rollup.Tracker

	enqueued, completed, failed, retried, cancelled *prometheus.CounterVec
	wait, run                                       *prometheus.HistogramVec
}

// maxScrapePages bounds the feed pages one scrape reads (10,000 seqs
// each); the rest is counted by the next.
const maxScrapePages = 100

func newTaskCollector(st store.Reader) (*taskCollector, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end, err := st.EventsAfter(ctx, store.EventFilter{After: -1})
	if err != nil {
		return nil, fmt.Errorf("the end of the events feed: %w", err)
	}
	labels := []string{"queue", "kind"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	buckets := []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
	return &taskCollector{
		st: st, cursor: end.Next, times: rollup.NewTracker(),
		enqueued:  counter("weft_tasks_enqueued_total", "Tasks enqueued, by any node, since this server started."),
		completed: counter("weft_tasks_completed_total", "Tasks completed since this server started."),
		failed:    counter("weft_tasks_failed_total", "Tasks failed (no attempt left, or a permanent error) since this server started."),
		retried:   counter("weft_tasks_retried_total", "Retries scheduled after a failed attempt since this server started."),
		cancelled: counter("weft_tasks_cancelled_total", "Tasks cancelled since this server started."),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_task_wait_seconds", Help: "How long attempts waited to start since their task became ready.", Buckets: buckets,
		}, labels),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_task_run_seconds", Help: "How long attempts ran, from their start to their outcome.", Buckets: buckets,
		}, labels),
	}, nil
}

func (c *taskCollector) vecs() []prometheus.Collector {
	return []prometheus.Collector{c.enqueued, c.completed, c.failed, c.retried, c.cancelled, c.wait, c.run}
}

// taskFeedDesc names the failure to read the feed at a scrape.
var taskFeedDesc = prometheus.NewDesc("weft_tasks_feed", "The feed of events, read at each scrape.", nil, nil)

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- taskFeedDesc
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
}

// Collect counts the events since the last scrape, then reports.
func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range maxScrapePages {
		page, err := c.st.EventsAfter(ctx, store.EventFilter{After: c.cursor})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(taskFeedDesc, err)
			break
		}
		for _, ev := range page.Events {
			c.count(ev)
		}
		if page.Next == c.cursor {
			break
		}
		c.cursor = page.Next
	}
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
}

func (c *taskCollector) count(ev store.Event) {
	q, k := ev.Queue, ev.Kind
	switch ev.Type {
	case store.EventCreated:
		c.enqueued.WithLabelValues(q, k).Inc()
	case store.EventCompleted:
		c.completed.WithLabelValues(q, k).Inc()
	case store.EventFailed:
		c.failed.WithLabelValues(q, k).Inc()
	case store.EventRetryScheduled:
		c.retried.WithLabelValues(q, k).Inc()
	case store.EventCancelled:
		c.cancelled.WithLabelValues(q, k).Inc()
	}
	wait, run, waited, ran := c.times.Observe(ev)
	if waited {
		c.wait.WithLabelValues(q, k).Observe(wait.Seconds())
	}
	if ran {
		c.run.WithLabelValues(q, k).Observe(run.Seconds())
	}
}
