package projections_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
)

func TestBuildAsOf(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	p := counter("tt", eventlog.Filter{Categories: []string{"tt"}})
	// Round one, interleaved with another category.
	var round1 []eventlog.Event
	for i, e := range hits("tt", 300, 4) {
		round1 = append(round1, e)
		if i%3 == 0 {
			round1 = append(round1, ev("noise.1", "noise.made", nil))
		}
	}
	mid := appendAll(t, l, round1...)
	time.Sleep(30 * time.Millisecond)
	between := time.Now()
	time.Sleep(30 * time.Millisecond)
	last := appendAll(t, l, hits("tt", 200, 4)...)
	r := openRunner(t, l, runnerOpts{batch: 64}, p)
	waitFor(t, r, "tt", last)

	// Reference: the same events up to mid, alone in a log of their own.
	ref := openLog(t)
	appendAll(t, ref, round1...)
	rr := openRunner(t, ref, runnerOpts{}, p)
	waitFor(t, rr, "tt", mid)
	want := hashOf(t, rr, "tt", countersTable)
	wantCounts := counts(t, rr, "tt")
	if total(wantCounts) != 300 {
		t.Fatalf("reference counts %v", wantCounts)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "asof.db")
	if err := r.BuildAsOf(ctx, "tt", mid, out); err != nil {
		t.Fatal(err)
	}
	db := openFile(t, out)
	if got := tableHash(t, db, countersTable); got != want {
		t.Fatalf("as of %d: %v, want %v", mid, countsOf(t, db), wantCounts)
	}
	if seq, v := checkpointOf(t, db); seq != mid || v != 1 {
		t.Fatalf("checkpoint %d v%d, want %d", seq, v, mid)
	}
	// The live file has moved on.
	if got := total(counts(t, r, "tt")); got != 500 {
		t.Fatalf("live file counts %d", got)
	}

	// By time: the last event at or before the moment between the rounds.
	if seq, err := r.SeqAt(ctx, between); err != nil || seq != mid {
		t.Fatalf("SeqAt(between) = %d, %v; want %d", seq, err, mid)
	}
	byTime := filepath.Join(dir, "bytime.db")
	if err := r.BuildAsOfTime(ctx, "tt", between, byTime); err != nil {
		t.Fatal(err)
	}
	if got := tableHash(t, openFile(t, byTime), countersTable); got != want {
		t.Fatal("as of the time between the rounds differs from as of its last seq")
	}

	// A seq in the middle of a batch, and the two ends.
	for _, seq := range []uint64{0, 37, last} {
		f := filepath.Join(dir, "at.db")
		os.Remove(f)
		if err := r.BuildAsOf(ctx, "tt", seq, f); err != nil {
			t.Fatal(err)
		}
		db := openFile(t, f)
		wantN := 0
		page, _ := l.Read(ctx, 0, 10000, eventlog.Filter{Categories: []string{"tt"}})
		for _, e := range page.Events {
			if e.Seq <= seq {
				wantN++
			}
		}
		if got := total(countsOf(t, db)); got != wantN {
			t.Fatalf("as of %d: %d counted, want %d", seq, got, wantN)
		}
		db.Close()
	}
	if seq, _ := r.SeqAt(ctx, time.Unix(0, 0)); seq != 0 {
		t.Fatalf("SeqAt(1970) = %d", seq)
	}
	if seq, _ := r.SeqAt(ctx, time.Now().Add(time.Hour)); seq != last {
		t.Fatalf("SeqAt(future) = %d, want %d", seq, last)
	}

	// Refusals, which leave no file behind.
	if err := r.BuildAsOf(ctx, "tt", mid, out); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("existing out: %v", err)
	}
	past := filepath.Join(dir, "past.db")
	if err := r.BuildAsOf(ctx, "tt", last+1, past); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("seq past the log: %v", err)
	}
	if _, err := os.Stat(past); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file left behind: %v", err)
	}
	if err := r.BuildAsOf(ctx, "nope", mid, past); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("unknown projection: %v", err)
	}
}
