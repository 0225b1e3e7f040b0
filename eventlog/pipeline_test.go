package eventlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Writes from another process (here: a client of a writable listener,
// publishing well-formed events around the log) move the log under its
// feet; appends are refused, retried against a fresh view, and every
// stream still counts its versions without a gap.
func TestGuardsHoldAgainstForeignWrites(t *testing.T) {
	l := openTest(t, func(l *Log) {
		l.Durability = Relaxed
		l.Listen, l.ListenWritable = "127.0.0.1:0", true
	})
	if l.soleWriter {
		t.Fatal("a writable listener makes other writers possible")
	}
	foreign, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	stop := make(chan struct{})
	injected := make(chan int, 1)
	go func() {
		n := 0
		defer func() { injected <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			e := Event{ID: l.NewID(), Stream: "foreign.1", Type: "t.foreign", Schema: 1, Version: uint64(n + 1), Data: []byte(`{}`)}
			if _, err := foreign.RequestMsg(e.message(false, nil), 5*time.Second); err != nil {
				t.Errorf("foreign write: %v", err)
				return
			}
			n++
		}
	}()

	var mu sync.Mutex
	var acks []Position
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				evs := []Event{{Stream: fmt.Sprintf("s.%d", i%7), Type: "t.n", Data: []byte(`{}`)}}
				if i%10 == 0 {
					evs = append(evs, Event{Stream: "s.pair", Type: "t.n", Data: []byte(`{}`)})
				}
				res, err := l.Append(ctx, evs)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				acks = append(acks, res.Events...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if n := <-injected; n == 0 {
		t.Fatal("no foreign writes happened")
	}

	got := map[uint64]Event{}
	versions := map[string]uint64{}
	var after uint64
	for {
		p, err := l.Read(ctx, after, 1000, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			got[e.Seq] = e
			if e.Stream != "foreign.1" {
				if e.Version != versions[e.Stream]+1 {
					t.Fatalf("%s: version %d after %d at seq %d", e.Stream, e.Version, versions[e.Stream], e.Seq)
				}
				versions[e.Stream] = e.Version
			}
		}
		if len(p.Events) < 1000 {
			break
		}
		after = p.LastSeq
	}
	for _, a := range acks {
		e, ok := got[a.Seq]
		if !ok || e.ID != a.ID || e.Version != a.Version || e.Stream != a.Stream {
			t.Fatalf("acknowledged %+v, log has %+v", a, e)
		}
	}
	if want := 32*60 + 32*6; len(acks) != want {
		t.Fatalf("%d acknowledged events, want %d", len(acks), want)
	}
}

// openTest opens a log in a temporary directory, set up by configure,
// and closes it when the test ends.
func openTest(t *testing.T, configure func(*Log)) *Log {
	t.Helper()
	l := New(t.TempDir())
	configure(l)
	if err := l.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// refuseMarked makes JetStream refuse the events of type "t.refused":
// they expect another stream.
func refuseMarked(m *nats.Msg) {
	if m.Header.Get(headerType) == "t.refused" {
		m.Header["Nats-Expected-Stream"] = []string{"elsewhere"}
	}
}

// JetStream refuses one write in the middle of a pipelined flight (here
// a message made to expect another stream). Only the last unit of a
// flight is acknowledged, so the log has to work out which writes landed:
// the refused append fails with JetStream's reason, every other append
// lands once, and every stream counts its versions without a gap.
func TestRefusedWriteInsideAFlight(t *testing.T) {
	for _, d := range []Durability{Strict, Relaxed} {
		t.Run(d.String(), func(t *testing.T) {
			l := openTest(t, func(l *Log) { l.Durability, l.mangle = d, refuseMarked })
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			const n = 6000
			pending := make([]*Pending, n)
			for i := range pending {
				typ := "t.n"
				if i%211 == 7 {
					typ = "t.refused"
				}
				p, err := l.AppendAsync(ctx, []Event{{Stream: fmt.Sprintf("s.%d", i%13), Type: typ, Data: []byte(`{}`)}})
				if err != nil {
					t.Fatal(err)
				}
				pending[i] = p
			}
			var acks []Position
			refused := 0
			for i, p := range pending {
				res, err := p.Wait()
				if i%211 == 7 {
					var je *jsError
					if !errors.As(err, &je) || !strings.Contains(err.Error(), "expected stream") {
						t.Fatalf("append %d: %v, want JetStream's refusal", i, err)
					}
					refused++
					continue
				}
				if err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				acks = append(acks, res.Events...)
			}
			checkLog(t, l, acks, n-refused, true)

			st := l.Stats()
			if st.Appends != uint64(n-refused) || st.Events != uint64(n-refused) {
				t.Errorf("stats count %d appends of %d events, want %d", st.Appends, st.Events, n-refused)
			}
			if st.Groups == 0 || st.Groups >= st.Appends || st.Batches != 0 {
				t.Errorf("stats: %d groups (%d batches) for %d appends", st.Groups, st.Batches, st.Appends)
			}
			if st.Retries == 0 || st.ViewRebuilds == 0 {
				t.Errorf("stats: %d retries, %d view rebuilds after %d refused writes", st.Retries, st.ViewRebuilds, refused)
			}
			if d == Strict && (st.Fsyncs == 0 || st.Fsyncs > st.Groups) || d == Relaxed && st.Fsyncs != 0 {
				t.Errorf("stats: %d fsyncs for %d groups under %v durability", st.Fsyncs, st.Groups, d)
			}
		})
	}
}

// An append retried with the same ID while the first is still in flight
// waits for the first to be answered (sent, JetStream would drop it as a
// duplicate and break the chain of the writes behind it); it gets the
// original position, and nothing is lost, written twice or retried.
func TestDuplicateInsideAFlight(t *testing.T) {
	l := openTest(t, func(l *Log) { l.Durability = Relaxed })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const n = 6000
	ids := make([]string, n)
	pending := make([]*Pending, 0, n+n/50)
	for i := range n {
		ids[i] = l.NewID()
		p, err := l.AppendAsync(ctx, []Event{{ID: ids[i], Stream: fmt.Sprintf("s.%d", i%13), Type: "t.n", Data: []byte(`{}`)}})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
		if i%50 == 49 {
			j := i - 3 // most likely still in flight
			p, err := l.AppendAsync(ctx, []Event{{ID: ids[j], Stream: fmt.Sprintf("s.%d", j%13), Type: "t.n", Data: []byte(`{}`)}})
			if err != nil {
				t.Fatal(err)
			}
			pending = append(pending, p)
		}
	}
	byID := map[string]Position{}
	dupOf := map[string]bool{}
	var acks []Position
	for k, p := range pending {
		res, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		pos := res.Events[0]
		if prev, seen := byID[pos.ID]; seen {
			if prev != pos || !res.Duplicate {
				t.Fatalf("pending %d: retry of %s answered %+v (duplicate %v), first %+v (duplicate %v)", k, pos.ID, pos, res.Duplicate, prev, dupOf[pos.ID])
			}
			if dupOf[pos.ID] {
				t.Fatalf("the first append of %s was answered as a duplicate", pos.ID)
			}
			continue
		}
		byID[pos.ID] = pos
		dupOf[pos.ID] = res.Duplicate
		acks = append(acks, pos)
	}
	checkLog(t, l, acks, n, true)
	if st := l.Stats(); st.Retries != 0 || st.ViewRebuilds != 0 {
		t.Fatalf("copies of appends in flight broke the chain: %+v", st)
	}
}

// checkLog reads the whole log: it must hold exactly want events, each
// stream's versions must count from 1 without a gap, and every
// acknowledged position must be in it. acks are in the order the appends
// were made, which is the order they must have landed in. With
// idsInOrder, the IDs (made by the log, or by NewID in the order of the
// appends) must follow the log's order.
func checkLog(t *testing.T, l *Log, acks []Position, want int, idsInOrder bool) {
	t.Helper()
	for i := 1; i < len(acks); i++ {
		if acks[i].Seq <= acks[i-1].Seq {
			t.Fatalf("append %d landed at seq %d, before the one made before it (seq %d)", i, acks[i].Seq, acks[i-1].Seq)
		}
	}
	ctx := context.Background()
	got := map[uint64]Event{}
	versions := map[string]uint64{}
	var after uint64
	for {
		p, err := l.Read(ctx, after, 1000, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Seq != after+1 {
				t.Fatalf("seq %d after %d", e.Seq, after)
			}
			if prev, ok := got[e.Seq-1]; ok && idsInOrder && e.ID <= prev.ID {
				t.Fatalf("id %s at seq %d does not follow id %s", e.ID, e.Seq, prev.ID)
			}
			after = e.Seq
			got[e.Seq] = e
			if e.Version != versions[e.Stream]+1 {
				t.Fatalf("%s: version %d after %d at seq %d", e.Stream, e.Version, versions[e.Stream], e.Seq)
			}
			versions[e.Stream] = e.Version
		}
		if len(p.Events) == 0 {
			break
		}
	}
	if len(got) != want || len(acks) != want {
		t.Fatalf("log holds %d events, %d acknowledged, want %d", len(got), len(acks), want)
	}
	for _, a := range acks {
		if e, ok := got[a.Seq]; !ok || e.ID != a.ID || e.Version != a.Version || e.Stream != a.Stream {
			t.Fatalf("acknowledged %+v, log has %+v", a, e)
		}
	}
}

// Many callers mix what the commit loop handles differently: single
// events, multi-stream atomic appends, caller-chosen IDs retried while
// in flight, expectations that may conflict, and writes JetStream
// refuses. Whatever the interleaving, every answer must match the log:
// successes are there exactly once, refusals and conflicts are not, and
// versions count without a gap.
func TestMixedLoadKeepsTheLogExact(t *testing.T) {
	t.Run("sole writer", func(t *testing.T) { mixedLoad(t, false) })
	// With a writable listener other writers may exist: one group in
	// flight, every group one unit.
	t.Run("shared", func(t *testing.T) { mixedLoad(t, true) })
}

func mixedLoad(t *testing.T, shared bool) {
	l := openTest(t, func(l *Log) {
		if shared {
			l.Listen, l.ListenWritable = "127.0.0.1:0", true
		}
		l.mangle = refuseMarked
	})
	if l.soleWriter == shared {
		t.Fatalf("sole writer %v with a writable listener %v", l.soleWriter, shared)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var mu sync.Mutex
	landed := map[string]Position{} // by ID
	versions := map[string]uint64{} // the highest version answered, by stream
	var refusedIDs []string
	conflicts := 0
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				s := fmt.Sprintf("m.%d", (w*7+i)%11)
				var evs []Event
				var expect []Expectation
				retry := false
				switch i % 5 {
				case 0: // a single event, ID by the log
					evs = []Event{{Stream: s, Type: "t.n"}}
				case 1: // atomic across two streams
					evs = []Event{{Stream: s, Type: "t.n"}, {Stream: "m.pair", Type: "t.n"}}
				case 2: // caller-chosen ID, retried at once
					evs = []Event{{ID: l.NewID(), Stream: s, Type: "t.n"}}
					retry = true
				case 3: // an expectation from the last answer seen: may conflict
					mu.Lock()
					v := versions[s]
					mu.Unlock()
					evs = []Event{{Stream: s, Type: "t.n"}}
					expect = []Expectation{ExpectVersion(s, v)}
				case 4: // refused by JetStream, now and then
					typ := "t.n"
					if i%25 == 4 {
						typ = "t.refused"
					}
					evs = []Event{{ID: l.NewID(), Stream: s, Type: typ}}
				}
				first, err := l.AppendAsync(ctx, evs, expect...)
				if err != nil {
					t.Error(err)
					return
				}
				var again *Pending
				if retry {
					if again, err = l.AppendAsync(ctx, evs, expect...); err != nil {
						t.Error(err)
						return
					}
				}
				res, err := first.Wait()
				mu.Lock()
				switch {
				case evs[0].Type == "t.refused":
					if !strings.Contains(fmt.Sprint(err), "expected stream") {
						t.Errorf("refused write answered %v", err)
					}
					refusedIDs = append(refusedIDs, evs[0].ID)
				case errors.Is(err, ErrConflict) && expect != nil:
					conflicts++
				case err != nil:
					t.Errorf("append %v: %v", evs, err)
				default:
					for _, p := range res.Events {
						if prev, dup := landed[p.ID]; dup && prev != p {
							t.Errorf("%s answered at %+v and at %+v", p.ID, prev, p)
						}
						landed[p.ID] = p
						versions[p.Stream] = max(versions[p.Stream], p.Version)
					}
				}
				mu.Unlock()
				if again != nil {
					res2, err := again.Wait()
					if err != nil || len(res2.Events) != 1 || len(res.Events) != 1 || res2.Events[0] != res.Events[0] {
						t.Errorf("retry of %s: %+v, %v; first %+v", evs[0].ID, res2.Events, err, res.Events)
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var acks []Position
	for _, p := range landed {
		acks = append(acks, p)
	}
	slices.SortFunc(acks, func(a, b Position) int { return cmp.Compare(a.Seq, b.Seq) })
	checkLog(t, l, acks, len(acks), false)
	for _, id := range refusedIDs {
		if _, ok := landed[id]; ok {
			t.Fatalf("refused %s landed", id)
		}
	}
	if len(refusedIDs) != 16*4 {
		t.Fatalf("%d refusals, want %d", len(refusedIDs), 16*4)
	}
	if st := l.Stats(); st.Events != uint64(len(acks)) || st.Batches == 0 {
		t.Fatalf("stats count %d events in %d batches; %d landed, among them atomic pairs", st.Events, st.Batches, len(acks))
	}
	t.Logf("%d events landed, %d conflicts, %d refused", len(acks), conflicts, len(refusedIDs))
}

// settle decides from the log's last sequence what became of the units
// JetStream was not asked about: landed, refused (retry), or unknown
// when JetStream never answered for the flight.
func TestSettle(t *testing.T) {
	l := openTest(t, func(l *Log) { l.Durability = Relaxed })
	for i := 0; i < 5; i++ {
		if _, err := l.Append(context.Background(), []Event{{Stream: "s.1", Type: "t.n"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Units predicted at sequences 4 to 7; the log ends at 5.
	flightWith := func(last unitAck) *flight {
		f := &flight{units: []unit{{last: 4}, {last: 5}, {last: 6}, {last: 7, asked: true}}}
		f.acks = []unitAck{{err: errUnasked}, {err: errUnasked}, {err: errUnasked}, last}
		return f
	}
	refused := &jsError{code: errCodeWrongLastSeq, desc: "wrong last sequence"}
	timedOut := fmt.Errorf("%w: no acknowledgement", ErrUnavailable)
	for _, c := range []struct {
		name  string
		last  unitAck
		third func(error) bool // what the unit at 6 must become; those at 4 and 5 landed
	}{
		{"the last landed where predicted", unitAck{seq: 7}, func(err error) bool { return err == nil }},
		{"the last was refused", unitAck{err: refused}, func(err error) bool { return err == errNotStored }},
		{"no answer", unitAck{err: timedOut}, func(err error) bool {
			return errors.Is(err, ErrUnavailable) && strings.Contains(err.Error(), "may or may not")
		}},
	} {
		f := flightWith(c.last)
		l.settle(f)
		for u := 0; u < 2; u++ {
			if f.acks[u].err != nil || f.acks[u].seq != f.units[u].last {
				t.Errorf("%s: unit at %d settled as %+v, want landed", c.name, f.units[u].last, f.acks[u])
			}
		}
		if !c.third(f.acks[2].err) {
			t.Errorf("%s: unit at 6 settled as %+v", c.name, f.acks[2])
		}
		if f.acks[3] != c.last {
			t.Errorf("%s: the asked unit's answer changed to %+v", c.name, f.acks[3])
		}
	}
}

// After a restart the log does not re-read the caller-chosen IDs of the
// dedupe window. Retries of IDs made before it opened, here all at once
// and pipelined, single events and atomic pairs, are looked up in their
// streams before anything is sent: answered with the original positions,
// nothing written twice, and no write in flight disturbed.
func TestRetriesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	var firsts []Result
	var appends [][]Event
	for i := 0; i < 40; i++ {
		evs := []Event{{ID: l.NewID(), Stream: fmt.Sprintf("r.%d", i%3), Type: "t.n"}}
		if i%4 == 0 {
			evs = append(evs, Event{ID: l.NewID(), Stream: "r.pair", Type: "t.n"})
		}
		res, err := l.Append(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		firsts, appends = append(firsts, res), append(appends, evs)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	l = New(dir)
	if err := l.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	// Every retry at once, pipelined.
	pending := make([]*Pending, len(appends))
	for i, evs := range appends {
		p, err := l.AppendAsync(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		pending[i] = p
	}
	for i, p := range pending {
		res, err := p.Wait()
		if err != nil || !res.Duplicate || !slices.Equal(res.Events, firsts[i].Events) {
			t.Fatalf("retry %d after the restart: %+v, %v; want the original %+v", i, res, err, firsts[i])
		}
	}
	if last, _ := l.LastSeq(ctx); last != 50 {
		t.Fatalf("the log holds %d events; want 50, no copies", last)
	}
	// They were found before they were sent: none broke the chain of
	// writes in flight (which would make every write after it retried).
	if st := l.Stats(); st.Retries != 0 || st.ViewRebuilds != 0 || st.Groups != 0 {
		t.Fatalf("retries after a restart sent to JetStream: %+v", st)
	}

	// Answered once, a retry is remembered, and answered again without
	// JetStream.
	l.recentMu.Lock()
	_, remembered := l.recent[appends[5][0].ID]
	l.recentMu.Unlock()
	if !remembered {
		t.Fatal("a retry answered as a duplicate is not remembered")
	}
	res, err := l.Append(ctx, appends[5])
	if err != nil || !res.Duplicate || !slices.Equal(res.Events, firsts[5].Events) {
		t.Fatalf("second retry: %+v, %v; want the original %+v", res, err, firsts[5])
	}
}
