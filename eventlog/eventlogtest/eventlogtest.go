// Package eventlogtest opens real event logs for the tests of any
// package: an embedded NATS JetStream server in the test's temporary
// directory, opened before the test goes on and closed when it ends.
//
//	func TestOrders(t *testing.T) {
//		l := eventlogtest.Open(t)
//		res, err := l.Append(ctx, events)
//		...
//	}
//
// Tunables are set before Open, as with eventlog.New:
//
//	l := eventlogtest.Open(t, func(l *eventlog.Log) { l.Durability = eventlog.Relaxed })
//
// OpenDir opens the log in a given directory, to reopen what a test
// closed (a restart) or to share a directory with a kernel.
//
// Only tests import this package (it imports testing). The eventlog
// package's own internal tests (package eventlog) cannot use it, since
// it imports eventlog; its external tests (package eventlog_test) can.
package eventlogtest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
)

// Open starts a real embedded log in a new temporary directory of tb,
// with tune applied before it opens, and closes it at cleanup. It fails
// tb when the log does not open, or when Close at cleanup fails.
func Open(tb testing.TB, tune ...func(*eventlog.Log)) *eventlog.Log {
	tb.Helper()
	return OpenDir(tb, tb.TempDir(), tune...)
}

// OpenDir is Open on dir. A test that closes the log itself may: Close
// again at cleanup does nothing.
func OpenDir(tb testing.TB, dir string, tune ...func(*eventlog.Log)) *eventlog.Log {
	tb.Helper()
	l := eventlog.New(dir)
	for _, f := range tune {
		f(l)
	}
	if err := l.Open(context.Background()); err != nil {
		tb.Fatalf("open event log in %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			tb.Errorf("close event log in %s: %v", dir, err)
		}
	})
	return l
}

// PublishAround publishes a message with headers h and data straight
// into the log's stream over nc (a client of a writable listener),
// around every check of the log, as a hostile or buggy writer would, and
// returns the sequence JetStream stored it at.
func PublishAround(tb testing.TB, nc *nats.Conn, subject string, h nats.Header, data string) uint64 {
	tb.Helper()
	m, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: h, Data: []byte(data)}, 5*time.Second)
	if err != nil {
		tb.Fatalf("publish around the log to %s: %v", subject, err)
	}
	var ack struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Seq == 0 {
		tb.Fatalf("publish around the log: ack %s: %v", m.Data, err)
	}
	return ack.Seq
}

// ReadAfter returns every entry of l after sequence after and the last
// sequence examined, to pass as after next time: what a test appended
// since it last looked.
func ReadAfter(tb testing.TB, l *eventlog.Log, after uint64) ([]eventlog.Event, uint64) {
	tb.Helper()
	var out []eventlog.Event
	for {
		page, err := l.Read(context.Background(), after, 1000, eventlog.Filter{})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, page.Events...)
		if page.LastSeq == after {
			return out, after
		}
		after = page.LastSeq
	}
}
