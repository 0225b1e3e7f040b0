package backup_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

var (
	benchRate = flag.Int("backup.rate", 10000, "events per second of BenchmarkArchiveLag's paced phase")
	benchFor  = flag.Duration("backup.for", 5*time.Second, "how long each phase of BenchmarkArchiveLag runs")
	benchDur  = flag.String("backup.durability", "relaxed", "the log's durability in BenchmarkArchiveLag: strict or relaxed")
)

// BenchmarkArchiveLag measures, in one run, on appends of 256-byte
// events from 64 callers (relaxed durability by default: the rate a
// 2-core machine sustains with room to spare; -backup.durability strict):
//   - the lag of a folder replica while the log takes -backup.rate
//     events/s: for each event, from its acknowledgement to the end of
//     the first replica sync that holds it (p50, p99, max);
//   - the append throughput with the backup on and off (64 callers,
//     unpaced), and their ratio: the cost of backup on appends.
//
// go test -run '^$' -bench ArchiveLag -benchtime 1x ./kernel/backup/
func BenchmarkArchiveLag(b *testing.B) {
	data := json.RawMessage(`{"pad":"` + strings.Repeat("x", 246) + `"}`)
	dur, err := eventlog.ParseDurability(*benchDur)
	if err != nil {
		b.Fatal(err)
	}
	tune := func(k *kernel.Kernel) { k.Durability = dur }
	for range b.N {
		// Without backup: the raw throughput.
		off := startNode(b, b.TempDir(), backup.Config{}, tune)
		without := appendFor(b, off, *benchFor, 0, data, nil)
		off.stop(b)

		var mu sync.Mutex
		var copies []copyAt
		cfg := backup.Config{Replicas: []string{filepath.Join(b.TempDir(), "replica")}, OnCopied: func(_ string, seq uint64) {
			mu.Lock()
			copies = append(copies, copyAt{seq, time.Now()})
			mu.Unlock()
		}}
		on := startNode(b, b.TempDir(), cfg, tune)
		with := appendFor(b, on, *benchFor, 0, data, nil)
		// Paced: the lag bar.
		acks := map[uint64]time.Time{}
		var amu sync.Mutex
		paced := appendFor(b, on, *benchFor, *benchRate, data, func(seq uint64, at time.Time) {
			amu.Lock()
			acks[seq] = at
			amu.Unlock()
		})
		waitCopied(b, on, on.tail(b))
		on.stop(b)

		mu.Lock()
		lags := make([]time.Duration, 0, len(acks))
		for seq, at := range acks {
			i, _ := slices.BinarySearchFunc(copies, seq, func(c copyAt, s uint64) int {
				if c.seq < s {
					return -1
				}
				if c.seq > s {
					return 1
				}
				return 0
			})
			if i == len(copies) {
				b.Fatalf("event %d never copied", seq)
			}
			lags = append(lags, max(0, copies[i].at.Sub(at)))
		}
		mu.Unlock()
		slices.Sort(lags)
		pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
		b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "lag_p50_ms")
		b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "lag_p99_ms")
		b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "lag_max_ms")
		b.ReportMetric(paced, "paced_ev/s")
		b.ReportMetric(without, "append_off_ev/s")
		b.ReportMetric(with, "append_on_ev/s")
		b.ReportMetric(with/without, "on/off")
		b.Logf("paced at %d ev/s (got %.0f): replica lag p50 %v, p99 %v, max %v over %d events, %d syncs; appends with backup %.0f ev/s, without %.0f ev/s: %.2fx",
			*benchRate, paced, pct(0.5), pct(0.99), lags[len(lags)-1], len(lags), len(copies), with, without, with/without)
	}
}

type copyAt struct {
	seq uint64
	at  time.Time
}

// appendFor appends single events from 64 callers for d, at rate events
// per second in all (0: as fast as they go), calling acked with each
// event's sequence and acknowledgement time; it returns events/s.
func appendFor(b *testing.B, n *node, d time.Duration, rate int, data json.RawMessage, acked func(uint64, time.Time)) float64 {
	b.Helper()
	ctx := context.Background()
	const callers = 64
	var count atomic.Int64
	var tokens chan struct{}
	stop := make(chan struct{})
	if rate > 0 {
		tokens = make(chan struct{}, callers)
		go func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			start := time.Now()
			sent := 0
			for {
				select {
				case <-stop:
					close(tokens)
					return
				case now := <-tick.C:
					due := int(now.Sub(start).Seconds() * float64(rate))
					for ; sent < due; sent++ {
						select {
						case tokens <- struct{}{}:
						case <-stop:
							close(tokens)
							return
						}
					}
				}
			}
		}()
	}
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if tokens != nil {
					if _, ok := <-tokens; !ok {
						return
					}
				} else {
					select {
					case <-stop:
						return
					default:
					}
				}
				res, err := n.k.Append(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.%d", w), Type: noteType, Data: data}})
				if err != nil {
					failed.Store(err)
					return
				}
				if acked != nil {
					acked(res.LastSeq, time.Now())
				}
				count.Add(1)
			}
		}()
	}
	time.Sleep(d)
	close(stop)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	return float64(count.Load()) / time.Since(start).Seconds()
}

var benchRestoreEvents = flag.Int("backup.restore-events", 100000, "events BenchmarkRestore backs up and restores")

// BenchmarkRestore backs up a log of -backup.restore-events events of
// 256 bytes (through the archive and a folder replica), restores it
// into a new directory, and then opens a kernel there that folds a
// projection of one row per event: the restore's rate and the
// projection rebuild's rate, in the same run.
//
// go test -run '^$' -bench Restore -benchtime 1x ./kernel/backup/ -backup.restore-events 1000000
func BenchmarkRestore(b *testing.B) {
	total := *benchRestoreEvents
	data := json.RawMessage(`{"pad":"` + strings.Repeat("x", 246) + `"}`)
	relaxed := func(k *kernel.Kernel) { k.Durability = eventlog.Relaxed }
	for range b.N {
		rep := filepath.Join(b.TempDir(), "replica")
		n := startNode(b, b.TempDir(), backup.Config{Replicas: []string{rep}}, relaxed)
		ctx := context.Background()
		pend := make(chan *eventlog.Pending, 4000)
		done := make(chan error, 1)
		go func() {
			var err error
			for p := range pend {
				if _, e := p.Wait(); e != nil && err == nil {
					err = e
				}
			}
			done <- err
		}()
		for i := range total {
			p, err := n.k.Log().AppendAsync(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.%d", i%64), Type: noteType, Data: data}})
			if err != nil {
				b.Fatal(err)
			}
			pend <- p
		}
		close(pend)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		archiveStart := time.Now()
		tail := n.tail(b)
		waitCopied(b, n, tail)
		archived := time.Since(archiveStart)
		n.stop(b)

		dir := b.TempDir()
		res, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: dir})
		if err != nil {
			b.Fatal(err)
		}
		restoreRate := float64(res.Events) / res.Seconds

		start := time.Now()
		k := kernel.New(dir)
		k.NoHTTP, k.Logger, k.Durability = true, slog.New(slog.DiscardHandler), eventlog.Relaxed
		if err := k.RegisterEvent(noteType, 1, []byte(`{"type":"object"}`)); err != nil {
			b.Fatal(err)
		}
		if err := k.RegisterProjection(projections.Projection{
			Name: "rows", Version: 1,
			Tables: []schemas.Table{{Name: "rows", Columns: []schemas.Column{
				{Name: "seq", Type: "INTEGER", PrimaryKey: true},
				{Name: "stream", Type: "TEXT", NotNull: true},
				{Name: "data", Type: "TEXT", NotNull: true},
			}}},
			Filter: eventlog.Filter{Types: []string{noteType}},
			Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO rows (seq, stream, data) VALUES (?, ?, ?)`, e.Seq, e.Stream, string(e.Data))
				return err
			},
		}); err != nil {
			b.Fatal(err)
		}
		if err := k.Open(ctx); err != nil {
			b.Fatal(err)
		}
		if err := k.WaitReady(ctx); err != nil {
			b.Fatal(err)
		}
		rebuild := time.Since(start)
		k.Close(ctx)
		rebuildRate := float64(tail) / rebuild.Seconds()
		b.ReportMetric(restoreRate, "restore_ev/s")
		b.ReportMetric(rebuildRate, "rebuild_ev/s")
		b.ReportMetric(restoreRate/rebuildRate, "restore/rebuild")
		b.Logf("%d events: archived and replicated in %v after the appends; restore %.1fs (%.0f ev/s, %d blobs); projection rebuild after it %.1fs (%.0f ev/s): %.2fx",
			tail, archived.Round(time.Millisecond), res.Seconds, restoreRate, res.Blobs, rebuild.Seconds(), rebuildRate, restoreRate/rebuildRate)
	}
}
