package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// With the category reserved, only the runner's writer records a skip:
// an ordinary append of a decision is refused. A message published
// around the kernel among the decisions does not keep the runner from
// reading them: the projection halts cleanly at its next failing event.
func TestSkipThroughReservedCategory(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	w, err := l.Reserve(projections.Category)
	if err != nil {
		t.Fatal(err)
	}
	p := counter("picky", eventlog.Filter{Categories: []string{"t"}})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if countKey(e) == "bad" {
			return errors.New("bad event")
		}
		return inner(ctx, tx, e)
	}
	appendAll(t, l, hits("t", 3, 1)...)
	bad1 := appendAll(t, l, ev("t.1", "t.hit", map[string]string{"k": "bad"}))
	bad2 := appendAll(t, l, ev("t.2", "t.hit", map[string]string{"k": "bad"}))
	r := openRunner(t, l, runnerOpts{}, p)
	waitStatus(t, r, "picky", "halt", func(s projections.Status) bool { return s.Halted != nil && s.Halted.Seq == bad1 })

	forged, _ := json.Marshal(map[string]any{"projection": "picky", "seq": bad1, "version": 1})
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: projections.SkipStream("picky"), Type: projections.TypeEventSkipped, Data: forged}}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("ordinary append of a skip decision: %v; want ErrInvalid", err)
	}
	// A runner without the writer cannot record the decision either.
	if err := r.Skip(ctx, "picky", bad1); !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("skip without the writer: %v; want ErrInvalid", err)
	}
	r.Writer = w
	if err := r.Skip(ctx, "picky", bad1); err != nil {
		t.Fatalf("skip through the writer: %v", err)
	}
	waitStatus(t, r, "picky", "halt at the second bad event", func(s projections.Status) bool { return s.Halted != nil && s.Halted.Seq == bad2 })

	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publishPoison(t, nc, eventlog.SubjectOf(projections.SkipStream("picky")))
	publishPoison(t, nc, eventlog.SubjectOf(projections.SkipStream("other")))
	if err := r.Retry("picky"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, r, "picky", "halt again", func(s projections.Status) bool { return s.Halted != nil || s.Error != "" })
	if s.Halted == nil || s.Halted.Seq != bad2 || s.Error != "" {
		t.Fatalf("after retry: %s; want halted at %d, the skip decisions read", statusJSON(s), bad2)
	}
}

// A reactor starts over records of its stream that it cannot read
// (written around the kernel) and lists them; with the category
// reserved, it parks through its writer and ordinary appends of parked
// records are refused.
func TestReactorStartsOverUnreadableRecords(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	junk := reactorAppendData(t, l, projections.ReactorStream("certs"), projections.TypeEventParked, `{"reactor":"certs","seq":"seven"}`)
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	raw := publishPoison(t, nc, eventlog.SubjectOf(projections.ReactorStream("certs")))
	// Another reactor's unreadable record is not this one's business.
	publishPoison(t, nc, eventlog.SubjectOf(projections.ReactorStream("other")))

	w, err := l.Reserve(projections.ReactorCategory)
	if err != nil {
		t.Fatal(err)
	}
	failing := func(context.Context, eventlog.Event, string) error { return errors.New("acme: down") }
	h := reactorStart(t, l, projections.Reactor{Name: "certs", Filter: eventlog.Filter{Categories: []string{"routes"}}, Handle: failing, Writer: w})
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Unreadable, []uint64{junk, raw}) || len(st.Parked) != 0 || !slices.Equal(h.Unreadable(), st.Unreadable) {
		t.Fatalf("status %+v; want records %d and %d unreadable", st, junk, raw)
	}

	dns := reactorStart(t, l, projections.Reactor{Name: "dns", Filter: eventlog.Filter{Categories: []string{"zones"}}, Handle: failing, MaxAttempts: 1, Writer: w})
	ev := reactorAppend(t, l, "zones.a", "zones.changed")
	reactorWait(t, "the failing event parked", func() bool {
		st, err := dns.Status(ctx)
		return err == nil && len(st.Parked) == 1 && st.Parked[0].Seq == ev[0].Seq && len(st.Unreadable) == 0
	})
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: projections.ReactorStream("dns"), Type: projections.TypeEventUnparked,
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
