package analytics_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/verticals/analytics"
	"github.com/fazt-sh/fazt/verticals/analytics/analyticsbench"
)

var rebuildViews = flag.Int("rebuild.views", 20_000,
	"page views in the log BenchmarkRebuildAnalytics rebuilds (1000000 for the figures in BENCHMARKS.md)")

// BenchmarkRebuildAnalytics measures a full build of the analytics read
// model, through the projections runner (BuildAsOf), from a log of
// -rebuild.views realistic page views (analyticsbench.Sample), against
// the two raw ingredients of a fold measured in the same run: an
// ordered JetStream replay of the same events and a batched SQLite
// insert of the rows the read model ends up with. ratio is rebuild over
// min(replay, insert); the target is >= 0.5.
//
// Each b.Loop iteration is one round of all three, so -benchtime 3x
// alternates them three times and reports medians. The first round also
// checks that the rebuilt file and the inserted one hold the same rows.
func BenchmarkRebuildAnalytics(b *testing.B) {
	ctx := context.Background()
	l := eventlogtest.Open(b, func(l *eventlog.Log) {
		l.Durability = eventlog.Relaxed
		l.Logger = slog.New(slog.DiscardHandler)
	})

	s := analyticsbench.NewSample(*rebuildViews, 1)
	fill := time.Now()
	last, err := s.Fill(ctx, l, nil)
	if err != nil {
		b.Fatal(err)
	}
	fillTime := time.Since(fill)
	n := s.Events()
	// Registered but not opened: an open runner would back-fill the same
	// events in the background, competing with what is measured.
	r := projections.New(b.TempDir(), l)
	r.Logger = slog.New(slog.DiscardHandler)
	p := analytics.Projection()
	if err := r.Register(p); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	runtime.GC()

	var replays, inserts, rebuilds, ratios []float64
	round := 0
	for b.Loop() {
		round++
		start := time.Now()
		if err := analyticsbench.Replay(ctx, l, n); err != nil {
			b.Fatal(err)
		}
		replay := rate(n, time.Since(start))

		raw := filepath.Join(dir, fmt.Sprintf("insert%d.db", round))
		took, err := s.Insert(ctx, raw)
		if err != nil {
			b.Fatal(err)
		}
		insert := rate(n, took)

		out := filepath.Join(dir, fmt.Sprintf("rebuild%d.db", round))
		start = time.Now()
		if err := r.BuildAsOf(ctx, p.Name, last, out); err != nil {
			b.Fatal(err)
		}
		rebuild := rate(n, time.Since(start))

		b.StopTimer()
		if round == 1 {
			sameRows(b, raw, out)
		}
		removeDB(raw)
		removeDB(out)
		runtime.GC()
		b.StartTimer()

		replays, inserts, rebuilds = append(replays, replay), append(inserts, insert), append(rebuilds, rebuild)
		ratios = append(ratios, rebuild/min(replay, insert))
	}
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(rate(n, fillTime), "fill-events/s")
	b.ReportMetric(median(replays), "replay-events/s")
	b.ReportMetric(median(inserts), "insert-events/s")
	b.ReportMetric(median(rebuilds), "rebuild-events/s")
	b.ReportMetric(median(ratios), "ratio")
}

// sameRows fails unless the SQLite files at a and b hold the same read
// model.
func sameRows(tb testing.TB, a, b string) {
	tb.Helper()
	da, err := analyticsbench.Digest(context.Background(), a)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := analyticsbench.Digest(context.Background(), b)
	if err != nil {
		tb.Fatal(err)
	}
	if !reflect.DeepEqual(da, db) {
		tb.Fatalf("the read models differ:\n%s: %v\n%s: %v", filepath.Base(a), da, filepath.Base(b), db)
	}
}

func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
