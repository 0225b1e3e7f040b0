package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// readRaw reads the whole log through a cursor, undecoded.
func readRaw(t *testing.T, l *eventlog.Log) []eventlog.RawMessage {
	t.Helper()
	ctx := context.Background()
	c, err := l.OpenCursor(ctx, 0, eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []eventlog.RawMessage
	for {
		ms, err := c.NextRaw(ctx, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ms...)
		if len(ms) < 100 {
			return all
		}
	}
}

// TestImportKeepsEverything: a log imported from another's raw messages
// reads back the same events, sequence, ID, version, time and data,
// and takes new appends after them.
func TestImportKeepsEverything(t *testing.T) {
	ctx := context.Background()
	src := eventlogtest.Open(t)
	for i := range 5 {
		if _, err := src.Append(ctx, []eventlog.Event{
			{Stream: fmt.Sprintf("orders.%d", i%2), Type: "orders.placed", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
				Meta: eventlog.Metadata{Actor: "ann", CorrelationID: "c1"}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	// An atomic batch of two, with caller-chosen IDs.
	if _, err := src.Append(ctx, []eventlog.Event{
		{ID: src.NewID(), Stream: "orders.7", Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"a":1}`)},
		{ID: src.NewID(), Stream: "stock.x", Type: "stock.reserved", Data: json.RawMessage(`[1,2]`)},
	}); err != nil {
		t.Fatal(err)
	}
	raw := readRaw(t, src)
	if len(raw) != 7 {
		t.Fatalf("read %d raw messages, want 7", len(raw))
	}
	want, _ := eventlogtest.ReadAfter(t, src, 0)

	dir := t.TempDir()
	dst := eventlog.New(dir)
	i := 0
	last, err := dst.Import(ctx, func() (eventlog.RawMessage, bool, error) {
		if i == len(raw) {
			return eventlog.RawMessage{}, false, nil
		}
		i++
		return raw[i-1], true, nil
	})
	if err != nil || last != 7 {
		t.Fatalf("import: last %d, %v", last, err)
	}
	l2 := eventlogtest.OpenDir(t, dir)
	got, _ := eventlogtest.ReadAfter(t, l2, 0)
	if len(got) != len(want) {
		t.Fatalf("restored %d events, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if !w.Time.Equal(g.Time) {
			t.Errorf("event %d: time %v, want %v", w.Seq, g.Time, w.Time)
		}
		w.Time, g.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(w, g) {
			t.Errorf("event %d differs:\n got %+v\nwant %+v", w.Seq, g, w)
		}
	}
	if raw2 := readRaw(t, l2); !reflect.DeepEqual(rawHashable(raw2), rawHashable(raw)) {
		t.Errorf("raw messages differ after import")
	}
	// The restored log goes on from there: versions and sequences follow.
	res, err := l2.Append(ctx, []eventlog.Event{{Stream: "orders.1", Type: "orders.placed", Data: json.RawMessage(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LastSeq != 8 || res.Events[0].Version != 3 {
		t.Errorf("append after import: %+v, want seq 8 version 3", res)
	}

	// A second import into the same directory is refused.
	l2.Close(ctx)
	if _, err := eventlog.New(dir).Import(ctx, func() (eventlog.RawMessage, bool, error) { return eventlog.RawMessage{}, false, nil }); !errors.Is(err, eventlog.ErrConflict) {
		t.Errorf("import into a directory with a log: %v, want ErrConflict", err)
	}
	// A gap is refused.
	j := 0
	gappy := []eventlog.RawMessage{raw[0], raw[2]}
	if _, err := eventlog.New(t.TempDir()).Import(ctx, func() (eventlog.RawMessage, bool, error) {
		if j == len(gappy) {
			return eventlog.RawMessage{}, false, nil
		}
		j++
		return gappy[j-1], true, nil
	}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("import with a gap: %v, want ErrInvalid", err)
	}
}

// rawHashable is what must survive an import: everything but the
// header map's identity.
func rawHashable(ms []eventlog.RawMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%d|%s|%q|%q|%d", m.Seq, m.Subject, m.HeaderBytes(), m.Data, m.Time.UnixNano()))
	}
	return out
}

func TestHeaderRoundTrip(t *testing.T) {
	h := map[string][]string{"Fazt-Id": {"X"}, "a-lower": {"1", "2"}, "Fazt-Actor": {"ann: b"}}
	b := eventlog.EncodeHeader(h)
	got, err := eventlog.DecodeHeader(b)
	if err != nil || !reflect.DeepEqual(map[string][]string(got), h) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if eventlog.EncodeHeader(nil) != nil {
		t.Error("no headers encode to nil")
	}
}
