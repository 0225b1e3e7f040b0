package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// A Close whose context ends while a projection is folding (its Apply
// here ignores ctx and blocks) returns at once an *eventlog.CloseError
// for the missed deadline that names that projection and not the idle
// one, logs it as the log does, and leaves the runner closed: reads fail
// with ErrClosed. Once Apply returns, the loop stops and its file
// closes; the transaction it was in was not kept, and the next Open
// folds the event exactly once.
func TestCloseDeadlineWhileFolding(t *testing.T) {
	l := openLog(t)
	dir := t.TempDir()
	entered, release := make(chan struct{}), make(chan struct{})
	var blocked atomic.Bool
	slow := counter("slow", eventlog.Filter{})
	apply := slow.Apply
	slow.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if blocked.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return apply(ctx, tx, e)
	}
	var logs logBuffer
	r := projections.New(dir, l)
	r.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	for _, p := range []projections.Projection{slow, counter("quick", eventlog.Filter{})} {
		if err := r.Register(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	seq := appendAll(t, l, ev("c.1", "c.hit", map[string]string{"k": "a"}))
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("the slow projection never applied the event")
	}
	waitFor(t, r, "quick", seq)

	ended, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	err := r.Close(ended)
	var ce *eventlog.CloseError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) || ce.Component != "projections" ||
		len(ce.Running) != 1 || !strings.HasPrefix(ce.Running[0], "projection slow ") {
		t.Fatalf("Close: %v; want a CloseError for the missed deadline naming projection slow alone", err)
	}
	if got := logs.String(); !strings.Contains(got, `level=WARN msg="closed before the work in flight finished" component=projections cut_short="[projection slow `) ||
		!strings.Contains(got, `err="context deadline exceeded"`) {
		t.Fatalf("log: %s", got)
	}
	for _, name := range []string{"slow", "quick"} {
		if _, _, err := r.Acquire(name); !errors.Is(err, projections.ErrClosed) {
			t.Fatalf("Acquire(%s) after Close: %v, want ErrClosed", name, err)
		}
		if err := r.WaitFor(context.Background(), name, seq); !errors.Is(err, projections.ErrClosed) {
			t.Fatalf("WaitFor(%s) after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := r.Rebuild(context.Background(), "slow"); !errors.Is(err, projections.ErrClosed) {
		t.Fatalf("Rebuild after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	close(release)
	if left := runnerGoroutines(); left != "" {
		t.Fatalf("goroutines of the runner still running once Apply returned:\n%s", left)
	}
	r2 := openRunner(t, l, runnerOpts{dir: dir}, counter("slow", eventlog.Filter{}), counter("quick", eventlog.Filter{}))
	waitFor(t, r2, "slow", seq)
	if got := counts(t, r2, "slow"); len(got) != 1 || got["a"] != 1 {
		t.Fatalf("slow after reopening: %v, want the event folded once", got)
	}
}

// A Close whose context has ended finds every projection idle: nil, and
// no loop is left.
func TestCloseIdleWithEndedContext(t *testing.T) {
	l := openLog(t)
	r := projections.New(t.TempDir(), l)
	r.Logger = testLogger(t)
	if err := r.Register(counter("c", eventlog.Filter{})); err != nil {
		t.Fatal(err)
	}
	if err := r.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, "c", appendAll(t, l, ev("c.1", "c.hit", nil)))
	ended, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	if err := r.Close(ended); err != nil {
		t.Fatalf("Close of an idle runner: %v", err)
	}
	if left := runnerGoroutines(); left != "" {
		t.Fatalf("goroutines of the runner still running after Close:\n%s", left)
	}
}

// runnerGoroutines returns the stacks of goroutines running a runner's
// loops, if any are left; it waits a little for those on their way out.
func runnerGoroutines() string {
	var left string
	for range 10000 {
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		var out []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "projections.(*gen).run") || strings.Contains(g, "projections.(*Runner).followTail") {
				out = append(out, g)
			}
		}
		if left = strings.Join(out, "\n\n"); left == "" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return left
}
