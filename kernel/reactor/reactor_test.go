package reactor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/schemas"
)

// reactorAppend appends one event per type, in one append, and returns
// their positions.
func reactorAppend(tb testing.TB, l *eventlog.Log, stream string, types ...string) []eventlog.Position {
	tb.Helper()
	evs := make([]eventlog.Event, len(types))
	for i, typ := range types {
		evs[i] = eventlog.Event{Stream: stream, Type: typ, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	res, err := l.Append(context.Background(), evs)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	return res.Events
}

// reactorCall is one call of a handler.
type reactorCall struct {
	node string
	seq  uint64
	id   string
	key  string
	typ  string
	at   time.Time
}

// reactorCalls records handler calls.
type reactorCalls struct {
	mu    sync.Mutex
	calls []reactorCall
}

func (c *reactorCalls) add(node string, e eventlog.Event, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, reactorCall{node: node, seq: e.Seq, id: e.ID, key: key, typ: e.Type, at: time.Now()})
}

func (c *reactorCalls) all() []reactorCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]reactorCall(nil), c.calls...)
}

func (c *reactorCalls) of(seq uint64) []reactorCall {
	var out []reactorCall
	for _, call := range c.all() {
		if call.seq == seq {
			out = append(out, call)
		}
	}
	return out
}

func (c *reactorCalls) seqs() []uint64 {
	var out []uint64
	for _, call := range c.all() {
		out = append(out, call.seq)
	}
	return out
}

// handler records every call and succeeds.
func (c *reactorCalls) handler(node string) func(context.Context, eventlog.Event, string) error {
	return func(_ context.Context, e eventlog.Event, key string) error {
		c.add(node, e, key)
		return nil
	}
}

// reactorWait polls cond until it holds, failing after 10 seconds.
func reactorWait(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reactorStart starts a reactor with a short FetchWait, stopped at cleanup.
func reactorStart(tb testing.TB, l *eventlog.Log, r reactor.Reactor) *reactor.Runner {
	tb.Helper()
	if r.FetchWait == 0 {
		r.FetchWait = 100 * time.Millisecond
	}
	h, err := reactor.Start(context.Background(), l, r)
	if err != nil {
		tb.Fatalf("start reactor %s: %v", r.Name, err)
	}
	tb.Cleanup(func() { h.Stop(context.Background()) })
	return h
}

func reactorStop(tb testing.TB, h *reactor.Runner) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		tb.Fatalf("stop: %v", err)
	}
}

// reactorInfo returns the state of reactor name's durable consumer.
func reactorInfo(tb testing.TB, l *eventlog.Log, name string) *jetstream.ConsumerInfo {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(l.Conn())
	if err != nil {
		tb.Fatal(err)
	}
	c, err := js.Consumer(ctx, l.StreamName, reactor.ConsumerName(name))
	if err != nil {
		tb.Fatalf("reactor %s's consumer: %v", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		tb.Fatalf("reactor %s's consumer: %v", name, err)
	}
	return info
}

// reactorSettle waits until reactor name has nothing pending: every
// event of its categories delivered and acknowledged (handled, skipped
// by type or parked). JetStream redelivers nothing after that, so the
// calls made are all there will be.
func reactorSettle(tb testing.TB, l *eventlog.Log, name string) {
	tb.Helper()
	var info *jetstream.ConsumerInfo
	reactorWait(tb, "reactor "+name+" to have nothing pending", func() bool {
		info = reactorInfo(tb, l, name)
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

func reactorSeqs(pos []eventlog.Position, idx ...int) []uint64 {
	out := make([]uint64, len(idx))
	for i, j := range idx {
		out[i] = pos[j].Seq
	}
	return out
}

func reactorEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeliversMatchingEventsInOrder(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	var calls reactorCalls
	h := reactorStart(t, l, reactor.Reactor{
		Name:    "mailer",
		Filter:  eventlog.Filter{Categories: []string{"orders", "billing"}, Types: []string{"orders.placed", "billing.charged"}},
		Handle:  calls.handler("a"),
		Backoff: []time.Duration{10 * time.Millisecond},
	})
	a := reactorAppend(t, l, "orders.1", "orders.placed", "orders.cancelled")
	b := reactorAppend(t, l, "stock.apples", "stock.placed")
	c := reactorAppend(t, l, "billing.1", "billing.charged", "billing.refunded")
	d := reactorAppend(t, l, "orders.2", "orders.placed")
	want := []uint64{a[0].Seq, c[0].Seq, d[0].Seq}
	reactorWait(t, "three events", func() bool { return len(calls.all()) >= 3 })
	reactorSettle(t, l, "mailer")
	if got := calls.seqs(); !reactorEqual(got, want) {
		t.Fatalf("handled %v, want %v (stock %v skipped by category, others by type)", got, want, b)
	}
	for i, call := range calls.all() {
		if call.key == "" || call.key != call.id {
			t.Fatalf("call %d: key %q, event id %q", i, call.key, call.id)
		}
	}
	if calls.all()[0].id != a[0].ID {
		t.Fatalf("first event id %s, want %s", calls.all()[0].id, a[0].ID)
	}
	var st reactor.Status
	reactorWait(t, "nothing pending", func() bool {
		var err error
		st, err = h.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Pending == 0
	})
	if st.Name != "mailer" || st.Delivered < d[0].Seq || len(st.Parked) != 0 {
		t.Fatalf("status: %+v", st)
	}
}

func TestRetriesWithBackoffThenAcks(t *testing.T) {
	l := openLog(t)
	var calls reactorCalls
	var mu sync.Mutex
	failures := 0
	reactorStart(t, l, reactor.Reactor{
		Name:        "retrier",
		Filter:      eventlog.Filter{Categories: []string{"jobs"}},
		MaxAttempts: 5,
		Backoff:     []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		Handle: func(_ context.Context, e eventlog.Event, key string) error {
			calls.add("a", e, key)
			if e.Type != "jobs.flaky" {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			failures++
			switch failures {
			case 1:
				panic("boom") // a panic counts as a failure
			case 2:
				return errors.New("try again")
			}
			return nil
		},
	})
	pos := reactorAppend(t, l, "jobs.1", "jobs.flaky", "jobs.steady")
	flaky, steady := pos[0], pos[1]
	reactorWait(t, "the event after the flaky one", func() bool { return len(calls.of(steady.Seq)) == 1 })
	reactorSettle(t, l, "retrier")
	got := calls.of(flaky.Seq)
	if len(got) != 3 {
		t.Fatalf("flaky event handled %d times, want 3: %+v", len(got), got)
	}
	for i, call := range got {
		if call.key != flaky.ID {
			t.Fatalf("attempt %d: key %q, want the event id %q", i+1, call.key, flaky.ID)
		}
	}
	if gap := got[1].at.Sub(got[0].at); gap < 50*time.Millisecond {
		t.Fatalf("second attempt %v after the first, want >= 50ms", gap)
	}
	if gap := got[2].at.Sub(got[1].at); gap < 100*time.Millisecond {
		t.Fatalf("third attempt %v after the second, want >= 100ms", gap)
	}
	if seqs := calls.seqs(); !reactorEqual(seqs, []uint64{flaky.Seq, flaky.Seq, flaky.Seq, steady.Seq}) {
		t.Fatalf("order of calls %v: the next event must wait for the retried one", seqs)
	}
}

// recordRegistry registers the records reactors write with their
// schemas, as the kernel does.
func recordRegistry(tb testing.TB) *schemas.Registry {
	tb.Helper()
	reg := schemas.NewRegistry()
	if err := reg.Register(reactor.TypeEventParked, 1, []byte(reactor.EventParkedSchema)); err != nil {
		tb.Fatal(err)
	}
	if err := reg.Register(reactor.TypeEventUnparked, 1, []byte(reactor.EventUnparkedSchema)); err != nil {
		tb.Fatal(err)
	}
	return reg
}

// reactorValidatingLog opens a log whose appends of reactor records are
// checked against their schemas.
func reactorValidatingLog(t *testing.T) *eventlog.Log {
	reg := recordRegistry(t)
	return openLog(t, func(l *eventlog.Log) {
		l.Validate = func(e *eventlog.Event) error {
			if strings.HasPrefix(e.Type, "reactors.") {
				return reg.Validate(e)
			}
			return nil
		}
	})
}

func TestParksAfterMaxAttempts(t *testing.T) {
	l := reactorValidatingLog(t)
	ctx := context.Background()
	var calls reactorCalls
	var mu sync.Mutex
	fixed := false
	r := reactor.Reactor{
		Name:        "certs",
		Filter:      eventlog.Filter{Categories: []string{"jobs"}},
		MaxAttempts: 3,
		Backoff:     []time.Duration{10 * time.Millisecond},
		Handle: func(_ context.Context, e eventlog.Event, key string) error {
			calls.add("a", e, key)
			mu.Lock()
			defer mu.Unlock()
			if e.Type == "jobs.bad" && !fixed {
				return errors.New("disk full")
			}
			return nil
		},
	}
	h := reactorStart(t, l, r)
	pos := reactorAppend(t, l, "jobs.1", "jobs.good", "jobs.bad", "jobs.good")
	bad := pos[1]
	reactorWait(t, "the event after the bad one", func() bool { return len(calls.of(pos[2].Seq)) == 1 })
	reactorSettle(t, l, "certs")
	if n := len(calls.of(bad.Seq)); n != 3 {
		t.Fatalf("bad event tried %d times, want MaxAttempts=3", n)
	}
	checkParked := func(h *reactor.Runner, attempts int, reason string) {
		t.Helper()
		st, err := h.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Parked) != 1 {
			t.Fatalf("parked: %+v", st.Parked)
		}
		p := st.Parked[0]
		if p.Seq != bad.Seq || p.EventID != bad.ID || p.Type != "jobs.bad" || p.Attempts != attempts || !strings.Contains(p.Error, reason) || p.At.IsZero() {
			t.Fatalf("parked record %+v, want seq %d, id %s, %d attempts, error %q", p, bad.Seq, bad.ID, attempts, reason)
		}
		if st.Delivered < pos[2].Seq {
			t.Fatalf("status %+v: delivered should pass the parked event", st)
		}
	}
	checkParked(h, 3, "disk full")

	// The record is in the log, in the reactor's own stream.
	recs, err := l.ReadStream(ctx, reactor.Stream("certs"), 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Type != reactor.TypeEventParked {
		t.Fatalf("parked records in the log: %+v", recs)
	}
	var data map[string]any
	if err := json.Unmarshal(recs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	if data["reactor"] != "certs" || data["seq"] != float64(bad.Seq) || data["event_id"] != bad.ID || data["event_type"] != "jobs.bad" || data["attempts"] != float64(3) || data["error"] != "disk full" {
		t.Fatalf("parked record data: %s", recs[0].Data)
	}

	// After a restart the parked event is still parked and not redelivered.
	reactorStop(t, h)
	h2 := reactorStart(t, l, r)
	checkParked(h2, 3, "disk full")
	more := reactorAppend(t, l, "jobs.2", "jobs.good")
	reactorWait(t, "an event after the restart", func() bool { return len(calls.of(more[0].Seq)) == 1 })
	reactorSettle(t, l, "certs")
	if n := len(calls.of(bad.Seq)); n != 3 {
		t.Fatalf("parked event redelivered after restart: tried %d times", n)
	}

	// Retrying it by hand: a failure keeps it parked with one more attempt.
	if err := h2.RetryParked(ctx, bad.Seq); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("retry of a still failing event: %v", err)
	}
	checkParked(h2, 4, "disk full")
	mu.Lock()
	fixed = true
	mu.Unlock()
	if err := h2.RetryParked(ctx, bad.Seq); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got := calls.of(bad.Seq)
	if len(got) != 5 || got[4].key != bad.ID {
		t.Fatalf("calls of the parked event: %+v", got)
	}
	st, err := h2.Status(ctx)
	if err != nil || len(st.Parked) != 0 {
		t.Fatalf("status after a successful retry: %+v %v", st, err)
	}
	recs, err = l.ReadStream(ctx, reactor.Stream("certs"), 1, 10)
	if err != nil || len(recs) != 3 || recs[2].Type != reactor.TypeEventUnparked {
		t.Fatalf("records after the retry: %+v %v", recs, err)
	}
	if err := h2.RetryParked(ctx, bad.Seq); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("retry of an event no longer parked: %v", err)
	}
	// A new handle rebuilds the same (empty) list from the log.
	reactorStop(t, h2)
	h3 := reactorStart(t, l, r)
	if st, err := h3.Status(ctx); err != nil || len(st.Parked) != 0 {
		t.Fatalf("status after restart: %+v %v", st, err)
	}
}

func TestResumesAfterRestart(t *testing.T) {
	l := openLog(t)
	var calls reactorCalls
	r := reactor.Reactor{Name: "copier", Filter: eventlog.Filter{Categories: []string{"files"}}, Handle: calls.handler("a")}
	h := reactorStart(t, l, r)
	first := reactorAppend(t, l, "files.1", "files.put", "files.put", "files.put")
	reactorWait(t, "first events", func() bool { return len(calls.all()) == 3 })
	reactorStop(t, h)
	second := reactorAppend(t, l, "files.1", "files.put", "files.deleted", "files.put")
	// Its loop has ended (reactorStop waits for Done): nothing fetches
	// the new events, and the consumer still holds all three.
	if info := reactorInfo(t, l, "copier"); info.NumPending != 3 || info.NumAckPending != 0 || len(calls.all()) != 3 {
		t.Fatalf("a stopped reactor took events: %d pending, %d awaiting ack, %d calls; want 3, 0, 3", info.NumPending, info.NumAckPending, len(calls.all()))
	}
	reactorStart(t, l, r)
	reactorWait(t, "events after the restart", func() bool { return len(calls.all()) >= 6 })
	reactorSettle(t, l, "copier")
	want := append(reactorSeqs(first, 0, 1, 2), reactorSeqs(second, 0, 1, 2)...)
	if got := calls.seqs(); !reactorEqual(got, want) {
		t.Fatalf("handled %v, want %v, each once", got, want)
	}
}

func TestStopDrainsTheHandlerInFlight(t *testing.T) {
	l := openLog(t)
	var calls reactorCalls
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := reactor.Reactor{
		Name:   "slow",
		Filter: eventlog.Filter{Categories: []string{"jobs"}},
		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
			once.Do(func() { close(entered) })
			<-release
			calls.add("a", e, key)
			return ctx.Err()
		},
	}
	h := reactorStart(t, l, r)
	pos := reactorAppend(t, l, "jobs.1", "jobs.run")
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- h.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while the handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if n := len(calls.of(pos[0].Seq)); n != 1 {
		t.Fatalf("handled %d times", n)
	}
	// It was acknowledged: a restart does not deliver it again.
	reactorStart(t, l, r)
	next := reactorAppend(t, l, "jobs.1", "jobs.run")
	reactorWait(t, "the next event", func() bool { return len(calls.of(next[0].Seq)) == 1 })
	if n := len(calls.of(pos[0].Seq)); n != 1 {
		t.Fatalf("drained event redelivered: handled %d times", n)
	}
}

func TestSharedDurableSplitsWork(t *testing.T) {
	l := openLog(t)
	var calls reactorCalls
	slow := func(node string) func(context.Context, eventlog.Event, string) error {
		return func(_ context.Context, e eventlog.Event, key string) error {
			time.Sleep(2 * time.Millisecond)
			calls.add(node, e, key)
			return nil
		}
	}
	r := reactor.Reactor{Name: "replicator", Filter: eventlog.Filter{Categories: []string{"backups"}}}
	r.Handle = slow("node1")
	reactorStart(t, l, r)
	r.Handle = slow("node2")
	reactorStart(t, l, r)
	var pos []eventlog.Position
	for i := range 40 {
		pos = append(pos, reactorAppend(t, l, fmt.Sprintf("backups.%d", i%4), "backups.taken")...)
	}
	reactorWait(t, "every event", func() bool { return len(calls.all()) >= len(pos) })
	reactorSettle(t, l, "replicator")
	all := calls.all()
	if len(all) != len(pos) {
		t.Fatalf("%d calls for %d events", len(all), len(pos))
	}
	seen := map[uint64]bool{}
	byNode := map[string]int{}
	for _, c := range all {
		if seen[c.seq] {
			t.Fatalf("event %d handled twice", c.seq)
		}
		seen[c.seq] = true
		byNode[c.node]++
	}
	for _, p := range pos {
		if !seen[p.Seq] {
			t.Fatalf("event %d never handled", p.Seq)
		}
	}
	if byNode["node1"] == 0 || byNode["node2"] == 0 {
		t.Fatalf("work not shared: %v", byNode)
	}
	// One event at a time across nodes, so the log order holds overall.
	for i := 1; i < len(all); i++ {
		if all[i].seq <= all[i-1].seq {
			t.Fatalf("out of order: %v", calls.seqs())
		}
	}
	t.Logf("split: %v", byNode)
}

func TestNewStartsAtNowUnlessFromBeginning(t *testing.T) {
	l := openLog(t)
	history := reactorAppend(t, l, "sites.a", "sites.deployed", "sites.deployed")
	var fresh, replay reactorCalls
	hf := reactorStart(t, l, reactor.Reactor{Name: "fresh", Filter: eventlog.Filter{Categories: []string{"sites"}}, Handle: fresh.handler("a")})
	reactorStart(t, l, reactor.Reactor{Name: "replay", FromBeginning: true, Filter: eventlog.Filter{Categories: []string{"sites"}}, Handle: replay.handler("a")})
	now := reactorAppend(t, l, "sites.a", "sites.deployed")
	reactorWait(t, "the new event", func() bool { return len(fresh.all()) == 1 && len(replay.all()) == 3 })
	reactorSettle(t, l, "fresh")
	reactorSettle(t, l, "replay")
	if got := fresh.seqs(); !reactorEqual(got, reactorSeqs(now, 0)) {
		t.Fatalf("new reactor handled %v, want only %d", got, now[0].Seq)
	}
	if got := replay.seqs(); !reactorEqual(got, append(reactorSeqs(history, 0, 1), now[0].Seq)) {
		t.Fatalf("from-beginning reactor handled %v", got)
	}
	// FromBeginning does not apply to an existing durable.
	reactorStop(t, hf)
	reactorStart(t, l, reactor.Reactor{Name: "fresh", FromBeginning: true, Filter: eventlog.Filter{Categories: []string{"sites"}}, Handle: fresh.handler("a")})
	later := reactorAppend(t, l, "sites.a", "sites.deployed")
	reactorWait(t, "the later event", func() bool { return len(fresh.all()) == 2 })
	reactorSettle(t, l, "fresh")
	if got := fresh.seqs(); !reactorEqual(got, []uint64{now[0].Seq, later[0].Seq}) {
		t.Fatalf("restarted reactor handled %v", got)
	}
}

func TestDeleteStartsAfresh(t *testing.T) {
	l := openLog(t)
	ctx := context.Background()
	var calls reactorCalls
	r := reactor.Reactor{Name: "rerun", Filter: eventlog.Filter{Categories: []string{"jobs"}}, Handle: calls.handler("a")}
	h := reactorStart(t, l, r)
	pos := reactorAppend(t, l, "jobs.1", "jobs.run")
	reactorWait(t, "one event", func() bool { return len(calls.all()) == 1 })
	reactorStop(t, h)
	if err := reactor.Delete(ctx, l, "rerun"); err != nil {
		t.Fatal(err)
	}
	if err := reactor.Delete(ctx, l, "rerun"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	r.FromBeginning = true
	reactorStart(t, l, r)
	reactorWait(t, "the replay", func() bool { return len(calls.all()) == 2 })
	if got := calls.seqs(); !reactorEqual(got, []uint64{pos[0].Seq, pos[0].Seq}) {
		t.Fatalf("handled %v", got)
	}
}

func TestRejectsBadConfig(t *testing.T) {
	l := openLog(t)
	ok := func(context.Context, eventlog.Event, string) error { return nil }
	for _, r := range []reactor.Reactor{
		{Name: "", Handle: ok},
		{Name: "a.b", Handle: ok},
		{Name: "a b", Handle: ok},
		{Name: strings.Repeat("n", reactor.MaxNameLen+1), Handle: ok},
		{Name: "nohandler"},
		{Name: "bad", Handle: ok, MaxAttempts: -1},
		{Name: "bad", Handle: ok, Backoff: []time.Duration{-time.Second}},
		{Name: "bad", Handle: ok, Filter: eventlog.Filter{Categories: []string{"a.b"}}},
		{Name: "bad", Handle: ok, Filter: eventlog.Filter{Types: []string{"bad type"}}},
	} {
		if _, err := reactor.Start(context.Background(), l, r); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("reactor %+v: %v, want ErrInvalid", r, err)
		}
	}
}

func TestRecordSchemas(t *testing.T) {
	reg := recordRegistry(t)
	for _, c := range []struct {
		typ, data string
		ok        bool
	}{
		{reactor.TypeEventParked, `{"reactor":"certs","seq":7,"event_id":"01J0000000000000000000000A","event_type":"routes.bound","attempts":5,"error":"acme: rate limited"}`, true},
		{reactor.TypeEventParked, `{"reactor":"certs","seq":7}`, true},
		{reactor.TypeEventParked, `{"reactor":"certs"}`, false},
		{reactor.TypeEventParked, `{"seq":7}`, false},
		{reactor.TypeEventUnparked, `{"reactor":"certs","seq":7,"event_id":"01J0000000000000000000000A"}`, true},
		{reactor.TypeEventUnparked, `{"reactor":"certs","seq":0}`, false},
	} {
		e := eventlog.Event{Stream: "reactors.certs", Type: c.typ, Data: json.RawMessage(c.data)}
		if err := reg.Validate(&e); (err == nil) != c.ok {
			t.Errorf("%s %s: %v", c.typ, c.data, err)
		}
	}
}

func TestParksMalformedMessageAtOnce(t *testing.T) {
	// A writable listener lets a client publish around the kernel.
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	raw, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var calls reactorCalls
	h := reactorStart(t, l, reactor.Reactor{Name: "strict", Filter: eventlog.Filter{Categories: []string{"jobs"}}, Handle: calls.handler("a"), MaxAttempts: 5})
	before := reactorAppend(t, l, "jobs.1", "jobs.run")
	// A message published around the kernel, without the envelope headers.
	ack, err := raw.Request(eventlog.SubjectOf("jobs.raw"), []byte(`{"x":1}`), 5*time.Second)
	if err != nil {
		t.Fatalf("raw publish: %v", err)
	}
	var pub struct{ Seq uint64 }
	if err := json.Unmarshal(ack.Data, &pub); err != nil || pub.Seq == 0 {
		t.Fatalf("raw publish ack %s: %v", ack.Data, err)
	}
	after := reactorAppend(t, l, "jobs.1", "jobs.run")
	reactorWait(t, "the event after the malformed one", func() bool { return len(calls.of(after[0].Seq)) == 1 })
	if got := calls.seqs(); !reactorEqual(got, []uint64{before[0].Seq, after[0].Seq}) {
		t.Fatalf("handled %v", got)
	}
	st, err := h.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Parked) != 1 || st.Parked[0].Seq != pub.Seq || st.Parked[0].EventID != "" || st.Parked[0].Attempts != 1 || !strings.Contains(st.Parked[0].Error, "not a valid event") {
		t.Fatalf("parked: %+v", st.Parked)
	}
	if err := h.RetryParked(ctx, pub.Seq); !errors.Is(err, eventlog.ErrMalformed) {
		t.Fatalf("retry of a malformed message: %v", err)
	}
}

func TestFilterChangeOnRestart(t *testing.T) {
	l := openLog(t)
	var calls reactorCalls
	r := reactor.Reactor{Name: "widen", Filter: eventlog.Filter{Categories: []string{"a"}}, Handle: calls.handler("a")}
	h := reactorStart(t, l, r)
	first := reactorAppend(t, l, "a.1", "a.x")
	early := reactorAppend(t, l, "b.1", "b.x")
	reactorWait(t, "the first event", func() bool { return len(calls.all()) == 1 })
	reactorStop(t, h)
	r.Filter.Categories = []string{"a", "b"}
	reactorStart(t, l, r)
	second := reactorAppend(t, l, "b.1", "b.x")
	third := reactorAppend(t, l, "a.1", "a.x")
	reactorWait(t, "events of both categories", func() bool { return len(calls.of(third[0].Seq)) == 1 })
	reactorSettle(t, l, "widen")
	// The b event appended before the change may or may not be delivered
	// (it depends on how far JetStream had scanned); nothing else varies.
	got := calls.seqs()
	want := []uint64{first[0].Seq, second[0].Seq, third[0].Seq}
	if len(got) == 4 {
		want = []uint64{first[0].Seq, early[0].Seq, second[0].Seq, third[0].Seq}
	}
	if !reactorEqual(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
}

// A Stop whose context ends while a handler runs cancels the handler and
// reports the deadline as the log and the runner do: an
// *eventlog.CloseError wrapping the context's error.
func TestStopDeadlineIsACloseError(t *testing.T) {
	l := openLog(t)
	entered := make(chan struct{})
	var once sync.Once
	r := reactor.Reactor{
		Name:   "stuck",
		Filter: eventlog.Filter{Categories: []string{"jobs"}},
		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
			once.Do(func() { close(entered) })
			<-ctx.Done()
			return ctx.Err()
		},
	}
	h := reactorStart(t, l, r)
	reactorAppend(t, l, "jobs.1", "jobs.run")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := h.Stop(ctx)
	var ce *eventlog.CloseError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) || ce.Component != "reactor stuck" {
		t.Fatalf("Stop past its deadline: %v (%T), want an *eventlog.CloseError for reactor stuck wrapping DeadlineExceeded", err, err)
	}
	select {
	case <-h.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the reactor did not stop once its handler was cancelled")
	}
}
