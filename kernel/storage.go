package kernel

import (
	"fmt"
	"net/http"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
)

// The log's storage: appends stop (HTTP 507, insufficient_storage) when
// the disk is down to Kernel.DiskReserve or the log reaches
// Kernel.StoreLimit, and resume by themselves once space returns. The
// node keeps serving reads meanwhile, so /readyz stays as it is and
// /readyz/writes says whether appends are taken; doctor and /metrics
// show the figures.

var (
	descStoreFree     = prometheus.NewDesc("fazt_log_storage_free_bytes", "Free space on the file system holding the log.", nil, nil)
	descStoreReserve  = prometheus.NewDesc("fazt_log_storage_reserve_bytes", "Free space appends leave alone (--disk-reserve).", nil, nil)
	descStoreUsed     = prometheus.NewDesc("fazt_log_storage_used_bytes", "What the log occupies in JetStream's file storage.", nil, nil)
	descStoreLimit    = prometheus.NewDesc("fazt_log_storage_limit_bytes", "The log's storage limit (--store-limit); 0 when only the disk bounds it.", nil, nil)
	descStoreRefusing = prometheus.NewDesc("fazt_log_writes_refused", "1 while appends are refused for lack of storage.", nil, nil)
	descStoreRefusals = prometheus.NewDesc("fazt_log_storage_refusals_total", "Appends refused for lack of storage.", nil, nil)
)

type storageCollector struct{ a *api }

func (c storageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStoreFree, descStoreReserve, descStoreUsed, descStoreLimit, descStoreRefusing, descStoreRefusals} {
		ch <- d
	}
}

func (c storageCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.a.open.Load() {
		return
	}
	st := c.a.log.Storage()
	refusing := 0.0
	if st.Refusing {
		refusing = 1
	}
	if st.Checked {
		ch <- prometheus.MustNewConstMetric(descStoreFree, prometheus.GaugeValue, float64(st.Free))
	}
	ch <- prometheus.MustNewConstMetric(descStoreReserve, prometheus.GaugeValue, float64(st.Reserve))
	ch <- prometheus.MustNewConstMetric(descStoreUsed, prometheus.GaugeValue, float64(st.Used))
	ch <- prometheus.MustNewConstMetric(descStoreLimit, prometheus.GaugeValue, float64(st.Limit))
	ch <- prometheus.MustNewConstMetric(descStoreRefusing, prometheus.GaugeValue, refusing)
	ch <- prometheus.MustNewConstMetric(descStoreRefusals, prometheus.CounterValue, float64(st.Refusals))
}

// readyzWrites is 200 while the log takes appends, 503 otherwise (not
// open, or out of storage). The route is open, so it says no more than
// that: the figures and the data directory are for doctor and /metrics,
// behind the token.
func (a *api) readyzWrites(w http.ResponseWriter, r *http.Request) {
	if !a.open.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "the event log is not open: the server is starting or stopping"})
		return
	}
	if a.log.Storage().Refusing {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "insufficient_storage",
			"reason": "appends are refused: the log's disk is down to its reserve or the log is at its storage limit; see fazt doctor"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// checkStorage is doctor's view of the log's storage.
func (k *Kernel) checkStorage() Check {
	st := k.log.Storage()
	c := Check{Name: "log storage", Status: CheckOK}
	if k.NATSURL != "" {
		c.Detail = "on the NATS server at " + k.NATSURL + ": its own limits apply"
		return c
	}
	limit := "no limit but the disk"
	if st.Limit > 0 {
		limit = "limit " + humanize.IBytes(st.Limit)
	}
	c.Detail = fmt.Sprintf("log uses %s (%s); %s free on its disk, reserve %s", humanize.IBytes(st.Used), limit, humanize.IBytes(st.Free), humanize.IBytes(st.Reserve))
	if !st.Checked {
		c.Detail = fmt.Sprintf("log uses %s (%s); free space cannot be measured on this platform, so no reserve is kept", humanize.IBytes(st.Used), limit)
	}
	switch {
	case st.Refusing:
		c.Status, c.Detail = CheckFail, st.Reason
		c.Fix = "free disk space on the data directory's file system, or raise --store-limit / lower --disk-reserve; appends resume by themselves"
	case st.Checked && st.Free < 2*st.Reserve:
		c.Status, c.Fix = CheckWarn, "free disk space soon: appends stop when the disk is down to the reserve"
	case st.Limit > 0 && st.Used > st.Limit/10*9:
		c.Status, c.Fix = CheckWarn, "the log is above 90% of --store-limit: raise it soon"
	}
	return c
}

var _ prometheus.Collector = storageCollector{}
