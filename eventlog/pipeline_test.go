package eventlog

import (
	"context"

	"fmt"
	"github.com/nats-io/nats.go"
	"sync"
	"testing"
	"time"
)

// Writes from another process (here: a client of a writable listener,
// publishing well-formed events around the log) move the log under its
// feet; appends are refused, retried against a fresh view, and every
// stream still counts its versions without a gap.
func TestGuardsHoldAgainstForeignWrites(t *testing.T) {
	l := New(t.TempDir())
	l.Durability = Relaxed
	l.Listen, l.ListenWritable = "127.0.0.1:0", true
	if err := l.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
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
			if _, err := foreign.RequestMsg(e.message(false), 5*time.Second); err != nil {
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
