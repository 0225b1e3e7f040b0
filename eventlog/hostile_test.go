package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// writableLog opens a log whose listener lets others publish into the
// stream, and a separate NATS connection to it: the way messages get
// written around the kernel.
func writableLog(t *testing.T, tune ...func(*eventlog.Log)) (*eventlog.Log, *nats.Conn) {
	t.Helper()
	l := openLog(t, append([]func(*eventlog.Log){func(l *eventlog.Log) {
		l.Listen, l.ListenWritable, l.PollInterval = "127.0.0.1:0", true, 20*time.Millisecond
	}}, tune...)...)
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return l, nc
}

// publish stores a message around the kernel and returns its sequence.
func publish(t *testing.T, nc *nats.Conn, subject string, h nats.Header, data string) uint64 {
	t.Helper()
	m, err := nc.RequestMsg(&nats.Msg{Subject: subject, Header: h, Data: []byte(data)}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		Seq   uint64 `json:"seq"`
		Error any    `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Seq == 0 || ack.Error != nil {
		t.Fatalf("publish to %s: %s %v", subject, m.Data, err)
	}
	return ack.Seq
}

// envelope is a well-formed Fazt envelope, as the log writes it.
func envelope(typ string, version uint64) nats.Header {
	return nats.Header{
		"Fazt-Id":      {ulid.Make().String()},
		"Fazt-Type":    {typ},
		"Fazt-Version": {json.Number(strconvU(version)).String()},
	}
}

func strconvU(v uint64) string { b, _ := json.Marshal(v); return string(b) }

func mustAppend(t *testing.T, l *eventlog.Log, evs ...eventlog.Event) eventlog.Result {
	t.Helper()
	res, err := l.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readAll(t *testing.T, l *eventlog.Log, f eventlog.Filter) []eventlog.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var all []eventlog.Event
	var after uint64
	for {
		p, err := l.Read(ctx, after, 3, f) // small pages: page boundaries too
		if err != nil {
			t.Fatalf("read after %d: %v", after, err)
		}
		all = append(all, p.Events...)
		if len(p.Events) < 3 {
			return all
		}
		if p.LastSeq <= after {
			t.Fatalf("read after %d went back to %d", after, p.LastSeq)
		}
		after = p.LastSeq
	}
}

// Headers JetStream adds to direct gets (Nats-Sequence, Nats-Subject,
// Nats-Time-Stamp) and a status stored inside a message by its publisher
// are data: every reader takes the sequence, subject and time from
// JetStream itself, and never stops at such a message.
func TestStoredNatsHeadersAreData(t *testing.T) {
	l, nc := writableLog(t)
	ctx := context.Background()
	mustAppend(t, l, ev("a.1", "a.x", 1), ev("a.2", "a.x", 2))
	h := envelope("a.x", 1)
	h["Nats-Sequence"] = []string{"1"}
	h["Nats-Subject"] = []string{"fazt.ev.other.1"}
	h["Nats-Time-Stamp"] = []string{"2001-01-01T00:00:00Z"}
	h["Nats-Stream"] = []string{"ELSEWHERE"}
	republished := publish(t, nc, "fazt.ev.a.3", h, `{"n":3}`)
	// A stored status that says "end of batch, nothing pending".
	st := envelope("a.x", 1)
	st["Status"] = []string{"204"}
	st["Nats-Num-Pending"] = []string{"0"}
	stopper := publish(t, nc, "fazt.ev.a.4", st, `{"n":4}`)
	notFound := envelope("a.x", 1)
	notFound["Status"] = []string{"404"}
	nf := publish(t, nc, "fazt.ev.a.5", notFound, `{}`)
	last := mustAppend(t, l, ev("a.6", "a.x", 6)).LastSeq

	check := func(how string, got []eventlog.Event) {
		t.Helper()
		if len(got) != int(last) {
			t.Fatalf("%s: %d entries, want %d: %+v", how, len(got), last, got)
		}
		for i, e := range got {
			if e.Seq != uint64(i+1) || e.Malformed != nil {
				t.Fatalf("%s: entry %d: %+v", how, i, e)
			}
		}
		if e := got[republished-1]; e.Stream != "a.3" || time.Since(e.Time) > time.Minute {
			t.Fatalf("%s: republished message read as %+v", how, e)
		}
	}
	check("Read", readAll(t, l, eventlog.Filter{}))
	check("Read by category", readAll(t, l, eventlog.Filter{Categories: []string{"a"}}))

	c, err := l.OpenCursor(ctx, 0, eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Next(ctx, 100)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	check("Cursor", p.Events)

	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var sub []eventlog.Event
	err = l.Subscribe(sctx, 0, eventlog.Filter{}, func(e eventlog.Event) error {
		sub = append(sub, e)
		if e.Seq == last {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("subscribe: %v after %d entries", err, len(sub))
	}
	check("Subscribe", sub)

	for stream, seq := range map[string]uint64{"a.3": republished, "a.4": stopper, "a.5": nf} {
		evs, err := l.ReadStream(ctx, stream, 1, 10)
		if err != nil || len(evs) != 1 || evs[0].Seq != seq || evs[0].Stream != stream {
			t.Fatalf("ReadStream %s: %+v %v", stream, evs, err)
		}
	}
}

var errStop = errors.New("stop")

// Messages that are not valid events are entries with Malformed set:
// every reader shows them at their sequence and goes on, and appends to
// their streams continue from the last valid event.
func TestMalformedMessagesArePagedPast(t *testing.T) {
	l, nc := writableLog(t)
	ctx := context.Background()
	mustAppend(t, l, ev("m.1", "m.x", 1))
	mustAppend(t, l, ev("m.1", "m.x", 2))
	notJSON := publish(t, nc, "fazt.ev.m.1", envelope("m.x", 3), "{not json")
	badHeaders := publish(t, nc, "fazt.ev.m.1", nats.Header{"Fazt-Type": {"m.x"}, "X-Other": {"kept"}}, `{"ok":true}`)
	twice := envelope("m.x", 3)
	twice["Fazt-Id"] = append(twice["Fazt-Id"], ulid.Make().String())
	twoIDs := publish(t, nc, "fazt.ev.m.1", twice, `{}`)
	noHeaders := publish(t, nc, "fazt.ev.m.2", nil, "raw")

	// Appends to the stream go on from its last valid event.
	res, err := l.Append(ctx, []eventlog.Event{ev("m.1", "m.x", 3)}, eventlog.ExpectVersion("m.1", 2))
	if err != nil || res.Events[0].Version != 3 {
		t.Fatalf("append after malformed messages: %+v %v", res, err)
	}
	res, err = l.Append(ctx, []eventlog.Event{ev("m.2", "m.x", 1)}, eventlog.ExpectNew("m.2"))
	if err != nil || res.Events[0].Version != 1 {
		t.Fatalf("append to a stream holding only a malformed message: %+v %v", res, err)
	}

	all := readAll(t, l, eventlog.Filter{Types: []string{"m.x"}})
	if len(all) != int(res.LastSeq) {
		t.Fatalf("read %d entries, want %d", len(all), res.LastSeq)
	}
	want := map[uint64][]string{notJSON: {"data"}, badHeaders: {"id", "version"}, twoIDs: {"id"}, noHeaders: {"id", "type", "version", "data"}}
	for _, e := range all {
		fields, bad := want[e.Seq]
		if !bad {
			if e.Malformed != nil || e.Err() != nil {
				t.Fatalf("event %d read as malformed: %+v", e.Seq, e.Malformed)
			}
			continue
		}
		if e.Malformed == nil || strings.Join(e.Malformed.Fields, ",") != strings.Join(fields, ",") || !errors.Is(e.Err(), eventlog.ErrMalformed) ||
			e.Type != "" || e.Data != nil || e.Version != 0 || e.Time.IsZero() {
			t.Fatalf("entry %d: %+v %+v, want malformed in %v", e.Seq, e, e.Malformed, fields)
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("entry %d cannot be encoded: %v", e.Seq, err)
		}
	}
	if m := all[notJSON-1].Malformed; string(m.Data) != "{not json" || m.Headers["Fazt-Type"][0] != "m.x" || m.Headers["Nats-Sequence"] != nil {
		t.Fatalf("raw message of a malformed entry: %+v", m)
	}
	if m := all[badHeaders-1].Malformed; m.Headers["X-Other"][0] != "kept" || m.Subject != "fazt.ev.m.1" {
		t.Fatalf("raw headers: %+v", m)
	}

	// ReadStream is the stream's history: its events only.
	evs, err := l.ReadStream(ctx, "m.1", 1, 10)
	if err != nil || len(evs) != 3 || evs[2].Version != 3 || evs[2].Seq != res.LastSeq-1 {
		t.Fatalf("ReadStream: %+v %v", evs, err)
	}
	if evs, err := l.ReadStream(ctx, "m.1", 3, 10); err != nil || len(evs) != 1 || evs[0].Version != 3 {
		t.Fatalf("ReadStream from 3: %+v %v", evs, err)
	}
	// ReadStreamEntries shows the malformed messages among them.
	p, err := l.ReadStreamEntries(ctx, "m.1", 1, 10)
	if err != nil || len(p.Events) != 6 || p.Events[2].Malformed == nil || p.Events[5].Version != 3 {
		t.Fatalf("ReadStreamEntries: %+v %v", p, err)
	}
	if p, err := l.ReadStreamEntries(ctx, "m.1", 1, 2); err != nil || len(p.Events) != 2 || p.Omitted != 0 {
		t.Fatalf("ReadStreamEntries, limit 2: %+v %v", p, err)
	}
	if p, err := l.ReadStreamEntries(ctx, "m.1", 3, 1); err != nil || len(p.Events) != 2 || p.Omitted != 2 || p.Events[1].Version != 3 {
		t.Fatalf("ReadStreamEntries from 3, limit 1: %+v %v", p, err)
	}
	if st := l.Stats(); st.Malformed != 4 {
		t.Fatalf("stats: %d malformed, want 4", st.Malformed)
	}
	if last, ok := l.LastMalformed(); !ok || last.Seq != noHeaders {
		t.Fatalf("last malformed: %+v", last)
	}
}

// A Fazt-Version written around the kernel that goes back or jumps is
// not folded into the stream's versions: the entry is shown as
// malformed, and the log numbers the next event from the last valid one.
func TestForgedVersionsAreDetected(t *testing.T) {
	l, nc := writableLog(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		mustAppend(t, l, ev("f.1", "f.x", i))
	}
	back := publish(t, nc, "fazt.ev.f.1", envelope("f.x", 1), `{}`)
	res, err := l.Append(ctx, []eventlog.Event{ev("f.1", "f.x", 4)}, eventlog.ExpectVersion("f.1", 3))
	if err != nil || res.Events[0].Version != 4 {
		t.Fatalf("append after a version that goes back: %+v %v", res, err)
	}
	jump := publish(t, nc, "fazt.ev.f.1", envelope("f.x", 100), `{}`)
	res, err = l.Append(ctx, []eventlog.Event{ev("f.1", "f.x", 5)}, eventlog.ExpectVersion("f.1", 4))
	if err != nil || res.Events[0].Version != 5 {
		t.Fatalf("append after a version that jumps: %+v %v", res, err)
	}
	// The same from a log that has just opened on the stream (no view yet).
	b := openLog(t, func(b *eventlog.Log) { b.URL = l.ClientURL() })
	res, err = b.Append(ctx, []eventlog.Event{ev("f.1", "f.x", 6)}, eventlog.ExpectVersion("f.1", 5))
	if err != nil || res.Events[0].Version != 6 {
		t.Fatalf("append from a fresh log: %+v %v", res, err)
	}

	evs, err := l.ReadStream(ctx, "f.1", 1, 100)
	if err != nil || len(evs) != 6 {
		t.Fatalf("ReadStream: %+v %v", evs, err)
	}
	for i, e := range evs {
		if e.Version != uint64(i+1) {
			t.Fatalf("versions: %+v", evs)
		}
	}
	if evs, err := l.ReadStream(ctx, "f.1", 5, 100); err != nil || len(evs) != 2 || evs[0].Version != 5 {
		t.Fatalf("ReadStream from 5: %+v %v", evs, err)
	}
	p, err := l.ReadStreamEntries(ctx, "f.1", 1, 100)
	if err != nil || len(p.Events) != 8 {
		t.Fatalf("ReadStreamEntries: %+v %v", p, err)
	}
	for _, e := range p.Events {
		forged := e.Seq == back || e.Seq == jump
		if forged != (e.Malformed != nil) || forged && !strings.Contains(e.Malformed.Reason, "out of sequence") {
			t.Fatalf("entry %d: %+v", e.Seq, e.Malformed)
		}
	}
	if st := l.Stats(); st.Malformed < 2 {
		t.Fatalf("stats: %d malformed, want the 2 forged versions", st.Malformed)
	}
}

// An event ID is one event: a retry with the same stream, type and data
// gets the original position; the same ID for anything else is refused
// as a conflict that names the original, on every path the log answers
// from.
func TestReusedIDIsAConflict(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := eventlog.New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	id := ulid.Make().String()
	orig := eventlog.Event{ID: id, Stream: "d.1", Type: "d.x", Data: json.RawMessage(`{"n":1}`)}
	res, err := l.Append(ctx, []eventlog.Event{orig})
	if err != nil {
		t.Fatal(err)
	}
	seq := res.LastSeq
	mustAppend(t, l, ev("d.2", "d.x", 0)) // the original is not the last message

	variants := map[string]eventlog.Event{
		"another stream": {ID: id, Stream: "d.2", Type: "d.x", Data: orig.Data},
		"another type":   {ID: id, Stream: "d.1", Type: "d.y", Data: orig.Data},
		"other data":     {ID: id, Stream: "d.1", Type: "d.x", Data: json.RawMessage(`{"n":2}`)},
	}
	check := func(path string, l *eventlog.Log) {
		t.Helper()
		for what, e := range variants {
			_, err := l.Append(ctx, []eventlog.Event{e})
			var ce *eventlog.IDConflictError
			if !errors.Is(err, eventlog.ErrConflict) || !errors.As(err, &ce) || ce.Seq != seq || ce.Stream != "d.1" || ce.ID != id {
				t.Fatalf("%s, %s: %v", path, what, err)
			}
		}
		res, err := l.Append(ctx, []eventlog.Event{orig})
		if err != nil || !res.Duplicate || res.LastSeq != seq {
			t.Fatalf("%s, the same event again: %+v %v", path, res, err)
		}
	}
	// The IDs the commit loop remembers.
	check("remembered", l)
	// While the original is still in flight.
	id2 := ulid.Make().String()
	p1, err := l.AppendAsync(ctx, []eventlog.Event{{ID: id2, Stream: "d.3", Type: "d.x"}})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.AppendAsync(ctx, []eventlog.Event{{ID: id2, Stream: "d.4", Type: "d.x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Wait(); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("copy sent while the original is in flight: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// After a restart, within JetStream's dedupe window: its own dedupe
	// answer, and the lookup in the event's stream.
	l = eventlogtest.OpenDir(t, dir)
	check("after a restart", l)
	l.Close(ctx)

	// Past the dedupe window, the lookup in the event's stream.
	l = eventlogtest.OpenDir(t, dir, func(l *eventlog.Log) { l.DuplicateWindow = 100 * time.Millisecond })
	time.Sleep(200 * time.Millisecond) // the only way to leave a time window
	delete(variants, "another stream") // past the window, IDs are looked up in their own stream
	check("past the window", l)
}

// Data that is not valid UTF-8 is refused with its offset; metadata comes
// back byte for byte, and what a NATS header cannot carry is refused.
func TestDataAndMetadataRoundTrip(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	_, err := l.Append(ctx, []eventlog.Event{{Stream: "u.1", Type: "u.x", Data: json.RawMessage("{\"s\":\"ok\xff\"}")}})
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "not valid UTF-8 at byte 8") {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	long := strings.Repeat("é", eventlog.MaxMetaLen/2)
	metas := []eventlog.Metadata{
		{CorrelationID: "Zoë — 東京 🚀", CausationID: `say "hi" 'there' \ back`, Actor: "a  b\tc"[:4] + "d"},
		{CorrelationID: long, CausationID: "x", Actor: "key: value; other=1"},
	}
	for i, m := range metas {
		res, err := l.Append(ctx, []eventlog.Event{{Stream: "u.1", Type: "u.x", Meta: m}})
		if err != nil {
			t.Fatalf("meta %d: %v", i, err)
		}
		evs, err := l.ReadStream(ctx, "u.1", res.Events[0].Version, 1)
		if err != nil || len(evs) != 1 || evs[0].Meta != m {
			t.Fatalf("meta %d came back as %+v (%v), want %+v", i, evs, err, m)
		}
	}
	for _, bad := range []eventlog.Metadata{
		{Actor: "two\nlines"}, {Actor: "cr\rhere"}, {CorrelationID: " leading"}, {CausationID: "trailing "},
		{Actor: "tab\there"}, {Actor: "nul\x00"}, {Actor: "bad\xffutf8"}, {Actor: long + "x"},
	} {
		if _, err := l.Append(ctx, []eventlog.Event{{Stream: "u.1", Type: "u.x", Meta: bad}}); !errors.Is(err, eventlog.ErrInvalid) {
			t.Fatalf("meta %+q accepted: %v", bad, err)
		}
	}
}

// A position that no sequence can follow is refused: after+1 must never
// wrap to the start of the log.
func TestAfterCannotOverflow(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	mustAppend(t, l, ev("o.1", "o.x", 1))
	if p, err := l.Read(ctx, math.MaxUint64, 10, eventlog.Filter{}); !errors.Is(err, eventlog.ErrInvalid) || len(p.Events) != 0 {
		t.Fatalf("Read after max: %+v %v", p, err)
	}
	if _, err := l.OpenCursor(ctx, math.MaxUint64, eventlog.Filter{}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("OpenCursor after max: %v", err)
	}
	err := l.Subscribe(ctx, math.MaxUint64, eventlog.Filter{}, func(e eventlog.Event) error { return errStop })
	if !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("Subscribe after max: %v", err)
	}
	if p, err := l.Read(ctx, math.MaxUint64-1, 10, eventlog.Filter{}); err != nil || len(p.Events) != 0 {
		t.Fatalf("Read after max-1: %+v %v", p, err)
	}
}
