package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
)

// A cursor returns what paging with Read returns, for every kind of
// filter, and ends a page short at the end of the log.
func TestCursorMatchesRead(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	const n = 2500
	var batch []eventlog.Event
	for i := 0; i < n; i++ {
		cat := []string{"a", "b", "c"}[i%3]
		batch = append(batch, ev(fmt.Sprintf("%s.%d", cat, i%5), cat+".x", map[string]int{"i": i}))
		if len(batch) == 500 {
			if _, err := l.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	for _, f := range []eventlog.Filter{{}, {Categories: []string{"a"}}, {Categories: []string{"a", "c"}}, {Types: []string{"b.x"}}} {
		read := func(next func(after uint64) (eventlog.Page, error)) ([]eventlog.Event, uint64) {
			var all []eventlog.Event
			after := uint64(0)
			for {
				p, err := next(after)
				if err != nil {
					t.Fatalf("%+v: %v", f, err)
				}
				all = append(all, p.Events...)
				after = p.LastSeq
				if len(p.Events) < 300 {
					return all, after
				}
			}
		}
		want, wantLast := read(func(after uint64) (eventlog.Page, error) { return l.Read(ctx, after, 300, f) })
		c, err := l.OpenCursor(ctx, 0, f)
		if err != nil {
			t.Fatal(err)
		}
		got, last := read(func(uint64) (eventlog.Page, error) { return c.Next(ctx, 300) })
		c.Close()
		if len(got) != len(want) || len(got) == 0 || last != wantLast {
			t.Fatalf("%+v: cursor read %d events up to %d, Read %d up to %d", f, len(got), last, len(want), wantLast)
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.ID != w.ID || g.Seq != w.Seq || g.Version != w.Version || !g.Time.Equal(w.Time) || g.Stream != w.Stream || string(g.Data) != string(w.Data) {
				t.Fatalf("%+v: event %d: cursor %+v, Read %+v", f, i, g, w)
			}
		}
	}
	// A cursor past the end has nothing, at once.
	c, err := l.OpenCursor(ctx, n, eventlog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p, err := c.Next(ctx, 10); err != nil || len(p.Events) != 0 || p.LastSeq != n {
		t.Fatalf("cursor at the end: %+v %v", p, err)
	}
}

// A message written around the kernel is an entry with Malformed set at
// its sequence; the cursor goes on past it.
func TestCursorPagesPastMalformed(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	if _, err := l.Append(ctx, []eventlog.Event{ev("a.1", "a.x", nil), ev("a.2", "a.x", nil)}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("fazt.ev.a.3", []byte("not an event"), 5e9); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []eventlog.Event{ev("a.4", "a.x", nil)}); err != nil {
		t.Fatal(err)
	}
	c, err := l.OpenCursor(ctx, 0, eventlog.Filter{Categories: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Next(ctx, 10)
	if err != nil || len(p.Events) != 4 || p.LastSeq != 4 {
		t.Fatalf("cursor over a malformed message: %+v %v", p, err)
	}
	m := p.Events[2]
	var de *eventlog.DecodeError
	if m.Seq != 3 || m.Malformed == nil || string(m.Malformed.Data) != "not an event" || !errors.As(m.Err(), &de) || de.Seq != 3 {
		t.Fatalf("malformed entry: %+v %v", m, m.Err())
	}
	if p.Events[3].Seq != 4 || p.Events[3].Malformed != nil || p.Events[3].Err() != nil {
		t.Fatalf("event after it: %+v", p.Events[3])
	}
}
