package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// closeCall is one append made while the log closes: what it wrote and
// what it was told.
type closeCall struct {
	keys   []string // one per event, in its data
	queued bool     // AppendAsync accepted it
	res    Result
	err    error
}

// Close under load: writers keep hundreds of appends in flight (single
// events and atomic batches across streams, with and without
// expectations, with IDs of their own and the log's) while the log
// closes, with no deadline, one already passed, and a tiny one. After a
// restart every append's answer is checked against the log: nil means
// its events are there once, where it was told; ErrClosed means none is;
// ErrUnavailable (the only other answer allowed) means all or none. With
// no deadline, or when nothing was cut short, every accepted append is
// finished; otherwise Close's CloseError counts exactly the appends it
// cut short. Then no goroutine of the log is left.
func TestCloseUnderLoad(t *testing.T) {
	for _, mode := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"no deadline", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"deadline passed", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}},
		{"tiny deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Millisecond)
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			l := New(dir)
			if err := l.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			calls := appendWhileClosing(t, l, func() error {
				ctx, cancel := mode.ctx()
				defer cancel()
				return l.Close(ctx)
			})
			closeErr := calls.closeErr
			if leftover := logGoroutines(); leftover != "" {
				t.Fatalf("goroutines of the log still running after Close:\n%s", leftover)
			}
			if _, err := l.Append(context.Background(), []Event{{Stream: "after.1", Type: "t.n"}}); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after Close: %v, want ErrClosed", err)
			}
			if _, err := l.StreamInfo(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("StreamInfo after Close: %v, want ErrClosed", err)
			}
			if err := l.Close(context.Background()); err != nil {
				t.Fatalf("second Close: %v", err)
			}

			var unknown, unsent, refused, done int64
			for _, c := range calls.all {
				switch {
				case !c.queued:
					refused++
				case c.err == nil:
					done++
				case errors.Is(c.err, ErrClosed):
					unsent++
				case errors.Is(c.err, ErrUnavailable):
					unknown++
				}
			}
			var ce *CloseError
			switch {
			case closeErr == nil:
				if unknown+unsent > 0 {
					t.Fatalf("Close returned nil, but %d accepted appends were answered ErrUnavailable and %d ErrClosed", unknown, unsent)
				}
			case !errors.As(closeErr, &ce) || !errors.Is(closeErr, context.DeadlineExceeded):
				t.Fatalf("Close: %v (%T); want a CloseError for a missed deadline", closeErr, closeErr)
			case mode.name == "no deadline":
				t.Fatalf("Close without a deadline: %v", closeErr)
			case unknown != l.cut.unknown.Load() || unsent != l.cut.unsent.Load() || unknown+unsent == 0:
				t.Fatalf("Close counted %d unknown and %d unsent; the callers were told %d and %d", l.cut.unknown.Load(), l.cut.unsent.Load(), unknown, unsent)
			}

			stored := reopenAndRead(t, dir)
			checkCloseCalls(t, calls.all, stored)
			t.Logf("%d appends: %d committed, %d refused at Close, %d queued and not written, %d with an unknown outcome; Close: %v",
				len(calls.all), done, refused, unsent, unknown, closeErr)
		})
	}
}

type closeRun struct {
	all      []*closeCall
	closeErr error
}

// appendWhileClosing runs writers against l, calls closeLog once the log
// is busy, and returns every append's answer once all writers stopped.
func appendWhileClosing(t *testing.T, l *Log, closeLog func() error) closeRun {
	t.Helper()
	ctx := context.Background()
	var (
		mu    sync.Mutex
		all   []*closeCall
		wg    sync.WaitGroup
		fails = make(chan error, 100)
	)
	record := func(c *closeCall) {
		mu.Lock()
		all = append(all, c)
		mu.Unlock()
	}
	data := func(key string) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"k":%q}`, key)) }

	// Writers that wait for each answer: their own stream guarded by an
	// expectation, atomic batches that also write a shared stream, and
	// events with IDs of their own.
	for g := range 48 {
		wg.Go(func() {
			own := fmt.Sprintf("own.%d", g)
			shared := fmt.Sprintf("shared.%d", g%4)
			var version uint64
			for i := 0; ; i++ {
				key := func(j int) string { return fmt.Sprintf("w%d-%d-%d", g, i, j) }
				var evs []Event
				var expect []Expectation
				switch i % 3 {
				case 0:
					evs = []Event{{Stream: own, Type: "t.one", Data: data(key(0))}}
					expect = []Expectation{ExpectVersion(own, version)}
				case 1:
					evs = []Event{
						{Stream: own, Type: "t.batch", Data: data(key(0))},
						{Stream: shared, Type: "t.batch", Data: data(key(1))},
						{Stream: own, Type: "t.batch", Data: data(key(2))},
					}
					expect = []Expectation{ExpectVersion(own, version)}
				default:
					evs = []Event{{ID: l.NewID(), Stream: shared, Type: "t.own-id", Data: data(key(0))}}
				}
				c := &closeCall{}
				for j := range evs {
					c.keys = append(c.keys, key(j))
				}
				record(c)
				p, err := l.AppendAsync(ctx, evs, expect...)
				if err != nil {
					c.err = err
					if !errors.Is(err, ErrClosed) {
						fails <- fmt.Errorf("writer %d: AppendAsync: %w", g, err)
					}
					return
				}
				c.queued = true
				if c.res, c.err = p.Wait(); c.err != nil {
					return
				}
				for _, e := range evs {
					if e.Stream == own {
						version++
					}
				}
			}
		})
	}
	// Writers that keep 16 appends each in flight, without expectations.
	for g := range 16 {
		wg.Go(func() {
			stream := fmt.Sprintf("bulk.%d", g)
			var window []*Pending
			var waiting []*closeCall
			for i := 0; ; i++ {
				key := fmt.Sprintf("b%d-%d", g, i)
				e := Event{Stream: stream, Type: "t.bulk", Data: data(key)}
				if i%2 == 0 {
					e.ID = l.NewID()
				}
				c := &closeCall{keys: []string{key}}
				record(c)
				p, err := l.AppendAsync(ctx, []Event{e})
				if err != nil {
					c.err = err
					if !errors.Is(err, ErrClosed) {
						fails <- fmt.Errorf("bulk writer %d: AppendAsync: %w", g, err)
					}
					break
				}
				c.queued = true
				window, waiting = append(window, p), append(waiting, c)
				if len(window) == 16 {
					waiting[0].res, waiting[0].err = window[0].Wait()
					window, waiting = window[1:], waiting[1:]
				}
			}
			for i, p := range window {
				waiting[i].res, waiting[i].err = p.Wait()
			}
		})
	}

	// Close once the log is busy.
	for l.storedSeq.Load() < 1500 {
		select {
		case err := <-fails:
			t.Fatal(err)
		case <-time.After(time.Millisecond):
		}
	}
	closeErr := closeLog()
	wg.Wait()
	close(fails)
	for err := range fails {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return closeRun{all: all, closeErr: closeErr}
}

// reopenAndRead opens the log in dir again and returns every event in
// it by the key in its data.
func reopenAndRead(t *testing.T, dir string) map[string][]Event {
	t.Helper()
	ctx := context.Background()
	l := New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	stored := map[string][]Event{}
	versions := map[string]uint64{}
	for after := uint64(0); ; {
		p, err := l.Read(ctx, after, 1000, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Malformed != nil {
				t.Fatalf("malformed entry at %d: %+v", e.Seq, e.Malformed)
			}
			if e.Version != versions[e.Stream]+1 {
				t.Fatalf("stream %s: version %d at seq %d follows %d", e.Stream, e.Version, e.Seq, versions[e.Stream])
			}
			versions[e.Stream] = e.Version
			var d struct{ K string }
			if err := json.Unmarshal(e.Data, &d); err != nil || d.K == "" {
				t.Fatalf("event at %d has no key: %s", e.Seq, e.Data)
			}
			stored[d.K] = append(stored[d.K], e)
		}
		if len(p.Events) == 0 {
			return stored
		}
		after = p.LastSeq
	}
}

// checkCloseCalls checks every append's answer against the log.
func checkCloseCalls(t *testing.T, calls []*closeCall, stored map[string][]Event) {
	t.Helper()
	for _, c := range calls {
		present := 0
		for _, k := range c.keys {
			if n := len(stored[k]); n > 1 {
				t.Fatalf("%s is in the log %d times (answer %v)", k, n, c.err)
			}
			present += len(stored[k])
		}
		switch {
		case !c.queued || errors.Is(c.err, ErrClosed):
			if present > 0 {
				t.Fatalf("append %v answered %v (queued %v), but %d of its events are in the log", c.keys, c.err, c.queued, present)
			}
		case c.err == nil:
			if len(c.res.Events) != len(c.keys) {
				t.Fatalf("append %v: result %+v", c.keys, c.res)
			}
			for i, k := range c.keys {
				got, want := stored[k], c.res.Events[i]
				if len(got) != 1 || got[0].Seq != want.Seq || got[0].ID != want.ID || got[0].Version != want.Version || got[0].Stream != want.Stream {
					t.Fatalf("append %v succeeded at %+v; the log holds %+v", c.keys, want, got)
				}
			}
		case errors.Is(c.err, ErrUnavailable):
			if present != 0 && present != len(c.keys) {
				t.Fatalf("append %v (outcome unknown) is in the log in part: %d of %d events", c.keys, present, len(c.keys))
			}
		default:
			t.Fatalf("append %v answered %v: neither done, not written (ErrClosed) nor unknown (ErrUnavailable)", c.keys, c.err)
		}
	}
}

// A Close whose context ends while appends are sent and not acknowledged
// (JetStream's answers are kept from the log here) and others are queued
// behind them: it returns at once a CloseError for the missed deadline,
// the sent appends fail with ErrUnavailable, though they landed, and the
// queued ones with ErrClosed, and are not in the log.
func TestCloseDeadlineCutsFlightsShort(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := New(dir)
	l.RequestTimeout = time.Hour // only Close's deadline ends the wait
	var logs bytes.Buffer
	var logMu sync.Mutex
	l.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.ackSub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	// One append per group: the finisher waits for the first group's
	// answer, flightDepth more groups queue for it and one more is
	// published while the commit loop waits to hand it over.
	sent := flightDepth + 2
	var pending []*Pending
	var ids []string
	for i := range sent + 3 {
		id := l.NewID()
		p, err := l.AppendAsync(ctx, []Event{{ID: id, Stream: "s.1", Type: "t.n"}})
		if err != nil {
			t.Fatal(err)
		}
		pending, ids = append(pending, p), append(ids, id)
		for i < sent {
			last, err := l.LastSeq(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if last == uint64(i+1) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	ended, cancel := context.WithDeadline(ctx, time.Now())
	defer cancel()
	err := l.Close(ended)
	var ce *CloseError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) || ce.Component != "event log" || len(ce.Running) != 2 {
		t.Fatalf("Close: %v; want a CloseError for the missed deadline, naming the sent and the queued appends", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%d appends sent to JetStream", sent)) || !strings.Contains(err.Error(), "3 appends not sent yet") {
		t.Fatalf("Close: %v; want %d sent and 3 queued appends named", err, sent)
	}
	logMu.Lock()
	logged := logs.String()
	logMu.Unlock()
	if !strings.Contains(logged, "level=WARN msg=\"closed before the work in flight finished\" component=\"event log\" cut_short=") || !strings.Contains(logged, "err=\"context deadline exceeded\"") {
		t.Fatalf("log: %s", logged)
	}
	if leftover := logGoroutines(); leftover != "" {
		t.Fatalf("goroutines of the log still running after Close:\n%s", leftover)
	}
	for i, p := range pending {
		_, err := p.Wait()
		switch {
		case i < sent && (!errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "may or may not have landed")):
			t.Fatalf("sent append %d: %v; want ErrUnavailable, outcome unknown", i, err)
		case i >= sent && !errors.Is(err, ErrClosed):
			t.Fatalf("queued append %d: %v; want ErrClosed", i, err)
		}
	}
	stored := map[string]bool{}
	for _, evs := range reopenAndReadIDs(t, dir) {
		stored[evs] = true
	}
	for i, id := range ids {
		if stored[id] != (i < sent) {
			t.Fatalf("append %d in the log: %v; want %v (sent appends landed, queued ones not)", i, stored[id], i < sent)
		}
	}
}

// A Close whose context has ended finds nothing in flight: nil.
func TestCloseIdleWithEndedContext(t *testing.T) {
	l := New(t.TempDir())
	if err := l.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), []Event{{Stream: "s.1", Type: "t.n"}}); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	if err := l.Close(ended); err != nil {
		t.Fatalf("Close of an idle log: %v", err)
	}
	if leftover := logGoroutines(); leftover != "" {
		t.Fatalf("goroutines of the log still running after Close:\n%s", leftover)
	}
}

func reopenAndReadIDs(t *testing.T, dir string) []string {
	t.Helper()
	ctx := context.Background()
	l := New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	p, err := l.Read(ctx, 0, 1000, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range p.Events {
		ids = append(ids, e.ID)
	}
	return ids
}

// logGoroutines returns the stacks of goroutines running the log's
// loops, if any are left. A loop has signalled that it stopped just
// before it returns, so this waits a little for those on their way out.
func logGoroutines() string {
	var left string
	for range 10000 {
		if left = logStacks(); left == "" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return left
}

func logStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range []string{"eventlog.(*Log).commitLoop", "eventlog.(*Log).finishLoop", "eventlog.(*Log).watchStorage"} {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
