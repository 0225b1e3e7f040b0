package eventlog_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// A reserved category is written only through its Writer: ordinary
// appends into its streams, or with a type of it, are refused whole.
func TestReserve(t *testing.T) {
	ctx := context.Background()
	l := eventlog.New(t.TempDir())
	// Reserved before Open, as the kernel does.
	w, err := l.Reserve("audit")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	other, err := l.Reserve("vault", "keys")
	if err != nil {
		t.Fatalf("reserve after Open: %v", err)
	}
	if _, err := l.Reserve("keys"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("reserving a category twice: %v; want ErrConflict", err)
	}
	if _, err := l.Reserve("bad.cat"); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("reserving a malformed category: %v; want ErrInvalid", err)
	}
	if !l.Reserved("audit") || !l.Reserved("keys") || l.Reserved("orders") {
		t.Fatal("Reserved does not report the reservations")
	}

	refused := map[string][]eventlog.Event{
		"a stream of the category": {ev("audit.1", "orders.placed", nil)},
		"a type of the category":   {ev("orders.1", "audit.entry", nil)},
		"one of several events":    {ev("orders.1", "orders.placed", nil), ev("keys.1", "keys.made", nil)},
	}
	for name, evs := range refused {
		_, err := l.Append(ctx, evs)
		if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "is reserved for the kernel") {
			t.Errorf("%s: %v; want ErrInvalid naming the reservation", name, err)
		}
		if _, err := l.AppendAsync(ctx, evs); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("%s, async: %v; want ErrInvalid", name, err)
		}
	}
	if seq, err := l.LastSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("refused appends wrote something: last seq %d, %v", seq, err)
	}

	// The writer appends there, with expectations, and only there.
	res, err := w.Append(ctx, []eventlog.Event{ev("audit.1", "audit.entry", map[string]int{"n": 1})}, eventlog.ExpectNew("audit.1"))
	if err != nil || res.LastSeq != 1 || res.Events[0].Version != 1 {
		t.Fatalf("writer append: %+v, %v", res, err)
	}
	if _, err := w.Append(ctx, []eventlog.Event{ev("audit.1", "audit.entry", nil)}, eventlog.ExpectNew("audit.1")); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("writer append with a failing expectation: %v; want ErrConflict", err)
	}
	for name, evs := range map[string][]eventlog.Event{
		"an unreserved stream":       {ev("orders.1", "audit.entry", nil)},
		"another writer's stream":    {ev("keys.1", "audit.entry", nil)},
		"another writer's type":      {ev("audit.2", "keys.made", nil)},
		"with one foreign event too": {ev("audit.2", "audit.entry", nil), ev("orders.1", "orders.placed", nil)},
	} {
		if _, err := w.Append(ctx, evs); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("writer appending %s: %v; want ErrInvalid", name, err)
		}
	}
	if _, err := other.Append(ctx, []eventlog.Event{ev("keys.1", "keys.made", nil), ev("vault.1", "keys.stored", nil)}); err != nil {
		t.Fatalf("a writer of two categories: %v", err)
	}
	// Ordinary appends elsewhere are untouched; reads see everything.
	if _, err := l.Append(ctx, []eventlog.Event{ev("orders.1", "orders.placed", nil)}); err != nil {
		t.Fatal(err)
	}
	page, err := l.Read(ctx, 0, 10, eventlog.Filter{})
	if err != nil || len(page.Events) != 4 {
		t.Fatalf("read %d events, %v; want 4", len(page.Events), err)
	}
	if w.Log() != l || strings.Join(w.Categories(), ",") != "audit" {
		t.Fatalf("writer: log %p categories %v", w.Log(), w.Categories())
	}
}
