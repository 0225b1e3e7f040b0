package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// asyncWindow keeps both sides of scenario 1 at most at the NATS
// client's default of 4000 async publishes in flight (the queue, the one
// being waited for and the one being queued).
const asyncWindow = 4000 - 2

// appendRelaxed is scenario 1: one caller keeping up to 4000 relaxed
// appends in flight, one event each, against raw JetStream async publish
// of the same payload with the same window.
func (b *bench) appendRelaxed(ctx context.Context, dir string) ([]Row, error) {
	raw, err := startRaw(ctx, filepath.Join(dir, "raw"), false)
	if err != nil {
		return nil, err
	}
	defer raw.close()
	l, err := openLog(ctx, filepath.Join(dir, "kernel"), eventlog.Relaxed)
	if err != nil {
		return nil, err
	}
	defer closeLog(l)
	var rows []Row
	for _, size := range b.cfg.Sizes {
		data := payload(size)
		// Large payloads keep fewer in flight: at most 256 MiB.
		window := max(1, min(asyncWindow, (256<<20)/size))
		rawRound := func() (sample, error) {
			return asyncLoop(ctx, window, b.cfg.Duration, func(i int) (func() error, error) {
				f, err := raw.js.PublishAsync(rawSubjects[i%numStream], data, jetstream.WithStallWait(time.Minute))
				if err != nil {
					return nil, err
				}
				return func() error {
					select {
					case <-f.Ok():
						return nil
					case err := <-f.Err():
						return err
					}
				}, nil
			})
		}
		kernelRound := func() (sample, error) {
			return asyncLoop(ctx, window, b.cfg.Duration, func(i int) (func() error, error) {
				p, err := l.AppendAsync(ctx, []eventlog.Event{{Stream: streamNames[i%numStream], Type: benchType, Data: data}})
				if err != nil {
					return nil, err
				}
				return func() error { _, err := p.Wait(); return err }, nil
			})
		}
		name := fmt.Sprintf("%s payload, %d in flight", sizeName(size), window+2)
		raws, kernels, err := b.alternate(name, rawRound, kernelRound)
		if err != nil {
			return rows, err
		}
		row := rateRow(name, "ev/s", "JetStream async publish", raws, kernels)
		row.Latency = "append to acknowledgement"
		row.atLeast(0.7)
		rows = append(rows, row)
	}
	return rows, nil
}

// appendStrict is scenario 2: C callers each appending one event at a
// time, acknowledged after fsync, against C callers publishing to a
// JetStream server that fsyncs every message.
func (b *bench) appendStrict(ctx context.Context, dir string) ([]Row, error) {
	raw, err := startRaw(ctx, filepath.Join(dir, "raw"), true)
	if err != nil {
		return nil, err
	}
	defer raw.close()
	l, err := openLog(ctx, filepath.Join(dir, "kernel"), eventlog.Strict)
	if err != nil {
		return nil, err
	}
	defer closeLog(l)
	data := payload(b.cfg.Sizes[0])
	var rows []Row
	for _, callers := range b.cfg.Callers {
		rawRound := func() (sample, error) {
			return closedLoop(ctx, callers, b.cfg.Duration, func(i int) error {
				_, err := raw.js.Publish(ctx, rawSubjects[i%numStream], data)
				return err
			})
		}
		kernelRound := func() (sample, error) {
			return closedLoop(ctx, callers, b.cfg.Duration, func(i int) error {
				_, err := l.Append(ctx, []eventlog.Event{{Stream: streamNames[i%numStream], Type: benchType, Data: data}})
				return err
			})
		}
		name := fmt.Sprintf("%d callers, %s", callers, sizeName(len(data)))
		if callers == 1 {
			name = fmt.Sprintf("1 caller, %s", sizeName(len(data)))
		}
		before := l.Stats()
		raws, kernels, err := b.alternate(name, rawRound, kernelRound)
		if err != nil {
			return rows, err
		}
		row := rateRow(name, "ev/s", "JetStream publish, fsync per message", raws, kernels)
		row.Latency = "append to acknowledgement"
		// Group commit at work: how many events shared each fsync.
		if st := l.Stats(); st.Fsyncs > before.Fsyncs {
			row.Note = fmt.Sprintf("%.1f events per fsync, %.1f per group (kernel rounds)",
				float64(st.Events-before.Events)/float64(st.Fsyncs-before.Fsyncs),
				float64(st.Events-before.Events)/float64(st.Groups-before.Groups))
		}
		switch callers {
		case 64:
			row.atLeast(4)
		case 256:
			row.atLeast(10)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}
