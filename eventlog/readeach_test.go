package eventlog_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// ReadEach pages through a category to its end, passing a message
// written around the kernel as a malformed entry and going on past it;
// it stops where fn says, and reading on from what it returns repeats
// and loses nothing.
func TestReadEach(t *testing.T) {
	l, nc := writableLog(t)
	ctx := context.Background()
	var want []uint64 // the sequences of the "rec" entries, in order
	for round := range 3 {
		evs := make([]eventlog.Event, 400) // three rounds: more than one page
		for i := range evs {
			evs[i] = ev(fmt.Sprintf("rec.%d", i%5), "rec.noted", i)
		}
		for _, p := range mustAppend(t, l, evs...).Events {
			want = append(want, p.Seq)
		}
		mustAppend(t, l, ev("other.1", "other.noted", round))
		if round == 1 {
			want = append(want, publish(t, nc, eventlog.SubjectOf("rec.raw"), nil, `{"x":1}`))
		}
	}
	recs := eventlog.Filter{Categories: []string{"rec"}}

	var got []uint64
	malformed := 0
	last, err := l.ReadEach(ctx, 0, recs, func(e eventlog.Event) bool {
		got = append(got, e.Seq)
		if e.Malformed != nil {
			malformed++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || malformed != 1 {
		t.Fatalf("read %d entries (%d malformed), want the %d of the category (1 malformed), in order", len(got), malformed, len(want))
	}
	if last < want[len(want)-1] {
		t.Fatalf("returned %d, before the last entry %d", last, want[len(want)-1])
	}
	n, err := l.ReadEach(ctx, last, recs, func(eventlog.Event) bool { return true })
	if err != nil || n != last {
		t.Fatalf("reading on from the end: %d %v; want nothing new at %d", n, err, last)
	}

	// Stopped at the 1,001st entry, then read on from where it stopped.
	got = got[:0]
	stop, err := l.ReadEach(ctx, 0, recs, func(e eventlog.Event) bool {
		got = append(got, e.Seq)
		return len(got) < 1001
	})
	if err != nil || stop != want[1000] || len(got) != 1001 {
		t.Fatalf("stopped at %d after %d entries (%v); want %d after 1001", stop, len(got), err, want[1000])
	}
	if _, err := l.ReadEach(ctx, stop, recs, func(e eventlog.Event) bool {
		got = append(got, e.Seq)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("read in two parts: %d entries, want %d in order", len(got), len(want))
	}
}
