package kernel

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics use github.com/prometheus/client_golang, the reference client:
// the exposition format is the one Prometheus scrapers expect, and the Go
// runtime and process collectors come with it.

var (
	descLogSeq      = prometheus.NewDesc("fazt_log_last_seq", "Sequence of the newest event in the log.", nil, nil)
	descCheckpoint  = prometheus.NewDesc("fazt_projection_checkpoint_seq", "Last log sequence the projection's serving file has folded; rate() of it is the apply rate.", []string{"projection"}, nil)
	descLag         = prometheus.NewDesc("fazt_projection_lag", "Log sequences the projection has not folded yet.", []string{"projection"}, nil)
	descHalted      = prometheus.NewDesc("fazt_projection_halted", "1 when the projection is halted at a failing event.", []string{"projection"}, nil)
	descRebuildDone = prometheus.NewDesc("fazt_projection_rebuild_done_seq", "Sequences a rebuild in progress has folded (0 when none runs).", []string{"projection"}, nil)
	descRebuildRate = prometheus.NewDesc("fazt_projection_rebuild_rate", "Sequences per second of a rebuild in progress.", []string{"projection"}, nil)
	descCritical    = prometheus.NewDesc("fazt_projection_critical", "1 when the node's readiness depends on the projection.", []string{"projection"}, nil)
	descReady       = prometheus.NewDesc("fazt_ready", "1 when /readyz answers 200: the log is open and the critical projections have caught up and run.", nil, nil)

	// Records in the kernel's own categories that start-up passed over.
	descSchemaSkipped     = prometheus.NewDesc("fazt_schema_registrations_skipped", "Records in the log's schemas category that the registry did not apply at start (see fazt doctor).", nil, nil)
	descReactorUnreadable = prometheus.NewDesc("fazt_reactor_records_unreadable", "Records of a reactor's parked events that could not be read and were passed over.", []string{"reactor"}, nil)

	// The log's commit loop, since the process started.
	descAppends  = prometheus.NewDesc("fazt_log_appends_total", "Appends written to the log (not duplicates or refusals).", nil, nil)
	descEvents   = prometheus.NewDesc("fazt_log_events_appended_total", "Events those appends wrote.", nil, nil)
	descGroups   = prometheus.NewDesc("fazt_log_groups_total", "Group commits published; events per group is how well appends share them.", nil, nil)
	descBatches  = prometheus.NewDesc("fazt_log_batches_total", "Groups published as one JetStream atomic batch (they hold multi-event appends).", nil, nil)
	descFsyncs   = prometheus.NewDesc("fazt_log_fsyncs_total", "Fsyncs of the event stream by the log (strict durability).", nil, nil)
	descRetries  = prometheus.NewDesc("fazt_log_retries_total", "Appends published again after a write was refused.", nil, nil)
	descResent   = prometheus.NewDesc("fazt_log_resent_total", "Appends sent again with the same IDs because JetStream did not answer (a cluster electing a stream leader).", nil, nil)
	descRebuilds = prometheus.NewDesc("fazt_log_view_rebuilds_total", "Times the commit loop re-read its view of the streams after a refused write.", nil, nil)
	descBadMsgs  = prometheus.NewDesc("fazt_log_malformed_messages_total", "Messages written around the kernel that are not valid events (bad envelope, data not JSON, version out of sequence), each counted once when first read.", nil, nil)
)

// kernelCollector reads the log and the projections at scrape time, so the
// figures are never stale and nothing is kept in between.
type kernelCollector struct{ a *api }

func (c kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogSeq, descCheckpoint, descLag, descHalted, descRebuildDone, descRebuildRate,
		descCritical, descReady, descSchemaSkipped, descReactorUnreadable,
		descAppends, descEvents, descGroups, descBatches, descFsyncs, descRetries, descResent, descRebuilds, descBadMsgs} {
		ch <- d
	}
}

func (c kernelCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.a.open.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if seq, err := c.a.log.LastSeq(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descLogSeq, prometheus.GaugeValue, float64(seq))
	}
	st := c.a.log.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descAppends, st.Appends}, {descEvents, st.Events}, {descGroups, st.Groups}, {descBatches, st.Batches},
		{descFsyncs, st.Fsyncs}, {descRetries, st.Retries}, {descResent, st.Resent}, {descRebuilds, st.ViewRebuilds}, {descBadMsgs, st.Malformed}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
	for _, s := range c.a.k.runner.Statuses() {
		ch <- prometheus.MustNewConstMetric(descCheckpoint, prometheus.CounterValue, float64(s.Seq), s.Name)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(s.Lag), s.Name)
		halted := 0.0
		if s.Halted != nil {
			halted = 1
		}
		ch <- prometheus.MustNewConstMetric(descHalted, prometheus.GaugeValue, halted, s.Name)
		var done, rate float64
		if s.Rebuild != nil {
			done, rate = float64(s.Rebuild.Done), s.Rebuild.Rate
		}
		ch <- prometheus.MustNewConstMetric(descRebuildDone, prometheus.GaugeValue, done, s.Name)
		ch <- prometheus.MustNewConstMetric(descRebuildRate, prometheus.GaugeValue, rate, s.Name)
		ch <- prometheus.MustNewConstMetric(descCritical, prometheus.GaugeValue, boolGauge(s.Critical), s.Name)
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, boolGauge(c.a.k.Ready()))
	ch <- prometheus.MustNewConstMetric(descSchemaSkipped, prometheus.GaugeValue, float64(len(c.a.reg.Skipped())))
	for _, h := range c.a.k.Reactors() {
		ch <- prometheus.MustNewConstMetric(descReactorUnreadable, prometheus.GaugeValue, float64(len(h.Unreadable())), h.Name())
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// httpMetrics count and time requests by route pattern (a bounded set)
// and status code.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() httpMetrics {
	return httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fazt_http_requests_total",
			Help: "HTTP requests by route pattern and status code (route \"none\" when no route matched)."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fazt_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, by route pattern; live streams count when they end.", Buckets: prometheus.DefBuckets}, []string{"route"}),
	}
}

func (m httpMetrics) observe(route string, code int, d time.Duration) {
	if route == "" {
		route = "none"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// statusWriter remembers the status of a response. Unwrap keeps
// http.ResponseController (flushes, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// newMetricsRegistry holds the kernel's figures, its HTTP metrics, the Go
// runtime's and the process's; verticals add theirs through
// Kernel.Metrics.
func (a *api) newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(kernelCollector{a}, storageCollector{a}, a.httpm.requests, a.httpm.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
