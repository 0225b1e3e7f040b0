package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
)

// TestWritableListenerCannotWriteReservedCategories: a writable listener's
// clients publish events around the kernel, but not into the categories
// reserved before the log opened (the kernel's own records).
func TestWritableListenerCannotWriteReservedCategories(t *testing.T) {
	l := eventlog.New(t.TempDir())
	l.Listen, l.ListenWritable = "127.0.0.1:0", true
	if _, err := l.Reserve("schemas", "projections"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := func(subject string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Header.Set("Fazt-Id", l.NewID())
		m.Header.Set("Fazt-Type", "schemas.registered")
		m.Header.Set("Fazt-Version", "1")
		m.Data = []byte(`{"type":"x.y","version":1,"schema":{"type":"string"}}`)
		return m
	}
	for _, subject := range []string{"fazt.ev.schemas.x.y", "fazt.ev.projections.p"} {
		if _, err := nc.RequestMsg(msg(subject), 500*time.Millisecond); err == nil {
			t.Errorf("a listener client published to %s", subject)
		}
	}
	if seq, err := l.LastSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("the log holds %d messages (%v); want none", seq, err)
	}
	// Other categories stay writable around the kernel.
	if _, err := nc.RequestMsg(msg("fazt.ev.orders.1"), 2*time.Second); err != nil {
		t.Fatalf("publish to an ordinary category: %v", err)
	}
	if seq, err := l.LastSeq(ctx); err != nil || seq != 1 {
		t.Fatalf("the log holds %d messages (%v); want 1", seq, err)
	}
}
