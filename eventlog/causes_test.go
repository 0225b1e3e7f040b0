package eventlog_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
)

// TestCausesAreWrapped: a read that fails because JetStream cannot be
// reached is ErrUnavailable and keeps its cause, which errors.Is reaches.
func TestCausesAreWrapped(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	if _, err := l.Append(ctx, []eventlog.Event{ev("orders.1", "orders.created", nil)}); err != nil {
		t.Fatal(err)
	}
	l.Conn().Close() // the connection reads go through
	_, lastErr := l.LastSeq(ctx)
	_, readErr := l.ReadStream(ctx, "orders.1", 1, 10)
	_, cursorErr := l.OpenCursor(ctx, 0, eventlog.Filter{})
	for name, err := range map[string]error{"LastSeq": lastErr, "ReadStream": readErr, "OpenCursor": cursorErr} {
		if !errors.Is(err, eventlog.ErrUnavailable) || !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("%s on a closed connection: %v; want ErrUnavailable wrapping nats.ErrConnectionClosed", name, err)
		}
	}
}

// TestLoggerDefault: a log logs to slog.Default() unless told otherwise,
// and Open takes a nil Logger for it too.
func TestLoggerDefault(t *testing.T) {
	if got := eventlog.New(t.TempDir()).Logger; got != slog.Default() {
		t.Fatalf("New: Logger %v, want slog.Default()", got)
	}
	l := openLog(t, func(l *eventlog.Log) { l.Logger = nil })
	if l.Logger != slog.Default() {
		t.Fatalf("Open with a nil Logger: %v, want slog.Default()", l.Logger)
	}
}
