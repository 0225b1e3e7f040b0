package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

var flushesTable = schemas.Table{Name: "flushes", Columns: []schemas.Column{
	{Name: "id", Type: "INTEGER", PrimaryKey: true},
	{Name: "n", Type: "INTEGER", NotNull: true},
}}

// batchCounts is the batch state of batchCounter: the batch's counts per
// key, written once per key by Flush.
type batchCounts struct{ n map[string]int }

// flushFault makes Flush fail ("error") or panic ("panic") on a batch
// holding the key "fault"; only TestBatchFlushFault appends that key.
var flushFault atomic.Value

func (b *batchCounts) Flush(ctx context.Context, tx *sql.Tx) error {
	if _, ok := b.n["fault"]; ok {
		switch flushFault.Load() {
		case "error":
			return errors.New("disk on fire")
		case "panic":
			panic("flush exploded")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.n)) {
		if _, err := projections.Exec(ctx, tx, `INSERT INTO counters (key, n) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET n = n + excluded.n`, k, b.n[k]); err != nil {
			return err
		}
	}
	_, err := projections.Exec(ctx, tx, `INSERT INTO flushes (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1`)
	return err
}

// batchCounter counts events per key like counter, through Batch: Apply
// adds to the batch's counts, Flush writes them. It also counts its
// flushes, and fails on the key "bad".
func batchCounter(name string) projections.Projection {
	return projections.Projection{
		Name:    name,
		Version: 1,
		Tables:  []schemas.Table{countersTable, flushesTable},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			k := countKey(e)
			if k == "bad" {
				return errors.New("bad event")
			}
			b := projections.Batch[batchCounts](ctx, tx)
			if b == nil {
				b = new(batchCounts)
				defer b.Flush(ctx, tx)
			}
			if b.n == nil {
				b.n = map[string]int{}
			}
			b.n[k]++
			return nil
		},
	}
}

func flushCount(tb testing.TB, r *projections.Runner, name string) int {
	tb.Helper()
	db, release, err := r.Acquire(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	var n int
	if err := db.Reader.QueryRow(`SELECT COALESCE(SUM(n), 0) FROM flushes`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// A batch's state is flushed once per transaction: once per batch while
// catching up, once per event when events arrive one by one.
func TestBatchFlushOncePerTransaction(t *testing.T) {
	l := openLog(t)
	last := appendAll(t, l, hits("counter", 3000, 10)...)
	r := openRunner(t, l, runnerOpts{batch: 1000}, batchCounter("batched"))
	waitFor(t, r, "batched", last)
	if got := counts(t, r, "batched"); len(got) != 10 || total(got) != 3000 || got["k3"] != 300 {
		t.Fatalf("counts %v, want 300 for each of 10 keys", got)
	}
	if n := flushCount(t, r, "batched"); n != 3 {
		t.Fatalf("%d flushes for 3000 events caught up in batches of 1000, want 3", n)
	}
	for i := range 5 {
		last = appendAll(t, l, hits("counter", 1, 10)...)
		waitFor(t, r, "batched", last)
		if n := flushCount(t, r, "batched"); n != 4+i {
			t.Fatalf("%d flushes after %d single events, want %d", n, i+1, 4+i)
		}
	}
	if got := total(counts(t, r, "batched")); got != 3005 {
		t.Fatalf("%d events counted, want 3005", got)
	}
}

// When an event fails in a batch, the state of that batch is dropped with
// its transaction: the events before it, committed on their own, are
// counted once.
func TestBatchDroppedWithFailedBatch(t *testing.T) {
	l := openLog(t)
	events := hits("counter", 500, 5)
	events = append(events, ev("counter.1", "counter.hit", map[string]string{"k": "bad"}))
	events = append(events, hits("counter", 499, 5)...)
	appendAll(t, l, events...)
	r := openRunner(t, l, runnerOpts{batch: 1000}, batchCounter("batched"))
	s := waitStatus(t, r, "batched", "halt", func(s projections.Status) bool { return s.Halted != nil })
	if s.Halted.Seq != 501 || s.Seq != 500 {
		t.Fatalf("status %s, want halted at 501 with checkpoint 500", statusJSON(s))
	}
	if got := counts(t, r, "batched"); total(got) != 500 || got["k0"] != 100 {
		t.Fatalf("counts %v before the halt, want 100 for each of 5 keys", got)
	}
}

// A Flush that fails or panics is a problem of the file, not of an
// event: nothing of the batch is kept, the projection retries, and once
// Flush works every event is counted once.
func TestBatchFlushFault(t *testing.T) {
	for _, fault := range []string{"error", "panic"} {
		t.Run(fault, func(t *testing.T) {
			flushFault.Store(fault)
			defer flushFault.Store("")
			l := openLog(t)
			first := appendAll(t, l, hits("counter", 10, 2)...)
			r := openRunner(t, l, runnerOpts{}, batchCounter("batched"))
			waitFor(t, r, "batched", first)
			last := appendAll(t, l, ev("counter.1", "counter.hit", map[string]string{"k": "fault"}))
			want := map[string]string{"error": "disk on fire", "panic": "panic in Flush: flush exploded"}[fault]
			s := waitStatus(t, r, "batched", "the flush error", func(s projections.Status) bool { return strings.Contains(s.Error, want) })
			if s.Halted != nil || s.Seq != first {
				t.Fatalf("status %s: want a retried error at checkpoint %d, not a halt", statusJSON(s), first)
			}
			if got := total(counts(t, r, "batched")); got != 10 {
				t.Fatalf("%d events counted while Flush fails, want 10", got)
			}
			flushFault.Store("")
			waitFor(t, r, "batched", last)
			if got := counts(t, r, "batched"); total(got) != 11 || got["fault"] != 1 {
				t.Fatalf("counts %v once Flush works, want 11 with fault once", got)
			}
		})
	}
}

// Outside a fold transaction there is no batch: Apply called directly
// writes at once.
func TestBatchOutsideFold(t *testing.T) {
	l := openLog(t)
	last := appendAll(t, l, hits("counter", 3, 1)...)
	dir := t.TempDir()
	r := projections.New(dir, l)
	r.Logger = slog.New(slog.DiscardHandler)
	p := batchCounter("batched")
	if err := r.Register(p); err != nil {
		t.Fatal(err)
	}
	out := dir + "/asof.db"
	if err := r.BuildAsOf(context.Background(), "batched", last, out); err != nil {
		t.Fatal(err)
	}
	db := openFile(t, out)
	tx, err := db.Writer.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if b := projections.Batch[batchCounts](context.Background(), tx); b != nil {
		t.Fatalf("Batch outside a fold: %v, want nil", b)
	}
	if err := p.Apply(context.Background(), tx, ev("counter.1", "counter.hit", map[string]string{"k": "k0"})); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(`SELECT n FROM counters WHERE key = 'k0'`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("k0 = %d, %v after a direct Apply, want 4", n, err)
	}
}
