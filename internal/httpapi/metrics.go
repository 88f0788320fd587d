package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.enqueued, m.claimed, &queueCollector{st: st}} {
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
