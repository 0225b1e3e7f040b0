package kernel

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
)

// kernelCollector reads the log and the projections at scrape time, so the
// figures are never stale and nothing is kept in between.
type kernelCollector struct{ a *api }

func (c kernelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogSeq, descCheckpoint, descLag, descHalted, descRebuildDone, descRebuildRate} {
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
	}
}

// metricsHandler serves /metrics: the kernel's figures, the Go runtime's
// and the process's.
func (a *api) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(kernelCollector{a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
