// Package metrics exposes the service's Prometheus metrics: calls to the
// cloud by action and result code, time spent waiting for the cloud's
// request budget, the tracker's pollers and watchers, polls per task, export
// outcomes, and the gRPC server's own metrics.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/tracker"
)

const namespace = "cwpexport"

// Budget names, the "budget" label of the budget wait histogram.
const (
	BudgetRead   = "read"
	BudgetCreate = "create"
)

// ResultSuccess is the "code" label of a cloud call that succeeded.
const ResultSuccess = "Success"

// StatsSource reports the tracker's current counts.
type StatsSource interface {
	Stats() tracker.Stats
}

// Metrics holds the service's collectors in a registry of their own, so
// that several servers in one process (tests) do not collide.
type Metrics struct {
	reg           *prometheus.Registry
	grpc          *grpcprom.ServerMetrics
	upstreamCalls *prometheus.CounterVec
	upstreamTime  *prometheus.HistogramVec
	budgetWait    *prometheus.HistogramVec
	pollsPerTask  prometheus.Histogram
	outcomes      *prometheus.CounterVec
	ready         prometheus.Gauge
	pruned        prometheus.Counter
	// recent counts the last minute's cloud calls per second, by action.
	recent map[string]*budget.Window
}

// New creates the collectors. Call TrackStats to add the tracker's gauges.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.005, .025, .1, .5, 1, 5, 30, 120, 600}),
		)),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_calls_total",
			Help: "Calls to the cloud API by action and result code (Success, or the cloud's error code).",
		}, []string{"action", "code"}),
		upstreamTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_call_duration_seconds",
			Help:    "Duration of calls to the cloud API by action.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"action"}),
		budgetWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "budget_wait_seconds",
			Help:    "Time a cloud call waited for a token of its request budget (read: ExportTasks polls, create: ExportLicenseDetail).",
			Buckets: []float64{0, .001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"budget"}),
		pollsPerTask: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "task_polls",
			Help:    "ExportTasks calls made for a task by the time it reached a terminal state.",
			Buckets: []float64{1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144},
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "registry_pruned_total",
			Help: "Ended tasks this process's retention passes deleted from the registry (one pass per fleet per period).",
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "export_outcomes_total",
			Help: "Tasks that reached a terminal state, by outcome: finished, error (the cloud reported ERROR) or failed (the task could not be followed, e.g. unknown to the cloud).",
		}, []string{"outcome"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "ready",
			Help: "1 while the replica reports itself ready (gRPC health SERVING, /healthz 200), 0 while its database cannot be reached.",
		}),
		recent: map[string]*budget.Window{
			cloud.ActionExportTasks:         {},
			cloud.ActionExportLicenseDetail: {},
		},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.upstreamCalls, m.upstreamTime, m.budgetWait, m.pollsPerTask, m.outcomes, m.ready, m.pruned,
		buildInfo(), schemaCollector{},
	)
	m.ready.Set(1)
	return m
}

// Pruned records the ended tasks a retention pass of this process deleted
// from the registry.
func (m *Metrics) Pruned(n int64) { m.pruned.Add(float64(n)) }

// TrackStats adds gauges read from src at each scrape: the tracker's tasks,
// active pollers and active watchers. Call it once.
func (m *Metrics) TrackStats(src StatsSource) {
	m.reg.MustRegister(trackerCollector{src})
}

// TrackBudget adds the budget's figures, read at each scrape, labelled with
// its name (BudgetRead or BudgetCreate): the effective rate, the configured
// rate, and the refusals for the cloud's rate limit it was told of. Call
// it once per budget.
func (m *Metrics) TrackBudget(name string, b budget.Engine) {
	labels := prometheus.Labels{"budget": name}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "budget_rate", ConstLabels: labels,
			Help: "Calls per second the budget allows now: the configured rate, lowered while the cloud throttles (its quota is shared with other programs) and recovering after.",
		}, b.Rate),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "budget_configured_rate", ConstLabels: labels,
			Help: "Calls per second the budget is configured for.",
		}, b.Configured),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "budget_throttles_total", ConstLabels: labels,
			Help: "Calls the cloud refused with RequestLimitExceeded, each lowering the budget's rate unless one did within the last second.",
		}, func() float64 { return float64(b.Throttles()) }),
	)
}

// SetReady records the replica's readiness, as its health service reports it.
func (m *Metrics) SetReady(ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.ready.Set(v)
}

// GRPC returns the gRPC server metrics; its interceptors go on the server
// and InitializeMetrics registers its methods once they are known.
func (m *Metrics) GRPC() *grpcprom.ServerMetrics { return m.grpc }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry returns the registry, for tests that read values directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// BudgetWaited records a poll's wait for the read budget.
func (m *Metrics) BudgetWaited(d time.Duration) {
	m.budgetWait.WithLabelValues(BudgetRead).Observe(d.Seconds())
}

// CreateBudgetWaited records a wait for the export-creation budget.
func (m *Metrics) CreateBudgetWaited(d time.Duration) {
	m.budgetWait.WithLabelValues(BudgetCreate).Observe(d.Seconds())
}

// Polled records, from a task's first terminal observation, its outcome and
// how many polls it took (tracker.Observer).
func (m *Metrics) Polled(s tracker.Snapshot, settled bool) {
	if !settled {
		return
	}
	outcome := "failed"
	switch {
	case s.Err != nil:
	case s.State == cloud.StatusFinished:
		outcome = "finished"
	case s.State == cloud.StatusError:
		outcome = "error"
	}
	m.outcomes.WithLabelValues(outcome).Inc()
	m.pollsPerTask.Observe(float64(s.Polls))
}

// observeCall records one cloud call.
func (m *Metrics) observeCall(action string, start time.Time, err error) {
	m.upstreamTime.WithLabelValues(action).Observe(time.Since(start).Seconds())
	m.upstreamCalls.WithLabelValues(action, resultCode(err)).Inc()
	if r := m.recent[action]; r != nil {
		r.Add(start, cloud.KindOf(err) == cloud.KindThrottled)
	}
}

// CloudCalls returns the calls made to the cloud action in each of the
// budget.CallWindow whole seconds before now, oldest first (by the second each
// call started), and how many of them the cloud answered with
// RequestLimitExceeded.
func (m *Metrics) CloudCalls(action string, now time.Time) (perSecond []int32, throttled int32) {
	r := m.recent[action]
	if r == nil {
		return make([]int32, budget.CallWindow), 0
	}
	return r.Calls(now)
}

// resultCode is the cloud's error code, or a fixed word for errors that have
// none; the set stays small because the cloud's codes are a fixed list.
func resultCode(err error) string {
	if err == nil {
		return ResultSuccess
	}
	var ce *cloud.Error
	if errors.As(err, &ce) && ce.Code != "" {
		return ce.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "Canceled"
	}
	return "Other"
}

// CloudAPI is the cloud client that Cloud instruments.
type CloudAPI interface {
	ExportLicenseDetail(ctx context.Context, p cloud.ExportParams) (cloud.Created, error)
	ExportTasks(ctx context.Context, taskID int64) (cloud.TaskStatus, error)
}

// Cloud wraps a cloud client, counting and timing each call.
type Cloud struct {
	next CloudAPI
	m    *Metrics
}

// InstrumentCloud returns c with every call recorded in m.
func (m *Metrics) InstrumentCloud(c CloudAPI) *Cloud { return &Cloud{next: c, m: m} }

// ExportLicenseDetail calls the cloud and records the call.
func (c *Cloud) ExportLicenseDetail(ctx context.Context, p cloud.ExportParams) (cloud.Created, error) {
	start := time.Now()
	r, err := c.next.ExportLicenseDetail(ctx, p)
	c.m.observeCall(cloud.ActionExportLicenseDetail, start, err)
	return r, err
}

// ExportTasks calls the cloud and records the call.
func (c *Cloud) ExportTasks(ctx context.Context, taskID int64) (cloud.TaskStatus, error) {
	start := time.Now()
	r, err := c.next.ExportTasks(ctx, taskID)
	c.m.observeCall(cloud.ActionExportTasks, start, err)
	return r, err
}

// trackerCollector reads the tracker's counts once per scrape.
type trackerCollector struct{ src StatsSource }

var (
	descTasks = prometheus.NewDesc(namespace+"_tracker_tasks",
		"Tasks the tracker holds (cached or followed).", nil, nil)
	descPollers = prometheus.NewDesc(namespace+"_tracker_active_pollers",
		"Tasks being polled: scheduled for a next ExportTasks call.", nil, nil)
	descWatchers = prometheus.NewDesc(namespace+"_tracker_active_watchers",
		"Open watches (watch streams and reads waiting for an observation).", nil, nil)
)

func (c trackerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTasks
	ch <- descPollers
	ch <- descWatchers
}

func (c trackerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(descTasks, prometheus.GaugeValue, float64(s.Tasks))
	ch <- prometheus.MustNewConstMetric(descPollers, prometheus.GaugeValue, float64(s.Scheduled))
	ch <- prometheus.MustNewConstMetric(descWatchers, prometheus.GaugeValue, float64(s.Watchers))
}
