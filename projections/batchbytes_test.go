package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// txSizes records how many events each fold transaction of a projection
// held, through a Batch flushed once per transaction.
type txSizes struct {
	mu    sync.Mutex
	sizes []int
}

type txCount struct {
	n   int
	rec *txSizes
}

func (c *txCount) Flush(ctx context.Context, tx *sql.Tx) error {
	c.rec.mu.Lock()
	c.rec.sizes = append(c.rec.sizes, c.n)
	c.rec.mu.Unlock()
	return nil
}

func (s *txSizes) all() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

// sizedCounter is counter that also records its transactions' sizes.
func sizedCounter(name string, rec *txSizes) projections.Projection {
	p := counter(name, eventlog.Filter{Categories: []string{"big"}})
	apply := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if c := projections.Batch[txCount](ctx, tx); c != nil {
			c.n++
			c.rec = rec
		}
		return apply(ctx, tx, e)
	}
	return p
}

// bigEvents returns n events of about size bytes of data each.
func bigEvents(n, size int) []eventlog.Event {
	out := make([]eventlog.Event, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("big.%d", i%3), "big.blob", map[string]string{"k": "blob", "pad": strings.Repeat("x", size)})
	}
	return out
}

// A batch ends at BatchBytes of event data as well as at BatchSize
// events, so large events are not held BatchSize at a time; an event
// larger than BatchBytes is still folded, alone.
func TestBatchBoundedByBytes(t *testing.T) {
	l := openLog(t)
	events := bigEvents(40, 300)
	size := len(events[0].Data) // each event's data, a little over 300 bytes
	last := appendAll(t, l, events...)
	huge := appendAll(t, l, bigEvents(1, 5000)...) // more than BatchBytes on its own
	var rec txSizes
	r := openRunner(t, l, runnerOpts{batch: 1000, bytes: 1000}, sizedCounter("sized", &rec))
	waitFor(t, r, "sized", huge)
	if got := counts(t, r, "sized")["blob"]; got != 41 {
		t.Fatalf("%d events folded, want 41", got)
	}
	perTx := (1000 + size - 1) / size // the events that reach 1000 bytes
	total := 0
	for _, n := range rec.all() {
		if n > perTx {
			t.Fatalf("a transaction held %d events of %d bytes with BatchBytes 1000, want at most %d (sizes %v)", n, size, perTx, rec.all())
		}
		total += n
	}
	if total != 41 || len(rec.all()) < 40/perTx+1 {
		t.Fatalf("transactions %v: want %d events in at least %d of them", rec.all(), 41, 40/perTx+1)
	}

	// A build reads the log the same way.
	var built txSizes
	r2 := projections.New(t.TempDir(), l)
	r2.BatchBytes = 1000
	r2.Logger = testLogger(t)
	if err := r2.Register(sizedCounter("sized", &built)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "asof.db")
	if err := r2.BuildAsOf(context.Background(), "sized", last, out); err != nil {
		t.Fatal(err)
	}
	if got := countsOf(t, openFile(t, out))["blob"]; got != 40 {
		t.Fatalf("build as of seq %d counted %d events, want 40", last, got)
	}
	for _, n := range built.all() {
		if n > perTx {
			t.Fatalf("a build transaction held %d events, want at most %d (sizes %v)", n, perTx, built.all())
		}
	}
}

// ReadUpTo and Cursor.NextUpTo end a page at maxBytes of data, with one
// event at least; Read and Next are unbounded.
func TestReadUpToBytes(t *testing.T) {
	l := openLog(t)
	events := bigEvents(10, 300)
	size := len(events[0].Data)
	appendAll(t, l, events...)
	ctx := context.Background()
	f := eventlog.Filter{Categories: []string{"big"}}
	p, err := l.ReadUpTo(ctx, 0, 100, 3*size, f)
	if err != nil || len(p.Events) != 3 || p.DataBytes() != 3*size || p.LastSeq != 3 {
		t.Fatalf("ReadUpTo %d bytes: %d events, %d bytes, last %d, err %v; want 3 events up to seq 3", 3*size, len(p.Events), p.DataBytes(), p.LastSeq, err)
	}
	p, err = l.ReadUpTo(ctx, 3, 100, 1, f)
	if err != nil || len(p.Events) != 1 || p.LastSeq != 4 {
		t.Fatalf("ReadUpTo 1 byte: %d events, last %d, err %v; want the one event at seq 4", len(p.Events), p.LastSeq, err)
	}
	if p, err := l.Read(ctx, 0, 100, f); err != nil || len(p.Events) != 10 {
		t.Fatalf("Read: %d events, err %v; want all 10", len(p.Events), err)
	}
	c, err := l.OpenCursor(ctx, 0, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var pages []int
	for c.Pos() < 10 {
		p, err := c.NextUpTo(ctx, 100, 4*size-1)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(p.Events))
	}
	if fmt.Sprint(pages) != "[4 4 2]" {
		t.Fatalf("cursor pages of %v events with maxBytes just under 4 events, want [4 4 2]", pages)
	}
}

// Open refuses tunables that cannot work, BatchBytes among them, rather
// than fold with batches that never end or never begin.
func TestOpenRefusesBadTunables(t *testing.T) {
	l := openLog(t)
	for name, tune := range map[string]func(*projections.Runner){
		"BatchSize 0":       func(r *projections.Runner) { r.BatchSize = 0 },
		"BatchBytes 0":      func(r *projections.Runner) { r.BatchBytes = 0 },
		"BatchBytes -1":     func(r *projections.Runner) { r.BatchBytes = -1 },
		"RetryInterval 0":   func(r *projections.Runner) { r.RetryInterval = 0 },
		"PollInterval -1ns": func(r *projections.Runner) { r.PollInterval = -1 },
		"Readers 0":         func(r *projections.Runner) { r.Readers = 0 },
	} {
		r := projections.New(t.TempDir(), l)
		tune(r)
		err := r.Open(context.Background())
		if !errors.Is(err, eventlog.ErrInvalid) {
			if err == nil {
				r.Close(context.Background())
			}
			t.Errorf("%s: Open returned %v, want ErrInvalid", name, err)
		}
	}
}
