//go:build !race

package backup_test

import (
	"context"
	"io"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel/backup"
)

// heapPeak samples the heap in use while it runs (the GC kept tight, so
// garbage does not hide what is held) and returns how far it rose above
// where it started.
type heapPeak struct {
	base, peak atomic.Uint64
	stop       chan struct{}
	wg         sync.WaitGroup
	gc         int
}

func startHeapPeak() *heapPeak {
	p := &heapPeak{stop: make(chan struct{}), gc: debug.SetGCPercent(10)}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.base.Store(ms.HeapInuse)
	p.peak.Store(ms.HeapInuse)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > p.peak.Load() {
				p.peak.Store(ms.HeapInuse)
			}
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	return p
}

// end stops sampling and returns the rise in bytes.
func (p *heapPeak) end() uint64 {
	close(p.stop)
	p.wg.Wait()
	debug.SetGCPercent(p.gc)
	return p.peak.Load() - p.base.Load()
}

// TestLargeBlobMemory: a 96 MiB blob is archived and restored
// byte-exact, and neither step holds it whole: the heap in use rises
// less than half its size while each runs. What it does rise, about 30
// MiB whatever the size, is mostly the embedded NATS server's 8 MiB
// block buffers; the blob held whole raised it over 150 MiB for 48 MiB.
// Without -race: the race detector makes 96 MiB through SQLite take
// minutes.
func TestLargeBlobMemory(t *testing.T) {
	ctx := context.Background()
	const size, limit = 96 << 20, 48 << 20
	rep := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{rep}})
	n.notes(t, 2)
	name := putObject(t, n, func() io.Reader { return seeded(3, size) })

	peak := startHeapPeak()
	n.notes(t, 1) // the archive copies the blob before this event
	waitCopied(t, n, n.tail(t))
	rise := peak.end()
	t.Logf("archive: the heap in use rose %d MiB for a %d MiB blob", rise>>20, size>>20)
	if rise > limit {
		t.Errorf("archiving a %d MiB blob raised the heap in use by %d MiB: it was held whole", size>>20, rise>>20)
	}
	n.stop(t)
	if sz, inline, chunks, joined := blobLayout(t, n.bk.ArchivePath(), name); sz != size || inline != 0 || chunks != size/backup.ChunkBytes || joined != name {
		t.Errorf("archived as size %d, %d bytes inline, %d chunks joining to %s", sz, inline, chunks, joined)
	}

	dir := t.TempDir()
	peak = startHeapPeak()
	_, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: dir})
	rise = peak.end()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: the heap in use rose %d MiB for a %d MiB blob", rise>>20, size>>20)
	if rise > limit {
		t.Errorf("restoring a %d MiB blob raised the heap in use by %d MiB: it was held whole", size>>20, rise>>20)
	}
	checkObjects(t, dir, name)
}
