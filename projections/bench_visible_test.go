package projections_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

var (
	visibleSeconds = flag.Float64("visible.seconds", 10, "seconds BenchmarkAppendVisible offers events for, per durability")
	visibleRate    = flag.Int("visible.rate", 1000, "events per second BenchmarkAppendVisible offers")
)

// BenchmarkAppendVisible measures how long an event takes from its
// append to the read model: an open-loop appender offers -visible.rate
// events/s, one event per append, for -visible.seconds, and each
// event's latency runs from its scheduled send time until the serving
// file's checkpoint covers it. The target is p99 < 10 ms at 1000 ev/s
// with strict durability; relaxed is reported for context.
func BenchmarkAppendVisible(b *testing.B) {
	for _, d := range []eventlog.Durability{eventlog.Strict, eventlog.Relaxed} {
		b.Run(d.String(), func(b *testing.B) {
			l := openLog(b, func(l *eventlog.Log) { l.Durability = d })
			r := openRunner(b, l, runnerOpts{logger: slog.New(slog.DiscardHandler)},
				counter("bench", eventlog.Filter{Categories: []string{"bench"}}))
			offered := time.Duration(*visibleSeconds * float64(time.Second))
			pacedAppends(b, l, r.WaitFor, min(time.Second, offered)) // warm-up, not counted
			var visible, acked, folded []time.Duration
			var n int
			var took time.Duration
			for b.Loop() {
				s := pacedAppends(b, l, r.WaitFor, offered)
				visible, acked = append(visible, s.visible...), append(acked, s.acked...)
				for i := range s.visible { // from the append's acknowledgement: the runner's share
					folded = append(folded, s.visible[i]-s.acked[i])
				}
				n, took = n+len(s.visible), took+s.took
			}
			slices.Sort(visible)
			slices.Sort(acked)
			slices.Sort(folded)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(quantile(visible, 0.50)), "p50-ms")
			b.ReportMetric(ms(quantile(visible, 0.99)), "p99-ms")
			b.ReportMetric(ms(visible[len(visible)-1]), "max-ms")
			b.ReportMetric(ms(quantile(acked, 0.99)), "append-p99-ms")
			b.ReportMetric(ms(quantile(folded, 0.99)), "after-ack-p99-ms")
			b.ReportMetric(float64(n)/took.Seconds(), "events/s")
		})
	}
}

type pacedSamples struct {
	visible, acked []time.Duration // from the scheduled send time
	took           time.Duration   // from the first slot to the last event visible
}

// pacedAppends offers one event per slot of 1/-visible.rate for d.
// Slots are handed to a pool of goroutines, so a slow fsync delays the
// events it holds but not those scheduled after it, and latency counts
// from the slot, so time an event spent queued for a goroutine counts
// too (no coordinated omission).
//
// Visibility is measured with WaitFor in the appending goroutine: it is
// the read-your-writes call a client makes, woken by the commit that
// covers the sequence, so it adds no polling quantum; polling Status
// would either add one or keep a core of the machine busy spinning.
func pacedAppends(tb testing.TB, l *eventlog.Log, waitFor func(context.Context, string, uint64) error, d time.Duration) pacedSamples {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	interval := time.Second / time.Duration(*visibleRate)
	n := max(1, int(d/interval))
	type slot struct {
		i  int
		at time.Time
	}
	slots := make(chan slot, n)
	visible, acked := make([]time.Duration, n), make([]time.Duration, n)
	ends := make([]time.Time, n)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for range 128 {
		wg.Go(func() {
			for s := range slots {
				e := eventlog.Event{Stream: fmt.Sprintf("bench.%d", s.i%7), Type: "bench.hit", Data: fmt.Appendf(nil, `{"k":"k%d"}`, s.i%100)}
				res, err := l.Append(ctx, []eventlog.Event{e})
				ack := time.Now()
				if err == nil {
					err = waitFor(ctx, "bench", res.LastSeq)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				ends[s.i] = time.Now()
				visible[s.i], acked[s.i] = ends[s.i].Sub(s.at), ack.Sub(s.at)
			}
		})
	}
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		slots <- slot{i, at}
	}
	close(slots)
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	last := slices.MaxFunc(ends, time.Time.Compare)
	return pacedSamples{visible: visible, acked: acked, took: last.Sub(start)}
}

// quantile is the nearest-rank q-quantile of sorted v.
func quantile(v []time.Duration, q float64) time.Duration {
	return v[max(0, int(math.Ceil(q*float64(len(v))))-1)]
}
