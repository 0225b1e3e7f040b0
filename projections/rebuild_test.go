package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// pointerOf reads a projection's pointer file (the documented layout).
func pointerOf(tb testing.TB, dir, name string) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name, "current"))
	if err != nil {
		tb.Fatal(err)
	}
	var p map[string]string
	if err := json.Unmarshal(b, &p); err != nil {
		tb.Fatalf("pointer %s: %v", b, err)
	}
	return p
}

func TestCheckpointNotBackedByTheLog(t *testing.T) {
	cases := map[string]struct {
		other  int    // events in the other log
		reason string // in the warning
	}{
		"ahead":       {other: 3, reason: "checkpoint at seq 100 is ahead of the log, which ends at seq 3"},
		"other event": {other: 150, reason: "but the log holds event"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l1 := openLog(t)
			last := appendAll(t, l1, hits("c", 100, 3)...)
			r1 := openRunner(t, l1, runnerOpts{dir: dir}, counter("c", eventlog.Filter{}))
			waitFor(t, r1, "c", last)
			closeRunner(t, r1)

			// The same projection directory against another log.
			l2 := openLog(t)
			last = appendAll(t, l2, hits("c", c.other, 3)...)
			var logs logBuffer
			r2 := openRunner(t, l2, runnerOpts{dir: dir, logger: slog.New(slog.NewTextHandler(&logs, nil))}, counter("c", eventlog.Filter{}))
			waitFor(t, r2, "c", last)
			if got := total(counts(t, r2, "c")); got != c.other {
				t.Fatalf("counted %d events, want %d", got, c.other)
			}
			out := logs.String()
			if !strings.Contains(out, `level=WARN msg="projection checkpoint does not match the log: rebuilding it from scratch`) || !strings.Contains(out, c.reason) {
				t.Fatalf("no loud warning with %q:\n%s", c.reason, out)
			}
			// The old file is kept beside the new one.
			if p := pointerOf(t, dir, "c"); p["current"] != "000002.db" || p["previous"] != "000001.db" {
				t.Fatalf("pointer %v", p)
			}
			if _, err := os.Stat(filepath.Join(dir, "c", "000001.db")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestBlueGreenRebuild rebuilds a slow projection while events keep
// coming and readers keep reading: each read sees one file in a state
// consistent with that file's checkpoint, the old file until the swap,
// the new one after, never back.
func TestBlueGreenRebuild(t *testing.T) {
	n := 20000
	if testing.Short() || raceEnabled {
		n = 5000
	}
	l := openLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	last := appendAll(t, l, hits("bg", n, 10)...)
	var slow atomic.Bool
	p := counter("bg", eventlog.Filter{Categories: []string{"bg"}})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if slow.Load() {
			for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
			}
		}
		return inner(ctx, tx, e)
	}
	r := openRunner(t, l, runnerOpts{dir: dir}, p)
	waitFor(t, r, "bg", last)
	oldFile := r.Status("bg").File

	slow.Store(true)
	start := time.Now()
	if err := r.Rebuild(ctx, "bg"); err != nil {
		t.Fatal(err)
	}
	if err := r.Rebuild(ctx, "bg"); err != nil { // already under way: nothing
		t.Fatal(err)
	}
	if p := pointerOf(t, dir, "bg"); p["current"] != "000001.db" || p["next"] != "000002.db" {
		t.Fatalf("pointer during the rebuild: %v", p)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt() // also when the test fails early
	var appended atomic.Uint64
	appended.Store(last)
	wg.Go(func() { // the old file keeps following the log
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			res, err := l.Append(ctx, hits("bg", 10, 10))
			if err != nil {
				t.Error(err)
				return
			}
			appended.Store(res.LastSeq)
		}
	})
	type seen struct {
		reads, old, new int
		oldMaxSeq       uint64
	}
	results := make([]seen, 3)
	var newReads atomic.Int64 // reads on the new file, while they go on
	for i := range results {
		wg.Go(func() {
			s := &results[i]
			sawNew := false
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				db, release, err := r.Acquire("bg")
				if err != nil {
					t.Error(err)
					return
				}
				tx, err := db.Reader.BeginTx(ctx, nil)
				if err != nil {
					release()
					t.Error(err)
					return
				}
				var sum, cp uint64
				err1 := tx.QueryRow(`SELECT coalesce(sum(n), 0) FROM counters`).Scan(&sum)
				err2 := tx.QueryRow(`SELECT seq FROM fazt_checkpoint`).Scan(&cp)
				tx.Rollback()
				path := db.Path
				release()
				if err1 != nil || err2 != nil {
					t.Error(err1, err2)
					return
				}
				// Every event is a bg hit: the file counts exactly its checkpoint.
				if sum != cp {
					t.Errorf("read of %s: counters sum to %d but the checkpoint is %d", path, sum, cp)
					return
				}
				s.reads++
				switch path {
				case oldFile:
					if sawNew {
						t.Errorf("a read went back to the old file after the swap")
						return
					}
					s.old++
					s.oldMaxSeq = max(s.oldMaxSeq, cp)
				default:
					sawNew = true
					s.new++
					newReads.Add(1)
				}
			}
		})
	}

	sawProgress := false
	var st projections.Status
	for {
		st = r.Status("bg")
		if st.Rebuild == nil {
			break
		}
		if st.State != projections.StateRebuilding || st.File != oldFile || st.Rebuild.Reason != "rebuild requested" {
			t.Fatalf("status during the rebuild: %s", statusJSON(st))
		}
		if st.Rebuild.Done > 0 && st.Rebuild.Done < st.Rebuild.Total && st.Rebuild.Rate > 0 && st.Rebuild.ETA > 0 {
			sawProgress = true
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("rebuild too slow: %s", statusJSON(st))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	// The swap is done: the readers move to the new file.
	for deadline := time.Now().Add(time.Minute); newReads.Load() == 0 && !t.Failed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no read on the new file within a minute of the swap")
		}
	}
	halt()
	if t.Failed() {
		return
	}
	if st.File == oldFile || st.State == projections.StateRebuilding {
		t.Fatalf("after the rebuild: %s", statusJSON(st))
	}
	if !sawProgress {
		t.Errorf("never saw rebuild progress")
	}
	var total seen
	for _, s := range results {
		total.reads += s.reads
		total.old += s.old
		total.new += s.new
		total.oldMaxSeq = max(total.oldMaxSeq, s.oldMaxSeq)
	}
	if total.old == 0 || total.new == 0 || total.oldMaxSeq <= last {
		t.Fatalf("reads %+v: want reads on both files, and the old one following the log past %d", total, last)
	}
	t.Logf("rebuild of %d events took %v; %d consistent reads: %d on the old file (up to seq %d), %d on the new", n, took.Round(time.Millisecond), total.reads, total.old, total.oldMaxSeq, total.new)

	// The old file stays as the previous generation; the new one matches a
	// clean build.
	if p := pointerOf(t, dir, "bg"); p["current"] != "000002.db" || p["previous"] != "000001.db" || p["next"] != "" {
		t.Fatalf("pointer after the swap: %v", p)
	}
	if _, err := os.Stat(oldFile); err != nil {
		t.Fatal(err)
	}
	final := appended.Load()
	waitFor(t, r, "bg", final)
	out := filepath.Join(t.TempDir(), "clean.db")
	if err := r.BuildAsOf(ctx, "bg", final, out); err != nil {
		t.Fatal(err)
	}
	if got, want := hashOf(t, r, "bg", countersTable), tableHash(t, openFile(t, out), countersTable); got != want {
		t.Fatalf("rebuilt file differs from a clean build")
	}
}

// TestVersionBump changes Apply and adds a column: the new version is
// rebuilt beside the old file, which serves meanwhile, and back-fills
// the column. Going back to version 1 serves the kept file again.
func TestVersionBump(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	last := appendAll(t, l, hits("vb", 500, 5)...)
	v1 := counter("vb", eventlog.Filter{})
	r := openRunner(t, l, runnerOpts{dir: dir, batch: 50}, v1)
	waitFor(t, r, "vb", last)
	want := counts(t, r, "vb")
	closeRunner(t, r)

	// Version 2 records the last sequence per key in a new column.
	v2Table := countersTable
	v2Table.Columns = append(append([]schemas.Column{}, countersTable.Columns...), schemas.Column{Name: "last_seq", Type: "INTEGER"})
	gate := make(chan struct{})
	v2 := projections.Projection{
		Name: "vb", Version: 2, Tables: []schemas.Table{v2Table},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			if e.Seq == 250 {
				select {
				case <-gate:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO counters (key, n, last_seq) VALUES (?, 1, ?)
				ON CONFLICT (key) DO UPDATE SET n = n + 1, last_seq = excluded.last_seq`, countKey(e), e.Seq)
			return err
		},
	}
	r = openRunner(t, l, runnerOpts{dir: dir, batch: 50}, v2)
	s := waitStatus(t, r, "vb", "rebuild progress", func(s projections.Status) bool { return s.Rebuild != nil && s.Rebuild.Done >= 200 })
	if s.State != projections.StateRebuilding || s.Version != 2 || s.ServingVersion != 1 || s.Seq != last ||
		s.Rebuild.Reason != "version 1 → 2" || s.Rebuild.Total != last || s.Rebuild.Done >= last || !strings.HasSuffix(s.Rebuild.File, "000002.db") {
		t.Fatalf("status during the version rebuild: %s", statusJSON(s))
	}
	// Meanwhile the old file serves, migrated: the new column exists, empty.
	db, release, err := r.Acquire("vb")
	if err != nil {
		t.Fatal(err)
	}
	var nulls int
	if err := db.Reader.QueryRow(`SELECT count(*) FROM counters WHERE last_seq IS NULL`).Scan(&nulls); err != nil || nulls != len(want) {
		t.Fatalf("old file: %d rows without last_seq, %v", nulls, err)
	}
	if got := countsOf(t, db); !maps.Equal(got, want) {
		t.Fatalf("old file serves %v, want %v", got, want)
	}
	release()
	// A frozen file cannot answer a WaitFor past it; the rebuild will.
	more := appendAll(t, l, hits("vb", 5, 5)...)
	waited := make(chan error, 1)
	go func() { waited <- r.WaitFor(ctx, "vb", more) }()
	select {
	case err := <-waited:
		t.Fatalf("WaitFor returned during the rebuild: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	s = r.Status("vb")
	if s.ServingVersion != 2 || s.Rebuild != nil || s.State != projections.StateRunning {
		t.Fatalf("after the rebuild: %s", statusJSON(s))
	}
	for i := range 5 {
		want[fmt.Sprintf("k%d", i)]++
	}
	if got := counts(t, r, "vb"); !maps.Equal(got, want) {
		t.Fatalf("version 2 counts %v, want %v", got, want)
	}
	db, release, _ = r.Acquire("vb")
	var maxSeq uint64
	if err := db.Reader.QueryRow(`SELECT count(*), max(last_seq) FROM counters WHERE last_seq IS NOT NULL`).Scan(&nulls, &maxSeq); err != nil || nulls != len(want) || maxSeq != more {
		t.Fatalf("new column not back-filled: %d rows, max %d, %v", nulls, maxSeq, err)
	}
	release()
	closeRunner(t, r)

	// Back to version 1 (a rollback): the kept file serves again at once
	// and catches up from its own checkpoint.
	var logs logBuffer
	r = openRunner(t, l, runnerOpts{dir: dir, logger: slog.New(slog.NewTextHandler(&logs, nil))}, v1)
	s = r.Status("vb")
	if s.ServingVersion != 1 || s.Rebuild != nil || !strings.HasSuffix(s.File, "000001.db") {
		t.Fatalf("after going back to version 1: %s\n%s", statusJSON(s), logs.String())
	}
	waitFor(t, r, "vb", more)
	if got := counts(t, r, "vb"); !maps.Equal(got, want) {
		t.Fatalf("version 1 again: %v, want %v", got, want)
	}
	if p := pointerOf(t, dir, "vb"); p["current"] != "000001.db" || p["previous"] != "000002.db" {
		t.Fatalf("pointer %v", p)
	}
}

// A rebuild interrupted by Close resumes at the next Open from its own
// checkpoint.
func TestRebuildResumesAfterRestart(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	last := appendAll(t, l, hits("rs", 400, 4)...)
	var block atomic.Bool
	p := counter("rs", eventlog.Filter{})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if block.Load() && e.Seq == 300 {
			<-ctx.Done()
			return ctx.Err()
		}
		return inner(ctx, tx, e)
	}
	r := openRunner(t, l, runnerOpts{dir: dir, batch: 100}, p)
	waitFor(t, r, "rs", last)
	want := hashOf(t, r, "rs", countersTable)
	block.Store(true)
	if err := r.Rebuild(ctx, "rs"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, r, "rs", "partial rebuild", func(s projections.Status) bool { return s.Rebuild != nil && s.Rebuild.Done == 200 })
	closeRunner(t, r)
	block.Store(false)

	r = openRunner(t, l, runnerOpts{dir: dir, batch: 100}, p)
	s := r.Status("rs")
	if s.Rebuild == nil || s.Rebuild.Reason != "rebuild requested (resumed)" || s.Rebuild.Done != 200 {
		t.Fatalf("not resumed: %s", statusJSON(s))
	}
	waitStatus(t, r, "rs", "swap", func(s projections.Status) bool { return s.Rebuild == nil })
	waitFor(t, r, "rs", last)
	if got := hashOf(t, r, "rs", countersTable); got != want {
		t.Fatal("resumed rebuild differs")
	}
	if p := pointerOf(t, dir, "rs"); p["current"] != "000002.db" {
		t.Fatalf("pointer %v", p)
	}
}

// A projection registered later is back-filled from the log without
// touching the others.
func TestNewProjectionIsBackfilled(t *testing.T) {
	l := openLog(t)
	dir := t.TempDir()
	last := appendAll(t, l, hits("nw", 300, 3)...)
	r := openRunner(t, l, runnerOpts{dir: dir}, counter("old", eventlog.Filter{}))
	waitFor(t, r, "old", last)
	closeRunner(t, r)
	before, err := os.ReadFile(filepath.Join(dir, "old", "current"))
	if err != nil {
		t.Fatal(err)
	}

	last = appendAll(t, l, hits("nw", 30, 3)...)
	r = openRunner(t, l, runnerOpts{dir: dir}, counter("old", eventlog.Filter{}), counter("added", eventlog.Filter{}))
	if s := r.Status("added"); s.State != projections.StateCatchingUp && s.State != projections.StateRunning {
		t.Fatalf("new projection: %s", statusJSON(s))
	}
	waitFor(t, r, "added", last)
	waitFor(t, r, "old", last)
	if a, o := counts(t, r, "added"), counts(t, r, "old"); !maps.Equal(a, o) || total(a) != 330 {
		t.Fatalf("added %v, old %v", a, o)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "old", "current"))
	if string(after) != string(before) {
		t.Fatalf("old projection's files changed: %s → %s", before, after)
	}
}

// TestReplayEquivalence folds the log incrementally, in rounds with
// restarts and different batch sizes, then rebuilds: every table of the
// rebuilt file equals the incremental one.
func TestReplayEquivalence(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	p := streamsProjection()
	var last uint64
	for round := range 5 {
		r := openRunner(t, l, runnerOpts{dir: dir, batch: 7 + 13*round}, p)
		for range 10 {
			evs := make([]eventlog.Event, 1+rng.IntN(60))
			for i := range evs {
				cat := []string{"a", "b", "c"}[rng.IntN(3)]
				evs[i] = ev(fmt.Sprintf("%s.%d", cat, rng.IntN(20)), cat+".did", map[string]any{"x": rng.IntN(1000), "k": fmt.Sprint("k", rng.IntN(9))})
			}
			last = appendAll(t, l, evs...)
		}
		waitFor(t, r, "streams", last)
		closeRunner(t, r)
	}
	r := openRunner(t, l, runnerOpts{dir: dir}, p)
	waitFor(t, r, "streams", last)
	incremental := hashOf(t, r, "streams", p.Tables...)
	if err := r.Rebuild(ctx, "streams"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, r, "streams", "swap", func(s projections.Status) bool { return s.Rebuild == nil })
	if !strings.HasSuffix(s.File, "000002.db") {
		t.Fatalf("status %s", statusJSON(s))
	}
	waitFor(t, r, "streams", last)
	if got := hashOf(t, r, "streams", p.Tables...); got != incremental {
		t.Fatal("rebuilt tables differ from the incremental ones")
	}
	// And the kept incremental file, read directly, agrees.
	if got := tableHash(t, openFile(t, filepath.Join(dir, "streams", "000001.db")), p.Tables...); got != incremental {
		t.Fatal("kept file differs")
	}
}

// streamsProjection keeps two tables over categories a and b.
func streamsProjection() projections.Projection {
	streams := schemas.Table{Name: "streams", Columns: []schemas.Column{
		{Name: "stream", Type: "TEXT", PrimaryKey: true},
		{Name: "events", Type: "INTEGER", NotNull: true},
		{Name: "sum_x", Type: "INTEGER", NotNull: true},
		{Name: "last_id", Type: "TEXT", NotNull: true},
		{Name: "last_seq", Type: "INTEGER", NotNull: true},
	}}
	keys := schemas.Table{Name: "keys", Columns: []schemas.Column{
		{Name: "k", Type: "TEXT", PrimaryKey: true},
		{Name: "category", Type: "TEXT", PrimaryKey: true},
		{Name: "n", Type: "INTEGER", NotNull: true},
	}}
	return projections.Projection{
		Name: "streams", Version: 1, Tables: []schemas.Table{streams, keys},
		Filter: eventlog.Filter{Categories: []string{"a", "b"}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			var d struct {
				X int    `json:"x"`
				K string `json:"k"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO streams VALUES (?, 1, ?, ?, ?)
				ON CONFLICT (stream) DO UPDATE SET events = events + 1, sum_x = sum_x + excluded.sum_x, last_id = excluded.last_id, last_seq = excluded.last_seq`,
				e.Stream, d.X, e.ID, e.Seq); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO keys VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET n = n + 1`, d.K, e.Category())
			return err
		},
	}
}

// While a version bump rebuilds, the old file serves: WaitFor accepts it,
// WaitForVersion waits for the new version's file.
func TestWaitForVersion(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	last := appendAll(t, l, hits("wv", 300, 10)...)
	r := openRunner(t, l, runnerOpts{dir: dir}, counter("wv", eventlog.Filter{}))
	if err := r.WaitFor(ctx, "wv", last); err != nil {
		t.Fatal(err)
	}
	closeRunner(t, r)

	release := make(chan struct{})
	v2 := counter("wv", eventlog.Filter{})
	v2.Version = 2
	apply := v2.Apply
	v2.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		<-release // the rebuild waits until the test lets it go
		return apply(ctx, tx, e)
	}
	r = openRunner(t, l, runnerOpts{dir: dir}, v2)
	if err := r.WaitFor(ctx, "wv", last); err != nil {
		t.Fatalf("WaitFor on the frozen old file: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := r.WaitForVersion(short, "wv", last)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForVersion during the rebuild: %v; want it to wait", err)
	}
	close(release)
	long, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.WaitForVersion(long, "wv", last); err != nil {
		t.Fatal(err)
	}
	if st := r.Status("wv"); st.ServingVersion != 2 || st.Seq < last {
		t.Fatalf("after WaitForVersion: %+v", st)
	}
}
