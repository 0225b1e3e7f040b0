package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

func TestCountingProjection(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	appendAll(t, l,
		ev("orders.1", "orders.placed", map[string]string{"k": "a"}),
		ev("orders.2", "orders.placed", map[string]string{"k": "b"}),
		ev("stock.x", "stock.moved", nil),
		ev("orders.1", "orders.paid", map[string]string{"k": "a"}),
	)
	r := openRunner(t, l, runnerOpts{},
		counter("all", eventlog.Filter{}),
		counter("orders", eventlog.Filter{Categories: []string{"orders"}}),
		counter("paid", eventlog.Filter{Types: []string{"orders.paid"}}),
	)
	// Live: events appended after Open.
	res, err := l.Append(ctx, []eventlog.Event{
		ev("orders.3", "orders.paid", map[string]string{"k": "c"}),
		ev("stock.y", "stock.moved", nil),
		ev("stock.z", "stock.moved", nil), // the last event matches neither filter
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"all", "orders", "paid"} {
		waitFor(t, r, name, res.LastSeq)
	}
	want := map[string]map[string]int{
		"all":    {"a": 2, "b": 1, "c": 1, "stock.moved": 3},
		"orders": {"a": 2, "b": 1, "c": 1},
		"paid":   {"a": 1, "c": 1},
	}
	for name, w := range want {
		if got := counts(t, r, name); !maps.Equal(got, w) {
			t.Errorf("%s: counters %v, want %v", name, got, w)
		}
		// The checkpoint moved past the events the filter left out.
		s := r.Status(name)
		if s.Seq != res.LastSeq || s.Lag != 0 || s.State != projections.StateRunning || s.Version != 1 || s.ServingVersion != 1 {
			t.Errorf("%s: status %s, want seq %d running", name, statusJSON(s), res.LastSeq)
		}
	}

	// Read your writes, one append at a time.
	for i := range 20 {
		res, err := l.Append(ctx, []eventlog.Event{ev("orders.9", "orders.paid", map[string]string{"k": "d"})})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, r, "paid", res.LastSeq)
		if got := counts(t, r, "paid")["d"]; got != i+1 {
			t.Fatalf("after WaitFor(%d): d = %d, want %d", res.LastSeq, got, i+1)
		}
	}

	// A WaitFor beyond the log waits until ctx ends.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := r.WaitFor(short, "paid", res.LastSeq+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor past the log: %v", err)
	}
	if err := r.WaitFor(ctx, "nope", 1); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("WaitFor unknown: %v", err)
	}
	if s := r.Status("nope"); s.State != projections.StateUnknown {
		t.Fatalf("status of unknown: %+v", s)
	}
	if got := r.Statuses(); len(got) != 3 || got[0].Name != "all" || got[1].Name != "orders" || got[2].Name != "paid" {
		t.Fatalf("statuses: %+v", got)
	}
}

// A projection whose filter matches rarely keeps its checkpoint at the
// log's end, so a restart does not scan the log again.
func TestRareFilterCheckpointAdvances(t *testing.T) {
	l := openLog(t)
	dir := t.TempDir()
	appendAll(t, l, ev("rare.1", "rare.thing", nil))
	last := appendAll(t, l, hits("busy", 3000, 5)...)
	r := openRunner(t, l, runnerOpts{dir: dir}, counter("rare", eventlog.Filter{Categories: []string{"rare"}}))
	waitFor(t, r, "rare", last)
	closeRunner(t, r)

	db := openFile(t, filepath.Join(dir, "rare", "000001.db"))
	if seq, _ := checkpointOf(t, db); seq != last {
		t.Fatalf("checkpoint %d, want the log's end %d", seq, last)
	}
}

func TestRegisterValidation(t *testing.T) {
	l := openLog(t)
	ok := counter("ok", eventlog.Filter{})
	cases := map[string]func(p *projections.Projection){
		"empty name":    func(p *projections.Projection) { p.Name = "" },
		"upper name":    func(p *projections.Projection) { p.Name = "Counts" },
		"dotted name":   func(p *projections.Projection) { p.Name = "a.b" },
		"leading digit": func(p *projections.Projection) { p.Name = "1a" },
		"version 0":     func(p *projections.Projection) { p.Version = 0 },
		"nil apply":     func(p *projections.Projection) { p.Apply = nil },
		"reserved table": func(p *projections.Projection) {
			p.Tables = []schemas.Table{{Name: "fazt_x", Columns: countersTable.Columns}}
		},
		"bad table":    func(p *projections.Projection) { p.Tables = []schemas.Table{{Name: "t"}} },
		"twice":        func(p *projections.Projection) { p.Tables = []schemas.Table{countersTable, countersTable} },
		"bad type":     func(p *projections.Projection) { p.Filter.Types = []string{"a b"} },
		"bad category": func(p *projections.Projection) { p.Filter.Categories = []string{"a.b"} },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := ok
			mutate(&p)
			r := projections.New(t.TempDir(), l)
			if err := r.Register(p); !errors.Is(err, eventlog.ErrInvalid) {
				t.Fatalf("Register: %v, want ErrInvalid", err)
			}
		})
	}
	r := projections.New(t.TempDir(), l)
	if err := r.Register(ok); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(ok); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("second Register: %v", err)
	}
	if _, _, err := r.Acquire("ok"); !errors.Is(err, projections.ErrClosed) {
		t.Fatalf("Acquire before Open: %v", err)
	}
}

func TestFailingApplyHaltsAtEvent(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	p := counter("picky", eventlog.Filter{})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if countKey(e) == "bad" {
			return errors.New("cannot fold a bad event")
		}
		return inner(ctx, tx, e)
	}
	var evs []eventlog.Event
	for range 10 {
		evs = append(evs, ev("t.1", "t.hit", map[string]string{"k": "good"}))
	}
	evs = append(evs, ev("t.1", "t.hit", map[string]string{"k": "bad"}))
	for range 5 {
		evs = append(evs, ev("t.1", "t.hit", map[string]string{"k": "after"}))
	}
	last := appendAll(t, l, evs...) // one append: one batch for the runner
	badSeq := last - 5
	r := openRunner(t, l, runnerOpts{}, p, counter("other", eventlog.Filter{}))

	s := waitStatus(t, r, "picky", "halt", func(s projections.Status) bool { return s.Halted != nil })
	if s.State != projections.StateHalted || s.Halted.Seq != badSeq || s.Halted.Type != "t.hit" || s.Halted.EventID == "" ||
		!strings.Contains(s.Halted.Error, "cannot fold a bad event") || s.Seq != badSeq-1 {
		t.Fatalf("status %s, want halted at %d with the checkpoint before it", statusJSON(s), badSeq)
	}
	// The good prefix of the batch is committed, nothing after it.
	if got := counts(t, r, "picky"); !maps.Equal(got, map[string]int{"good": 10}) {
		t.Fatalf("counters %v", got)
	}
	// WaitFor past the halt reports it; up to the checkpoint it returns.
	var he *projections.HaltedError
	if err := r.WaitFor(ctx, "picky", last); !errors.As(err, &he) || !errors.Is(err, projections.ErrHalted) || he.Halt.Seq != badSeq {
		t.Fatalf("WaitFor past the halt: %v", err)
	}
	if err := r.WaitFor(ctx, "picky", badSeq-1); err != nil {
		t.Fatal(err)
	}
	// The other projection is not affected.
	waitFor(t, r, "other", last)

	// Retry tries the same event again and halts again.
	if err := r.Retry("picky"); err != nil {
		t.Fatal(err)
	}
	s = waitStatus(t, r, "picky", "halt after retry", func(s projections.Status) bool { return s.Halted != nil })
	if s.Halted.Seq != badSeq {
		t.Fatalf("after retry: %s", statusJSON(s))
	}
	// Skip only works at the halted seq.
	if err := r.Skip(ctx, "picky", badSeq+1); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("Skip at another seq: %v", err)
	}
	if err := r.Skip(ctx, "picky", badSeq); err != nil {
		t.Fatal(err)
	}
	rec := skipRecords(t, l, "picky")
	if len(rec) != 1 || rec[0]["seq"] != float64(badSeq) || rec[0]["event_type"] != "t.hit" || rec[0]["projection"] != "picky" ||
		rec[0]["event_id"] != s.Halted.EventID || !strings.Contains(rec[0]["error"].(string), "cannot fold") {
		t.Fatalf("skip records %v", rec)
	}
	tail, _ := l.LastSeq(ctx)
	waitFor(t, r, "picky", tail)
	if got := counts(t, r, "picky"); !maps.Equal(got, map[string]int{"good": 10, "after": 5, projections.TypeEventSkipped: 1}) {
		t.Fatalf("counters after skip %v", got)
	}
	if s := r.Status("picky"); s.Halted != nil || s.State != projections.StateRunning {
		t.Fatalf("after skip: %s", statusJSON(s))
	}
	// The file says what it lacks.
	db, release, _ := r.Acquire("picky")
	defer release()
	var seq, recSeq uint64
	var typ string
	if err := db.Reader.QueryRow(`SELECT seq, event_type, record_seq FROM fazt_skipped`).Scan(&seq, &typ, &recSeq); err != nil || seq != badSeq || typ != "t.hit" || recSeq != last+1 {
		t.Fatalf("fazt_skipped: %d %s %d %v", seq, typ, recSeq, err)
	}
	// A second Skip has nothing to skip.
	if err := r.Skip(ctx, "picky", badSeq); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("second Skip: %v", err)
	}
}

// skipRecords reads a projection's skip decisions from the log.
func skipRecords(tb testing.TB, l *eventlog.Log, name string) []map[string]any {
	tb.Helper()
	evs, err := l.ReadStream(context.Background(), projections.SkipStream(name), 1, 100)
	if err != nil {
		tb.Fatalf("read skip records: %v", err)
	}
	var out []map[string]any
	for _, e := range evs {
		if e.Type != projections.TypeEventSkipped {
			tb.Fatalf("event %s in %s", e.Type, e.Stream)
		}
		out = append(out, decodeMap(tb, e.Data))
	}
	return out
}

func decodeMap(tb testing.TB, b []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestEventSkippedSchema(t *testing.T) {
	reg := schemas.NewRegistry()
	if err := reg.Register(projections.TypeEventSkipped, 1, []byte(projections.EventSkippedSchema)); err != nil {
		t.Fatal(err)
	}
	good := eventlog.Event{Type: projections.TypeEventSkipped, Data: []byte(`{"projection":"p","seq":3,"event_id":"X","event_type":"a.b","error":"e","version":1}`)}
	if err := reg.Validate(&good); err != nil {
		t.Fatal(err)
	}
	bad := eventlog.Event{Type: projections.TypeEventSkipped, Data: []byte(`{"projection":"p"}`)}
	if err := reg.Validate(&bad); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("record without seq: %v", err)
	}
}

// Two processes folding the same file would apply events twice; the
// checkpoint only moves from where this runner left it, so the second
// writer is noticed and the runner continues from the file's checkpoint.
func TestAnotherWriterIsDetected(t *testing.T) {
	l := openLog(t)
	dir := t.TempDir()
	first := appendAll(t, l, hits("w", 5, 1)...)
	var logs logBuffer
	r := openRunner(t, l, runnerOpts{dir: dir, logger: slog.New(slog.NewTextHandler(&logs, nil))}, counter("w", eventlog.Filter{}))
	waitFor(t, r, "w", first)

	// "Another process" folds two events behind the runner's back.
	// (It commits before the runner sees the events.)
	other := openFile(t, filepath.Join(dir, "w", "000001.db"))
	if _, err := other.Exec(context.Background(), `UPDATE fazt_checkpoint SET seq = seq + 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(context.Background(), `UPDATE counters SET n = n + 2`); err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, hits("w", 2, 1)...)
	last := appendAll(t, l, hits("w", 3, 1)...)
	waitFor(t, r, "w", last)
	if got := total(counts(t, r, "w")); got != 10 {
		t.Fatalf("counted %d, want 10", got)
	}
	if !strings.Contains(logs.String(), "moved from seq 5 to 7 behind this runner's back") {
		t.Fatalf("not noticed:\n%s", logs.String())
	}
}
