package projections_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

// BenchmarkRebuild measures a full build of a counting projection
// against its two raw ingredients in the same run: reading the events
// in order (ordered replay) and writing the same rows to SQLite in
// batches. The target is rebuild/min(replay, insert) >= 0.5.
func BenchmarkRebuild(b *testing.B) {
	const n = 20000
	l := openLog(b)
	ctx := context.Background()
	last := appendAll(b, l, hits("bench", n, 100)...)
	p := counter("bench", eventlog.Filter{Categories: []string{"bench"}})
	r := openRunner(b, l, runnerOpts{}, p)
	dir := b.TempDir()

	var replay, insert, rebuild time.Duration
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		var keys []string
		for after := uint64(0); after < last; {
			page, err := l.Read(ctx, after, 1000, p.Filter)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range page.Events {
				keys = append(keys, countKey(e))
			}
			after = page.LastSeq
		}
		replay += time.Since(start)

		start = time.Now()
		batchInsert(b, filepath.Join(dir, fmt.Sprintf("insert%d.db", i)), keys)
		insert += time.Since(start)

		start = time.Now()
		if err := r.BuildAsOf(ctx, "bench", last, filepath.Join(dir, fmt.Sprintf("rebuild%d.db", i))); err != nil {
			b.Fatal(err)
		}
		rebuild += time.Since(start)
	}
	rate := func(d time.Duration) float64 { return float64(n*i) / d.Seconds() }
	b.ReportMetric(rate(replay), "replay-events/s")
	b.ReportMetric(rate(insert), "insert-events/s")
	b.ReportMetric(rate(rebuild), "rebuild-events/s")
	b.ReportMetric(rate(rebuild)/min(rate(replay), rate(insert)), "ratio")
}

// batchInsert writes the counter rows for keys, 1000 per transaction.
func batchInsert(tb testing.TB, path string, keys []string) {
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := sqlitedb.Migrate(ctx, db, []schemas.Table{countersTable}...); err != nil {
		tb.Fatal(err)
	}
	for len(keys) > 0 {
		k := min(len(keys), 1000)
		tx, err := db.Writer.BeginTx(ctx, nil)
		if err != nil {
			tb.Fatal(err)
		}
		for _, key := range keys[:k] {
			if _, err := tx.ExecContext(ctx, `INSERT INTO counters (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1`, key); err != nil {
				tb.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			tb.Fatal(err)
		}
		keys = keys[k:]
	}
}
