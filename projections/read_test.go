package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// sumOf is a read function that sums the counters into *sum.
func sumOf(sum *int) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT coalesce(sum(n), 0) FROM counters`).Scan(sum)
	}
}

// Read with MinSeq set to an append's LastSeq sees that append, at once
// after appending (no WaitFor first), and says which sequence it read at.
func TestReadAtOrAfterSeq(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	r := openRunner(t, l, runnerOpts{}, counter("all", eventlog.Filter{}))
	for i := range 20 {
		res, err := l.Append(ctx, []eventlog.Event{ev("counter.x", "counter.hit", map[string]string{"k": "new"})})
		if err != nil {
			t.Fatal(err)
		}
		var n int
		seq, err := r.Read(ctx, "all", projections.ReadOptions{MinSeq: res.LastSeq}, func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT n FROM counters WHERE key = 'new'`).Scan(&n)
		})
		if err != nil {
			t.Fatal(err)
		}
		// One appender: the projection can be at this append and no
		// further.
		if n != i+1 || seq != res.LastSeq {
			t.Fatalf("append %d at seq %d: read n=%d at seq %d", i, res.LastSeq, n, seq)
		}
	}

	// Without MinSeq it reads the file as it is, and says where that is.
	last := appendAll(t, l, hits("counter", 30, 3)...)
	waitFor(t, r, "all", last)
	var sum int
	seq, err := r.Read(ctx, "all", projections.ReadOptions{}, sumOf(&sum))
	if err != nil || seq != last || sum != 50 {
		t.Fatalf("read without MinSeq: sum %d at seq %d, %v; want 50 at %d", sum, seq, err, last)
	}

	// The transaction is read-only.
	_, err = r.Read(ctx, "all", projections.ReadOptions{}, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM counters`)
		return err
	})
	if err == nil || total(counts(t, r, "all")) != 50 {
		t.Fatalf("a write in Read: %v; counters %v", err, counts(t, r, "all"))
	}

	// fn's error comes back as it is; an unknown projection is not found.
	errFn := errors.New("fn failed")
	if _, err := r.Read(ctx, "all", projections.ReadOptions{}, func(context.Context, *sql.Tx) error { return errFn }); err != errFn {
		t.Fatalf("fn's error came back as %v", err)
	}
	if _, err := r.Read(ctx, "nope", projections.ReadOptions{}, sumOf(&sum)); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("unknown projection: %v", err)
	}
	closeRunner(t, r)
	if _, err := r.Read(ctx, "all", projections.ReadOptions{}, sumOf(&sum)); !errors.Is(err, projections.ErrClosed) {
		t.Fatalf("closed runner: %v", err)
	}
}

// A MinSeq the projection does not reach within MaxWait is the error
// Query gives for the same min_seq; the caller's context ending first is
// the caller's error. fn is not called either way.
func TestReadWaitBounds(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	last := appendAll(t, l, hits("counter", 10, 2)...)
	r := openRunner(t, l, runnerOpts{}, counter("all", eventlog.Filter{}))
	waitFor(t, r, "all", last)
	called := false
	fn := func(context.Context, *sql.Tx) error { called = true; return nil }

	want := last + 100
	_, err := r.Read(ctx, "all", projections.ReadOptions{MinSeq: want, MaxWait: 50 * time.Millisecond}, fn)
	_, qerr := r.Query(ctx, "all", `SELECT 1`, nil, projections.QueryOptions{MinSeq: want, MaxWait: 50 * time.Millisecond})
	if !errors.Is(err, eventlog.ErrUnavailable) || qerr == nil || err.Error() != qerr.Error() ||
		!strings.Contains(err.Error(), fmt.Sprintf("behind: at seq %d after waiting 50ms for %d", last, want)) {
		t.Fatalf("MinSeq past the log:\n read  %v\n query %v", err, qerr)
	}
	t.Log(err)

	// The caller's deadline, well before MaxWait.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = r.Read(short, "all", projections.ReadOptions{MinSeq: want, MaxWait: time.Hour}, fn)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("caller's deadline: %v", err)
	}
	// Cancelled while it waits.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(cctx, "all", projections.ReadOptions{MinSeq: want, MaxWait: time.Hour}, fn)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
	if called {
		t.Fatal("fn called although the wait failed")
	}
}

// A halted projection answers reads at or before its halt point, as
// Query does, and refuses later ones at once with Query's error.
func TestReadHalted(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	p := counter("all", eventlog.Filter{})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if e.Type == "counter.boom" {
			return errors.New("boom")
		}
		return inner(ctx, tx, e)
	}
	appendAll(t, l, hits("counter", 4, 2)...)
	boom := appendAll(t, l, ev("counter.1", "counter.boom", nil))
	last := appendAll(t, l, hits("counter", 3, 2)...)
	r := openRunner(t, l, runnerOpts{}, p)
	waitStatus(t, r, "all", "halt", func(s projections.Status) bool { return s.Halted != nil })

	var sum int
	seq, err := r.Read(ctx, "all", projections.ReadOptions{MinSeq: boom - 1}, sumOf(&sum))
	if err != nil || seq != boom-1 || sum != 4 {
		t.Fatalf("halted projection: sum %d at seq %d, %v; want 4 at %d", sum, seq, err, boom-1)
	}
	// Beyond the halt: unavailable at once, though MaxWait is long (the
	// guard's deadline would show as DeadlineExceeded instead).
	guard, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = r.Read(guard, "all", projections.ReadOptions{MinSeq: last, MaxWait: time.Hour}, sumOf(&sum))
	_, qerr := r.Query(guard, "all", `SELECT 1`, nil, projections.QueryOptions{MinSeq: last, MaxWait: time.Hour})
	var he *projections.HaltedError
	if !errors.Is(err, eventlog.ErrUnavailable) || !errors.As(err, &he) || he.Halt.Seq != boom ||
		errors.Is(err, context.DeadlineExceeded) || qerr == nil || err.Error() != qerr.Error() ||
		!strings.Contains(err.Error(), fmt.Sprintf("behind: at seq %d, want %d: projection all halted at seq %d", boom-1, last, boom)) {
		t.Fatalf("MinSeq past the halt:\n read  %v\n query %v", err, qerr)
	}
	t.Log(err)
}

// The sequence Read returns is the one its reads saw, while appends and
// the fold race with it: every event counts 1, so the counters sum to
// exactly the sequence read at.
func TestReadSeqMatchesRowsUnderAppends(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Durability = eventlog.Relaxed })
	ctx := context.Background()
	r := openRunner(t, l, runnerOpts{batch: 7}, counter("all", eventlog.Filter{}))
	const appends = 100
	appended := make(chan uint64, appends)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(appended)
		for i := range appends {
			res, err := l.Append(ctx, hits("counter", 1+i%5, 3))
			if err != nil {
				t.Error(err)
				return
			}
			appended <- res.LastSeq
		}
	})
	// Reads of whatever the file holds, racing the fold's commits.
	seen := map[uint64]bool{}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var sum int
			seq, err := r.Read(ctx, "all", projections.ReadOptions{}, sumOf(&sum))
			if err != nil || uint64(sum) != seq {
				t.Errorf("read without MinSeq: sum %d at seq %d, %v", sum, seq, err)
				return
			}
			seen[seq] = true
		}
	})
	// Reads of each append, while the next ones land.
	for minSeq := range appended {
		var sum int
		seq, err := r.Read(ctx, "all", projections.ReadOptions{MinSeq: minSeq, MaxWait: time.Minute}, sumOf(&sum))
		if err != nil || seq < minSeq || uint64(sum) != seq {
			t.Errorf("read at MinSeq %d: sum %d at seq %d, %v", minSeq, sum, seq, err)
			break
		}
	}
	close(stop)
	for range appended { // after a failure, let the appender finish
	}
	wg.Wait()
	t.Logf("%d distinct sequences read without MinSeq", len(seen))
}

// CurrentVersion waits for the registered version's file; without it, a
// read is content with the previous version's file, frozen while the
// rebuild runs.
func TestReadCurrentVersion(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	dir := t.TempDir()
	last := appendAll(t, l, hits("cv", 50, 5)...)
	r := openRunner(t, l, runnerOpts{dir: dir}, counter("cv", eventlog.Filter{}))
	waitFor(t, r, "cv", last)
	closeRunner(t, r)

	// Version 2 counts under other keys, so a read shows which file it saw.
	gate := make(chan struct{})
	v2 := counter("cv", eventlog.Filter{})
	v2.Version = 2
	v2.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO counters (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1`, "v2:"+countKey(e))
		return err
	}
	r = openRunner(t, l, runnerOpts{dir: dir}, v2)
	keys := func(into map[string]int) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT key, n FROM counters`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var k string
				var n int
				if err := rows.Scan(&k, &n); err != nil {
					return err
				}
				into[k] = n
			}
			return rows.Err()
		}
	}
	old := map[string]int{}
	seq, err := r.Read(ctx, "cv", projections.ReadOptions{MinSeq: last}, keys(old))
	if err != nil || seq != last || !maps.Equal(old, map[string]int{"k0": 10, "k1": 10, "k2": 10, "k3": 10, "k4": 10}) {
		t.Fatalf("read of the frozen version 1 file: %v at seq %d, %v", old, seq, err)
	}
	_, err = r.Read(ctx, "cv", projections.ReadOptions{MinSeq: last, MaxWait: 50 * time.Millisecond, CurrentVersion: true}, keys(map[string]int{}))
	if !errors.Is(err, eventlog.ErrUnavailable) ||
		!strings.Contains(err.Error(), fmt.Sprintf("version 1 at seq %d (rebuilding) after waiting 50ms for version 2 at seq %d", last, last)) {
		t.Fatalf("CurrentVersion during the rebuild: %v", err)
	}
	t.Log(err)

	close(gate)
	cur := map[string]int{}
	seq, err = r.Read(ctx, "cv", projections.ReadOptions{MinSeq: last, MaxWait: time.Minute, CurrentVersion: true}, keys(cur))
	if err != nil || seq != last || !maps.Equal(cur, map[string]int{"v2:k0": 10, "v2:k1": 10, "v2:k2": 10, "v2:k3": 10, "v2:k4": 10}) {
		t.Fatalf("read of version 2: %v at seq %d, %v", cur, seq, err)
	}
}

// Timeout bounds the read itself: taking a connection, and fn, whose
// context ends then. MaxValueBytes lowers SQLite's length limit for the
// read only.
func TestReadTimeoutAndValueLimit(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	r := projections.New(t.TempDir(), l)
	r.Readers = 1
	r.Logger = testLogger(t)
	if err := r.Register(counter("all", eventlog.Filter{})); err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRunner(t, r) })

	// fn's statement is interrupted; fn's error comes back as it is.
	errFn := errors.New("fn failed")
	var fnCtxErr error
	_, err := r.Read(ctx, "all", projections.ReadOptions{Timeout: 100 * time.Millisecond}, func(ctx context.Context, tx *sql.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c`).Scan(&n)
		fnCtxErr = ctx.Err()
		return fmt.Errorf("%w: %w", errFn, err)
	})
	if !errors.Is(err, errFn) || !errors.Is(fnCtxErr, context.DeadlineExceeded) {
		t.Fatalf("endless statement: %v (fn's context: %v)", err, fnCtxErr)
	}

	// The only reader connection is taken: the read times out waiting.
	db, release, err := r.Acquire("all")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Reader.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	_, err = r.Read(ctx, "all", projections.ReadOptions{Timeout: 50 * time.Millisecond}, func(context.Context, *sql.Tx) error { called = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "read timed out after 50ms") || called {
		t.Fatalf("no free connection: %v (fn called: %v)", err, called)
	}
	t.Log(err)
	conn.Close()
	release()

	blob := func(n int) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			var got int
			return tx.QueryRowContext(ctx, `SELECT length(randomblob(?))`, n).Scan(&got)
		}
	}
	var se *sqlite.Error
	if _, err := r.Read(ctx, "all", projections.ReadOptions{MaxValueBytes: 1000}, blob(2000)); !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_TOOBIG {
		t.Fatalf("a value over MaxValueBytes: %v", err)
	}
	// The same (only) connection, its limit restored.
	if _, err := r.Read(ctx, "all", projections.ReadOptions{}, blob(2000)); err != nil {
		t.Fatalf("after MaxValueBytes: %v", err)
	}
}
