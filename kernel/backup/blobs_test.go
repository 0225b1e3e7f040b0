package backup_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/backup"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// bigBlob is the content of the large blob: 80 MiB of a seeded stream.
const bigBlobBytes = 80 << 20

func bigBlob() io.Reader {
	var seed [32]byte
	seed[0] = 15
	return io.LimitReader(rand.NewChaCha8(seed), bigBlobBytes)
}

// heapPeak samples the heap in use while it runs (GC kept tight, so
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
			default:
				runtime.Gosched()
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

// TestLargeBlobStreamed: a 48 MiB blob is archived in chunks and
// restored byte-exact, and neither step holds it whole in memory: the
// heap in use rises well under its size (a third) while each runs.
func TestLargeBlobStreamed(t *testing.T) {
	ctx := context.Background()
	rep := filepath.Join(t.TempDir(), "replica")
	n := startNode(t, t.TempDir(), backup.Config{Replicas: []string{rep}})
	n.notes(t, 5)
	h := sha256.New()
	io.Copy(h, bigBlob())
	name := hex.EncodeToString(h.Sum(nil))
	store, err := n.k.Log().ObjectStore(ctx, vfs.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, bigBlob()); err != nil {
		t.Fatal(err)
	}
	small := []byte("<h1>small</h1>")
	smallName := vfs.Hash(small)
	if _, err := store.PutBytes(ctx, smallName, small); err != nil {
		t.Fatal(err)
	}
	const limit = bigBlobBytes / 2

	peak := startHeapPeak()
	n.notes(t, 1) // the archive copies the blobs before this event
	tail := n.tail(t)
	waitCopied(t, n, tail)
	rise := peak.end()
	t.Logf("archive: heap rose %d MiB for a %d MiB blob", rise>>20, bigBlobBytes>>20)
	if rise > limit {
		t.Errorf("archiving a %d MiB blob raised the heap in use by %d MiB: it was held whole", bigBlobBytes>>20, rise>>20)
	}
	n.stop(t)

	// The archive: the large blob in chunks, the small one whole.
	db, err := sql.Open("sqlite", "file:"+n.bk.ArchivePath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size, inline, chunks int64
	if err := db.QueryRow(`SELECT size, length(data), (SELECT COUNT(*) FROM blob_chunks WHERE name = b.name) FROM blobs b WHERE name = ?`, name).Scan(&size, &inline, &chunks); err != nil {
		t.Fatal(err)
	}
	if size != bigBlobBytes || inline != 0 || chunks != bigBlobBytes/backup.ChunkBytes {
		t.Errorf("large blob archived as size %d, inline %d bytes, %d chunks", size, inline, chunks)
	}
	// What the package doc tells an operator: the chunks in order are the blob.
	rows, err := db.Query(`SELECT data FROM blob_chunks WHERE bucket = ? AND name = ? ORDER BY n`, vfs.Bucket, name)
	if err != nil {
		t.Fatal(err)
	}
	hc := sha256.New()
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		hc.Write(b)
	}
	rows.Close()
	if got := hex.EncodeToString(hc.Sum(nil)); got != name {
		t.Errorf("the chunks in order hash to %s, want %s", got, name)
	}
	if err := db.QueryRow(`SELECT length(data), (SELECT COUNT(*) FROM blob_chunks WHERE name = b.name) FROM blobs b WHERE name = ?`, smallName).Scan(&inline, &chunks); err != nil || inline != int64(len(small)) || chunks != 0 {
		t.Errorf("small blob: inline %d, chunks %d, %v", inline, chunks, err)
	}

	dir := t.TempDir()
	peak = startHeapPeak()
	res, err := backup.Restore(ctx, backup.RestoreOptions{From: rep, Data: dir})
	rise = peak.end()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: heap rose %d MiB for a %d MiB blob", rise>>20, bigBlobBytes>>20)
	if rise > limit {
		t.Errorf("restoring a %d MiB blob raised the heap in use by %d MiB: it was held whole", bigBlobBytes>>20, rise>>20)
	}
	if res.Blobs != 2 {
		t.Errorf("restored %d blobs, want 2", res.Blobs)
	}
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	rs, err := l.ObjectStore(ctx, vfs.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{name, smallName} {
		obj, err := rs.Get(ctx, want)
		if err != nil {
			t.Fatalf("restored blob %s: %v", want, err)
		}
		hr := sha256.New()
		_, err = io.Copy(hr, obj)
		obj.Close()
		if got := hex.EncodeToString(hr.Sum(nil)); err != nil || got != want {
			t.Errorf("restored blob %s reads as %s (%v)", want, got, err)
		}
	}
}
