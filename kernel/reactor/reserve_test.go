package reactor_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// A reactor starts over records of its stream that it cannot read
// (written around the kernel) and lists them; with the category
// reserved, it parks through its writer and ordinary appends of parked
// records are refused.
func TestStartsOverUnreadableRecords(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	junk := reactorAppendData(t, l, reactor.Stream("certs"), reactor.TypeEventParked, `{"reactor":"certs","seq":"seven"}`)
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	raw := publishPoison(t, nc, eventlog.SubjectOf(reactor.Stream("certs")))
	// Another reactor's unreadable record is not this one's business.
	publishPoison(t, nc, eventlog.SubjectOf(reactor.Stream("other")))

	w, err := l.Reserve(reactor.Category)
	if err != nil {
		t.Fatal(err)
	}
	failing := func(context.Context, eventlog.Event, string) error { return errors.New("acme: down") }
	h := reactorStart(t, l, reactor.Reactor{Name: "certs", Filter: eventlog.Filter{Categories: []string{"routes"}}, Handle: failing, Writer: w})
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Unreadable, []uint64{junk, raw}) || len(st.Parked) != 0 || !slices.Equal(h.Unreadable(), st.Unreadable) {
		t.Fatalf("status %+v; want records %d and %d unreadable", st, junk, raw)
	}

	dns := reactorStart(t, l, reactor.Reactor{Name: "dns", Filter: eventlog.Filter{Categories: []string{"zones"}}, Handle: failing, MaxAttempts: 1, Writer: w})
	ev := reactorAppend(t, l, "zones.a", "zones.changed")
	reactorWait(t, "the failing event parked", func() bool {
		st, err := dns.Status(ctx)
		return err == nil && len(st.Parked) == 1 && st.Parked[0].Seq == ev[0].Seq && len(st.Unreadable) == 0
	})
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: reactor.Stream("dns"), Type: reactor.TypeEventUnparked,
		Data: []byte(`{"reactor":"dns","seq":1}`)}}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("ordinary append of a parked record: %v; want ErrInvalid", err)
	}
}

func reactorAppendData(tb testing.TB, l *eventlog.Log, stream, typ, data string) uint64 {
	tb.Helper()
	res, err := l.Append(context.Background(), []eventlog.Event{{Stream: stream, Type: typ, Data: json.RawMessage(data)}})
	if err != nil {
		tb.Fatal(err)
	}
	return res.LastSeq
}
