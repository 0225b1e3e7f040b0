package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
)

// openLog starts a real embedded log in a temp dir, closed at cleanup.
var openLog = eventlogtest.Open

func ev(stream, typ string, data any) eventlog.Event {
	b, _ := json.Marshal(data)
	return eventlog.Event{Stream: stream, Type: typ, Data: b}
}

func TestAppendAndRead(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	res, err := l.Append(ctx, []eventlog.Event{ev("orders.1", "orders.created", map[string]int{"n": 1}), ev("orders.2", "orders.created", nil)}, eventlog.ExpectNew("orders.1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.LastSeq != 2 || res.Events[0].Seq != 1 || res.Events[0].Version != 1 || res.Events[1].Version != 1 {
		t.Fatalf("positions: %+v", res)
	}
	res, err = l.Append(ctx, []eventlog.Event{ev("orders.1", "orders.paid", nil)}, eventlog.ExpectVersion("orders.1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if res.LastSeq != 3 || res.Events[0].Version != 2 {
		t.Fatalf("positions: %+v", res)
	}
	got, err := l.ReadStream(ctx, "orders.1", 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != "orders.created" || got[1].Type != "orders.paid" || got[1].Version != 2 || got[1].Seq != 3 {
		t.Fatalf("read stream: %+v", got)
	}
	if string(got[0].Data) != `{"n":1}` || got[0].Schema != 1 || got[0].Time.IsZero() || got[0].ID == "" {
		t.Fatalf("envelope: %+v", got[0])
	}
	got, err = l.ReadStream(ctx, "orders.1", 2, 100)
	if err != nil || len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("read from version 2: %+v %v", got, err)
	}
	if _, err := l.ReadStream(ctx, "orders.404", 1, 10); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("missing stream: %v", err)
	}
	page, err := l.Read(ctx, 0, 10, eventlog.Filter{Types: []string{"orders.paid"}})
	if err != nil || len(page.Events) != 1 || page.Events[0].Seq != 3 {
		t.Fatalf("read by type: %+v %v", page, err)
	}
	page, err = l.Read(ctx, 1, 10, eventlog.Filter{})
	if err != nil || len(page.Events) != 2 || page.Events[0].Seq != 2 || page.LastSeq != 3 {
		t.Fatalf("read after 1: %+v %v", page, err)
	}
}

func TestReadStreamFromVersionAmongOthers(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		evs := []eventlog.Event{ev("a.x", "t.a", i)}
		if i%3 == 0 {
			evs = append(evs, ev("b.y", "t.b", i))
		}
		if _, err := l.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []uint64{1, 2, 57, 100, 299, 300} {
		got, err := l.ReadStream(ctx, "a.x", from, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0].Version != from {
			t.Fatalf("from %d: got %+v", from, got)
		}
		var n int
		json.Unmarshal(got[0].Data, &n)
		if n != int(from-1) {
			t.Fatalf("from %d: data %d", from, n)
		}
	}
	if got, err := l.ReadStream(ctx, "a.x", 301, 5); err != nil || len(got) != 0 {
		t.Fatalf("past the end: %v %v", got, err)
	}
}

func TestConcurrentExpectSameVersionOneWins(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	if _, err := l.Append(ctx, []eventlog.Event{ev("acct.1", "acct.opened", nil)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Append(ctx, []eventlog.Event{ev("acct.1", "acct.deposited", i)}, eventlog.ExpectVersion("acct.1", 1))
			mu.Lock()
			defer mu.Unlock()
			var ce *eventlog.ConflictError
			switch {
			case err == nil:
				wins++
			case errors.As(err, &ce) && errors.Is(err, eventlog.ErrConflict):
				if ce.Actual != 2 {
					t.Errorf("conflict reports version %d, want 2", ce.Actual)
				}
				conflicts++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != 49 {
		t.Fatalf("wins=%d conflicts=%d, want 1 and 49", wins, conflicts)
	}
	got, _ := l.ReadStream(ctx, "acct.1", 1, 100)
	if len(got) != 2 {
		t.Fatalf("stream has %d events, want 2", len(got))
	}
}

func TestMultiStreamAppendIsAtomic(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	if _, err := l.Append(ctx, []eventlog.Event{ev("inv.1", "inv.added", nil), ev("inv.2", "inv.added", nil)}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(ctx, []eventlog.Event{ev("inv.1", "inv.moved", nil), ev("inv.2", "inv.moved", nil), ev("inv.3", "inv.added", nil)},
		eventlog.ExpectVersion("inv.1", 1), eventlog.ExpectVersion("inv.2", 7))
	var ce *eventlog.ConflictError
	if !errors.As(err, &ce) || ce.Stream != "inv.2" || ce.Actual != 1 {
		t.Fatalf("want conflict on inv.2 at version 1, got %v", err)
	}
	last, err := l.LastSeq(ctx)
	if err != nil || last != 2 {
		t.Fatalf("log moved to %d after a failed append: %v", last, err)
	}
	for _, s := range []string{"inv.1", "inv.2"} {
		if got, _ := l.ReadStream(ctx, s, 1, 10); len(got) != 1 {
			t.Fatalf("%s has %d events", s, len(got))
		}
	}
	if _, err := l.ReadStream(ctx, "inv.3", 1, 10); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("inv.3 exists after a failed append: %v", err)
	}
}

func TestAppendIsIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		wait   time.Duration
	}{{"within window", eventlog.DefaultDuplicateWindow, 0}, {"after window", time.Second, 1500 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			l := openLog(t, func(l *eventlog.Log) { l.DuplicateWindow = tc.window })
			ctx := context.Background()
			if _, err := l.Append(ctx, []eventlog.Event{ev("x.0", "x.pre", nil)}); err != nil {
				t.Fatal(err)
			}
			batch := []eventlog.Event{ev("cart.1", "cart.added", 1), ev("cart.2", "cart.added", 2)}
			batch[0].ID, batch[1].ID = l.NewID(), l.NewID()
			first, err := l.Append(ctx, batch, eventlog.ExpectNew("cart.1"))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.wait)
			// Bypass JetStream's window entirely in the late case.
			again, err := l.Append(ctx, batch, eventlog.ExpectNew("cart.1"))
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !again.Duplicate || fmt.Sprint(again.Events) != fmt.Sprint(first.Events) || again.LastSeq != first.LastSeq {
				t.Fatalf("retry returned %+v, first was %+v", again, first)
			}
			// A single-event retry goes the plain publish path.
			one := []eventlog.Event{ev("cart.1", "cart.checked_out", nil)}
			one[0].ID = l.NewID()
			r1, err := l.Append(ctx, one, eventlog.ExpectVersion("cart.1", 1))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.wait)
			r2, err := l.Append(ctx, one, eventlog.ExpectVersion("cart.1", 1))
			if err != nil || r2.LastSeq != r1.LastSeq || !r2.Duplicate {
				t.Fatalf("single retry: %+v %v, first %+v", r2, err, r1)
			}
			last, _ := l.LastSeq(ctx)
			if last != 4 {
				t.Fatalf("log has %d events, want 4", last)
			}
		})
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	big := make([]byte, eventlog.MaxEventSize+10)
	for i := range big {
		big[i] = 'a'
	}
	bigJSON := append(append([]byte{'"'}, big...), '"')
	cases := map[string]struct {
		events []eventlog.Event
		expect []eventlog.Expectation
	}{
		"no events":        {nil, nil},
		"empty stream":     {[]eventlog.Event{ev("", "a.b", nil)}, nil},
		"one-token stream": {[]eventlog.Event{ev("orders", "a.b", nil)}, nil},
		"wildcard stream":  {[]eventlog.Event{ev("orders.*", "a.b", nil)}, nil},
		"space in stream":  {[]eventlog.Event{ev("orders.a b", "a.b", nil)}, nil},
		"double dot":       {[]eventlog.Event{ev("orders..1", "a.b", nil)}, nil},
		"empty type":       {[]eventlog.Event{ev("orders.1", "", nil)}, nil},
		"bad type":         {[]eventlog.Event{ev("orders.1", "a>b", nil)}, nil},
		"bad json":         {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", Data: []byte("{nope")}}, nil},
		"bad id":           {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", ID: "not-a-ulid"}}, nil},
		"oversized":        {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", Data: bigJSON}}, nil},
		"expect other":     {[]eventlog.Event{ev("orders.1", "a.b", nil)}, []eventlog.Expectation{eventlog.ExpectNew("orders.2")}},
		"two expectations": {[]eventlog.Event{ev("orders.1", "a.b", nil)}, []eventlog.Expectation{eventlog.ExpectNew("orders.1"), eventlog.ExpectVersion("orders.1", 3)}},
		"negative schema":  {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", Schema: -1}}, nil},
		"newline in actor": {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", Meta: eventlog.Metadata{Actor: "a\nb"}}}, nil},
		"future id":        {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", ID: "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"}}, nil},
		"same id twice":    {[]eventlog.Event{{Stream: "orders.1", Type: "a.b", ID: "01J0000000000000000000000A"}, {Stream: "orders.1", Type: "a.b", ID: "01J0000000000000000000000A"}}, nil},
		"too many events":  {make([]eventlog.Event, eventlog.MaxAppendEvents+1), nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := l.Append(ctx, tc.events, tc.expect...)
			if !errors.Is(err, eventlog.ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
	if last, _ := l.LastSeq(ctx); last != 0 {
		t.Fatalf("bad input wrote %d events", last)
	}
}

func TestSubscribeCatchesUpThenFollows(t *testing.T) {
	l := openLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 1500; i++ {
		if _, err := l.Append(ctx, []eventlog.Event{ev(fmt.Sprintf("c%d.s", i%3), "t.n", i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan eventlog.Event, 4000)
	errc := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() {
		errc <- l.Subscribe(sctx, 10, eventlog.Filter{Categories: []string{"c1"}}, func(e eventlog.Event) error { got <- e; return nil })
	}()
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := 1500; i < 3000; i++ {
			if _, err := l.Append(ctx, []eventlog.Event{ev(fmt.Sprintf("c%d.s", i%3), "t.n", i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var prev uint64 = 10
	for n := 0; n < 1000-3; n++ { // c1 events with seq > 10
		select {
		case e := <-got:
			if e.Seq <= prev || e.Category() != "c1" {
				t.Fatalf("event %d after %d, category %s", e.Seq, prev, e.Category())
			}
			prev = e.Seq
		case <-ctx.Done():
			t.Fatalf("only %d events arrived", n)
		}
	}
	<-appended
	stop()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe ended with %v", err)
	}
}

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		seq  uint64
		dup  bool
		fail bool
	}{
		{`{"stream":"FAZT_EVENTS","seq":42}`, 1, 42, false, false},
		{`{"stream":"FAZT_EVENTS","seq":42,"batch":"ab","count":3}`, 3, 42, false, false},
		{`{"stream":"FAZT_EVENTS","seq":42,"batch":"ab","count":2}`, 3, 0, false, true},
		{`{"stream":"FAZT_EVENTS", "seq":7,"duplicate": true}`, 1, 7, true, false},
		{`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}`, 1, 0, false, true},
		{`not json`, 1, 0, false, true},
	} {
		a := eventlog.ParseAckForTest([]byte(tc.in), tc.n)
		if (a.Err != nil) != tc.fail || a.Seq != tc.seq || a.Duplicate != tc.dup {
			t.Errorf("%s: got %+v", tc.in, a)
		}
	}
}

// Two logs on one JetStream stream, the second connected by URL to the
// first's listener: guards keep versions gap-free and expectations exact
// across processes.
func TestTwoWritersShareTheLog(t *testing.T) {
	a := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	b := openLog(t, func(l *eventlog.Log) { l.URL = a.ClientURL() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Both write the same streams as fast as they can.
	var wg sync.WaitGroup
	for w, l := range []*eventlog.Log{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				evs := []eventlog.Event{ev(fmt.Sprintf("shared.s%d", i%3), "t.n", w)}
				if i%5 == 0 {
					evs = append(evs, ev("shared.pair", "t.n", w))
				}
				if _, err := l.Append(ctx, evs); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	versions := map[string]uint64{}
	var seq uint64
	for {
		p, err := a.Read(ctx, seq, 1000, eventlog.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Seq != seq+1 {
				t.Fatalf("gap: %d after %d", e.Seq, seq)
			}
			seq = e.Seq
			if e.Version != versions[e.Stream]+1 {
				t.Fatalf("%s: version %d after %d at seq %d", e.Stream, e.Version, versions[e.Stream], e.Seq)
			}
			versions[e.Stream] = e.Version
		}
		if len(p.Events) < 1000 {
			break
		}
	}
	if seq != 800+160 {
		t.Fatalf("log has %d events, want 960", seq)
	}

	// Exactly one of many concurrent expectations on one version wins,
	// whichever process it comes from.
	res, err := a.Append(ctx, []eventlog.Event{ev("race.1", "t.n", nil)}, eventlog.ExpectNew("race.1"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if i%2 == 1 {
				l = b
			}
			_, err := l.Append(ctx, []eventlog.Event{ev("race.1", "t.n", i)}, eventlog.ExpectVersion("race.1", res.Events[0].Version))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if !errors.Is(err, eventlog.ErrConflict) {
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d winners, want 1", wins)
	}

	// A subscriber on one log sees what the other writes (by polling).
	got := make(chan eventlog.Event, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	last, _ := a.LastSeq(ctx)
	go a.Subscribe(sctx, last, eventlog.Filter{}, func(e eventlog.Event) error { got <- e; return nil })
	if _, err := b.Append(ctx, []eventlog.Event{ev("late.1", "t.late", nil)}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.Type != "t.late" {
			t.Fatalf("got %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber on a did not see b's event")
	}
}

func TestValidateHookRefusesWholeAppend(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) {
		l.Validate = func(e *eventlog.Event) error {
			if e.Type == "t.bad" {
				return fmt.Errorf("type %s is not registered", e.Type)
			}
			return nil
		}
	})
	ctx := context.Background()
	_, err := l.Append(ctx, []eventlog.Event{ev("v.1", "t.good", nil), ev("v.2", "t.bad", nil)})
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "event 1: type t.bad is not registered") {
		t.Fatalf("got %v", err)
	}
	if last, _ := l.LastSeq(ctx); last != 0 {
		t.Fatalf("wrote %d events", last)
	}
	if _, err := l.Append(ctx, []eventlog.Event{ev("v.1", "t.good", nil)}); err != nil {
		t.Fatal(err)
	}
}

// Only the log publishes events: Conn() and a default listener read.
func TestOnlyTheLogWrites(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen = "127.0.0.1:0" })
	ctx := context.Background()
	for name, nc := range map[string]func() (*nats.Conn, error){
		"Conn()":   func() (*nats.Conn, error) { return l.Conn(), nil },
		"listener": func() (*nats.Conn, error) { return nats.Connect(l.ClientURL()) },
	} {
		c, err := nc()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Request("fazt.ev.sneaky.1", []byte(`{}`), time.Second); err == nil {
			t.Errorf("%s published an event", name)
		}
		// Reading works.
		js, _ := jetstream.New(c)
		if _, err := js.Stream(ctx, eventlog.DefaultStreamName); err != nil {
			t.Errorf("%s cannot read the stream: %v", name, err)
		}
	}
	if last, _ := l.LastSeq(ctx); last != 0 {
		t.Fatalf("the log has %d events", last)
	}
	if _, err := l.Append(ctx, []eventlog.Event{ev("ok.1", "t.ok", nil)}); err != nil {
		t.Fatal(err)
	}
}
