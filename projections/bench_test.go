package projections_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

// The benchmarks measure the runner against its raw ingredients on the
// same machine in the same run and report the ratio: absolute numbers
// drift between machines, ratios much less.

var rebuildEvents = flag.Int("rebuild.events", 1_000_000, "events in the log that BenchmarkRebuild rebuilds")

// rebuildKeys is how many distinct counters the rebuilt events touch.
const rebuildKeys = 1000

// BenchmarkRebuild measures a full build of a counting projection from
// a log of -rebuild.events events against its two raw ingredients,
// measured in the same run: a raw JetStream ordered consumer reading
// every message of the stream, and a batched SQLite upsert of the same
// rows with a prepared statement (the best a hand-written loader does;
// the counting Apply uses projections.Exec, which prepares too). The
// target is rebuild >= 0.5 × min(replay, insert). The unprepared upsert
// is reported for context.
//
// Each b.Loop iteration is one round of all three, so -benchtime 3x
// alternates them three times and reports medians (shared machines
// drift more than the difference measured).
func BenchmarkRebuild(b *testing.B) {
	n := *rebuildEvents
	ctx := context.Background()
	l := openLog(b, func(l *eventlog.Log) { l.Durability = eventlog.Relaxed })
	fill := time.Now()
	last := fillLog(b, l, n)
	fillTime := time.Since(fill)
	if last != uint64(n) {
		b.Fatalf("log ends at seq %d, want %d", last, n)
	}
	// Registered but not opened: an open runner would back-fill the same
	// events in the background, competing with what is measured.
	r := projections.New(b.TempDir(), l)
	r.Logger = slog.New(slog.DiscardHandler)
	if err := r.Register(counter("bench", eventlog.Filter{Categories: []string{"bench"}})); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, rebuildKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	dir := b.TempDir()
	runtime.GC()

	var replays, inserts, unprepareds, rebuilds, ratios []float64
	round := 0
	for b.Loop() {
		round++
		start := time.Now()
		if got := rawReplay(b, l, n); got != n {
			b.Fatalf("raw replay read %d messages, want %d", got, n)
		}
		replay := rate(n, time.Since(start))

		start = time.Now()
		batchInsert(b, filepath.Join(dir, fmt.Sprintf("unprepared%d.db", round)), n, keys, false)
		unprepared := rate(n, time.Since(start))

		start = time.Now()
		batchInsert(b, filepath.Join(dir, fmt.Sprintf("insert%d.db", round)), n, keys, true)
		insert := rate(n, time.Since(start))

		out := filepath.Join(dir, fmt.Sprintf("rebuild%d.db", round))
		start = time.Now()
		if err := r.BuildAsOf(ctx, "bench", last, out); err != nil {
			b.Fatal(err)
		}
		rebuild := rate(n, time.Since(start))

		b.StopTimer()
		if got := total(countsOf(b, openFile(b, out))); got != n {
			b.Fatalf("rebuilt file counts %d events, want %d", got, n)
		}
		b.StartTimer()

		replays, inserts, unprepareds = append(replays, replay), append(inserts, insert), append(unprepareds, unprepared)
		rebuilds = append(rebuilds, rebuild)
		ratios = append(ratios, rebuild/min(replay, insert))
	}
	b.ReportMetric(fillTime.Seconds(), "fill-s")
	b.ReportMetric(rate(n, fillTime), "fill-events/s")
	b.ReportMetric(median(replays), "replay-events/s")
	b.ReportMetric(median(inserts), "insert-events/s")
	b.ReportMetric(median(unprepareds), "insert-unprepared-events/s")
	b.ReportMetric(median(rebuilds), "rebuild-events/s")
	b.ReportMetric(median(ratios), "ratio")
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// fillLog appends n small counting events, 500 per append with many
// appends in flight, generating them chunk by chunk so that they are
// never all in memory. It returns the last sequence.
func fillLog(tb testing.TB, l *eventlog.Log, n int) uint64 {
	tb.Helper()
	ctx := context.Background()
	window := make(chan *eventlog.Pending, 16)
	lastc := make(chan uint64, 1)
	var failed atomic.Value
	go func() {
		var last uint64
		for p := range window {
			res, err := p.Wait()
			if err != nil {
				failed.CompareAndSwap(nil, err)
				continue
			}
			last = max(last, res.LastSeq)
		}
		lastc <- last
	}()
	for i := 0; i < n; {
		chunk := make([]eventlog.Event, min(n-i, eventlog.MaxAppendEvents))
		for j := range chunk {
			k := i + j
			chunk[j] = eventlog.Event{Stream: fmt.Sprintf("bench.%d", k%7), Type: "bench.hit",
				Data: fmt.Appendf(nil, `{"k":"k%d"}`, k%rebuildKeys)}
		}
		p, err := l.AppendAsync(ctx, chunk)
		if err != nil {
			close(window)
			tb.Fatalf("append: %v", err)
		}
		window <- p
		i += len(chunk)
	}
	close(window)
	last := <-lastc
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatalf("append: %v", err)
	}
	return last
}

// rawReplay reads the log's whole stream with a JetStream ordered
// consumer, the raw ingredient of a replay: no decoding into events,
// which is the runner's work. It returns the messages read.
func rawReplay(tb testing.TB, l *eventlog.Log, n int) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	js, err := jetstream.New(l.Conn())
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, l.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	var got, size int
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		size += len(m.Data()) // the handler runs on one goroutine
		if got++; got == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(1000))
	if err != nil {
		tb.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		tb.Fatalf("raw replay: %v after %d messages", ctx.Err(), got)
	}
	cc.Stop()
	if size == 0 {
		tb.Fatal("raw replay read no data")
	}
	return got
}

// batchInsert writes the counter rows of n events cycling through keys,
// projections.DefaultBatchSize per transaction (the runner's BatchSize):
// the raw ingredient of a fold. Prepared, the statement is compiled once; unprepared, SQLite
// compiles it for every row (tx.ExecContext with the text).
func batchInsert(tb testing.TB, path string, n int, keys []string, prepared bool) {
	tb.Helper()
	ctx := context.Background()
	db := sqlitedb.New(path)
	db.Readers = 1
	if err := db.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := sqlitedb.Migrate(ctx, db, []schemas.Table{countersTable}...); err != nil {
		tb.Fatal(err)
	}
	const upsert = `INSERT INTO counters (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1`
	var stmt *sql.Stmt
	if prepared {
		var err error
		if stmt, err = db.Writer.PrepareContext(ctx, upsert); err != nil {
			tb.Fatal(err)
		}
		defer stmt.Close()
	}
	for i := 0; i < n; {
		tx, err := db.Writer.BeginTx(ctx, nil)
		if err != nil {
			tb.Fatal(err)
		}
		exec := func(args ...any) (sql.Result, error) { return tx.ExecContext(ctx, upsert, args...) }
		if stmt != nil {
			exec = tx.StmtContext(ctx, stmt).Exec // the writer's one connection: the statement is reused
		}
		for end := min(n, i+projections.DefaultBatchSize); i < end; i++ {
			if _, err := exec(keys[i%len(keys)]); err != nil {
				tb.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}
