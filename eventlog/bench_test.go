package eventlog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The benchmarks measure the kernel against raw JetStream on the same
// machine in the same run, and report the ratio: absolute numbers drift
// between machines, ratios much less.

var payload256 = func() []byte {
	b := make([]byte, 256)
	b[0] = '"'
	for i := 1; i < 255; i++ {
		b[i] = 'a' + byte(i%26)
	}
	b[255] = '"'
	return b
}()

// rawJetStream starts a bare embedded server and stream like the log's.
func rawJetStream(tb testing.TB, syncAlways bool) (jetstream.JetStream, *nats.Conn) {
	tb.Helper()
	opts := &server.Options{JetStream: true, StoreDir: filepath.Join(tb.TempDir(), "js"), DontListen: true, NoLog: true, NoSigs: true, SyncAlways: syncAlways, MaxPayload: 4 << 20}
	if !syncAlways {
		opts.SyncInterval = eventlog.DefaultSyncInterval
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		tb.Fatal("raw server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		tb.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, DenyDelete: true, DenyPurge: true, AllowDirect: true, AllowAtomicPublish: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown() })
	return js, nc
}

// timeIt runs n operations spread over callers goroutines and returns
// operations per second.
func timeIt(n, callers int, op func(i int) error) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// rounds alternates raw and kernel runs and reports medians: run-to-run
// drift on a shared machine is larger than the difference measured, and
// alternating exposes both to the same drift.
func rounds(b *testing.B, n int, raw, kernel func() (float64, error)) {
	var raws, kernels, ratios []float64
	for r := 0; r < 3; r++ {
		rv, err := raw()
		if err != nil {
			b.Fatal(err)
		}
		kv, err := kernel()
		if err != nil {
			b.Fatal(err)
		}
		raws, kernels, ratios = append(raws, rv), append(kernels, kv), append(ratios, kv/rv)
	}
	b.ReportMetric(median(kernels), "kernel_ev/s")
	b.ReportMetric(median(raws), "raw_msg/s")
	b.ReportMetric(median(ratios), "ratio")
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

// rawAsyncPublish publishes n payloads with up to 4000 in flight (the
// client's default) and returns messages per second.
func rawAsyncPublish(js jetstream.JetStream, n int) (float64, error) {
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := js.PublishAsync(fmt.Sprintf("raw.s%d", i%100), payload256); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("raw async publish did not complete")
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// BenchmarkAppendRelaxed: the kernel's relaxed append (256 concurrent
// callers, one 256 B event each) against raw JetStream async publish of
// the same payload.
func BenchmarkAppendRelaxed(b *testing.B) {
	n := max(b.N, 100000)
	js, _ := rawJetStream(b, false)
	ctx := context.Background()
	l := openLog(b, func(l *eventlog.Log) { l.Durability = eventlog.Relaxed })
	b.ResetTimer()
	rounds(b, n, func() (float64, error) { return rawAsyncPublish(js, n) }, func() (float64, error) {
		return timeIt(n, 256, func(i int) error {
			_, err := l.Append(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.s%d", i%100), Type: "bench.tick", Data: payload256}})
			return err
		})
	})
}

// BenchmarkAppendRelaxedAsync: one caller keeping up to 4000 relaxed
// appends in flight with AppendAsync, as raw async publish keeps up to
// 4000 publishes in flight: the same pattern on both sides.
func BenchmarkAppendRelaxedAsync(b *testing.B) {
	n := max(b.N, 100000)
	js, _ := rawJetStream(b, false)
	ctx := context.Background()
	l := openLog(b, func(l *eventlog.Log) { l.Durability = eventlog.Relaxed })
	b.ResetTimer()
	rounds(b, n, func() (float64, error) { return rawAsyncPublish(js, n) }, func() (float64, error) {
		start := time.Now()
		window := make(chan *eventlog.Pending, 4000)
		errc := make(chan error, 1)
		go func() {
			var first error
			for p := range window {
				if _, err := p.Wait(); err != nil && first == nil {
					first = err
				}
			}
			errc <- first
		}()
		for i := 0; i < n; i++ {
			p, err := l.AppendAsync(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.s%d", i%100), Type: "bench.tick", Data: payload256}})
			if err != nil {
				close(window)
				return 0, err
			}
			window <- p
		}
		close(window)
		if err := <-errc; err != nil {
			return 0, err
		}
		return float64(n) / time.Since(start).Seconds(), nil
	})
}

// BenchmarkAppendStrict: the kernel's strict append with C concurrent
// callers against raw JetStream publish with an fsync per message, with
// the same number of callers.
func BenchmarkAppendStrict(b *testing.B) {
	for _, callers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			n := max(b.N, 40*callers, 500)
			js, _ := rawJetStream(b, true)
			ctx := context.Background()
			l := openLog(b)
			b.ResetTimer()
			rounds(b, n, func() (float64, error) {
				return timeIt(max(n/8, 2*callers, 200), callers, func(i int) error {
					_, err := js.Publish(ctx, fmt.Sprintf("raw.s%d", i%100), payload256)
					return err
				})
			}, func() (float64, error) {
				return timeIt(n, callers, func(i int) error {
					_, err := l.Append(ctx, []eventlog.Event{{Stream: fmt.Sprintf("bench.s%d", i%100), Type: "bench.tick", Data: payload256}})
					return err
				})
			})
		})
	}
}

// rawAtomicPair publishes two messages as one JetStream atomic batch and
// waits for the commit's acknowledgement.
func rawAtomicPair(ctx context.Context, nc *nats.Conn, i int) error {
	var id [12]byte
	_, _ = rand.Read(id[:])
	batch := hex.EncodeToString(id[:])
	for k := 1; k <= 2; k++ {
		m := nats.NewMsg(fmt.Sprintf("raw.s%d", (i+k)%100))
		m.Data = payload256
		m.Header.Set("Nats-Batch-Id", batch)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(k))
		if k == 1 {
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		reply, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return err
		}
		if bytes.Contains(reply.Data, []byte(`"error"`)) {
			return fmt.Errorf("raw batch: %s", reply.Data)
		}
	}
	return nil
}

// BenchmarkAppendAtomic: appends of two events to two streams, which the
// log writes as one JetStream atomic batch, against raw JetStream atomic
// batches of two messages, with the same callers (the rates count appends
// and batches, each of two events). JetStream stages every atomic batch
// in a file store of its own, with fsyncs, whatever the durability; with
// concurrent callers the log shares one batch among a group's appends.
// The raw server fsyncs its stream every second, like the relaxed log.
func BenchmarkAppendAtomic(b *testing.B) {
	for _, d := range []eventlog.Durability{eventlog.Relaxed, eventlog.Strict} {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%v/callers=%d", d, callers), func(b *testing.B) {
				n := max(b.N, 50*callers, 200)
				_, nc := rawJetStream(b, false)
				ctx := context.Background()
				l := openLog(b, func(l *eventlog.Log) { l.Durability = d })
				b.ResetTimer()
				rounds(b, n, func() (float64, error) {
					return timeIt(max(n/4, 2*callers, 100), callers, func(i int) error { return rawAtomicPair(ctx, nc, i) })
				}, func() (float64, error) {
					return timeIt(n, callers, func(i int) error {
						_, err := l.Append(ctx, []eventlog.Event{
							{Stream: fmt.Sprintf("bench.s%d", i%100), Type: "bench.tick", Data: payload256},
							{Stream: fmt.Sprintf("bench.t%d", i%100), Type: "bench.tick", Data: payload256},
						})
						return err
					})
				})
			})
		}
	}
}
