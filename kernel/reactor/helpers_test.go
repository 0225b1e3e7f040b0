package reactor_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
)

// openLog starts a real embedded log in a temp dir, closed at cleanup.
func openLog(tb testing.TB, tune ...func(*eventlog.Log)) *eventlog.Log {
	tb.Helper()
	l := eventlog.New(tb.TempDir())
	for _, f := range tune {
		f(l)
	}
	if err := l.Open(context.Background()); err != nil {
		tb.Fatalf("open log: %v", err)
	}
	tb.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// publishPoison publishes a message that is not an event on subject,
// around the kernel, and returns its sequence.
func publishPoison(tb testing.TB, nc *nats.Conn, subject string) uint64 {
	tb.Helper()
	m, err := nc.Request(subject, []byte(`{"x":1}`), 5*time.Second)
	if err != nil {
		tb.Fatalf("publish into the stream: %v", err)
	}
	var ack struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Seq == 0 {
		tb.Fatalf("publish ack %s: %v", m.Data, err)
	}
	return ack.Seq
}
