package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
)

func TestWaitTail(t *testing.T) {
	for _, writable := range []bool{false, true} {
		l := openLog(t, func(l *eventlog.Log) {
			if writable { // other writers may exist: the log polls
				l.Listen, l.ListenWritable, l.PollInterval = "127.0.0.1:0", true, 20*time.Millisecond
			}
		})
		ctx := context.Background()
		if _, err := l.Append(ctx, []eventlog.Event{ev("a.1", "a.x", nil), ev("a.2", "a.x", nil)}); err != nil {
			t.Fatal(err)
		}
		if seq, err := l.WaitTail(ctx, 0); err != nil || seq != 2 {
			t.Fatalf("writable=%v: WaitTail(0) = %d, %v; want 2", writable, seq, err)
		}
		// Blocks until the log grows.
		got := make(chan uint64, 1)
		go func() {
			seq, _ := l.WaitTail(ctx, 2)
			got <- seq
		}()
		select {
		case seq := <-got:
			t.Fatalf("writable=%v: WaitTail(2) returned %d before the log grew", writable, seq)
		case <-time.After(100 * time.Millisecond):
		}
		if writable {
			// A write around the log is seen by polling.
			nc, err := nats.Connect(l.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := nc.Request("fazt.ev.a.3", []byte("{}"), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			nc.Close()
		} else if _, err := l.Append(ctx, []eventlog.Event{ev("a.3", "a.x", nil)}); err != nil {
			t.Fatal(err)
		}
		select {
		case seq := <-got:
			if seq != 3 {
				t.Fatalf("writable=%v: WaitTail(2) = %d; want 3", writable, seq)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("writable=%v: WaitTail(2) did not return after the log grew", writable)
		}
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := l.WaitTail(cctx, 3); err != context.DeadlineExceeded {
			t.Fatalf("writable=%v: WaitTail at the tail: %v; want the context's deadline", writable, err)
		}
		cancel()
	}
}

// Retries after a restart, within the dedupe window, return the original
// positions: the log reloads the recent caller-chosen IDs at Open.
func TestIdempotentAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	single := ev("o.1", "o.x", nil)
	single.ID = l.NewID()
	batch := []eventlog.Event{ev("o.2", "o.x", nil), ev("o.3", "o.x", nil)}
	batch[0].ID, batch[1].ID = l.NewID(), l.NewID()
	first, err := l.Append(ctx, []eventlog.Event{single}, eventlog.ExpectNew("o.1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []eventlog.Event{ev("o.9", "o.x", nil)}); err != nil { // an ID the log chose
		t.Fatal(err)
	}
	second, err := l.Append(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	l = eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	again, err := l.Append(ctx, []eventlog.Event{single}, eventlog.ExpectNew("o.1"))
	if err != nil || !again.Duplicate || again.LastSeq != first.LastSeq {
		t.Fatalf("single retry after restart: %+v %v; want the original %+v", again, err, first)
	}
	again, err = l.Append(ctx, batch)
	if err != nil || !again.Duplicate || again.LastSeq != second.LastSeq || again.Events[0].Seq != second.Events[0].Seq {
		t.Fatalf("batch retry after restart: %+v %v; want the original %+v", again, err, second)
	}
	if last, _ := l.LastSeq(ctx); last != 4 {
		t.Fatalf("the log holds %d events; want 4, no copies", last)
	}
}

// After bursts of concurrent appends, whose groups the log folds into
// one fsync, WaitTail knows the last sequence of every burst.
func TestWaitTailAfterBursts(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Go(func() {
				for i := 0; i < 5; i++ {
					if _, err := l.Append(ctx, []eventlog.Event{ev(fmt.Sprintf("b.%d", g), "b.x", nil)}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		last, err := l.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		seq, err := l.WaitTail(wctx, last-1)
		cancel()
		if err != nil || seq != last {
			t.Fatalf("round %d: WaitTail(%d) = %d, %v; want %d at once", round, last-1, seq, err, last)
		}
	}
}
