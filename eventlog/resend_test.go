package eventlog

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// An append whose acknowledgement is lost (dropped on arrival here, as
// when a stream leader dies after storing the write) is sent again with
// the same IDs when other writers may exist: it lands once, and is
// answered with the positions of its own first copy, neither as a
// duplicate nor as a conflict with its own expectation; with IDs the log
// made, with the caller's, and as an atomic batch.
func TestResendAfterLostAck(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	l := openTest(t, func(l *Log) {
		l.Listen, l.ListenWritable = "127.0.0.1:0", true // other writers: the log resends
		l.RequestTimeout, l.ResendInterval = 2*time.Second, 50*time.Millisecond
		l.dropAck = func(m *nats.Msg) bool { // the first answer to every flight
			mu.Lock()
			defer mu.Unlock()
			first := !seen[m.Subject]
			seen[m.Subject] = true
			return first
		}
	})
	ctx := context.Background()
	data := json.RawMessage(`{}`)
	appends := []struct {
		events []Event
		expect Expectation
	}{
		{[]Event{{Stream: "acct.a", Type: "acct.moved", Data: data}}, ExpectNew("acct.a")},
		{[]Event{{ID: l.NewID(), Stream: "acct.a", Type: "acct.moved", Data: data}}, ExpectVersion("acct.a", 1)},
		{[]Event{{Stream: "acct.a", Type: "acct.moved", Data: data}, {Stream: "acct.b", Type: "acct.moved", Data: data}}, ExpectVersion("acct.a", 2)},
	}
	var want []Position
	for i, a := range appends {
		res, err := l.Append(ctx, a.events, a.expect)
		if err != nil || res.Duplicate || len(res.Events) != len(a.events) {
			t.Fatalf("append %d, its acknowledgement lost: %+v %v; want its positions", i, res, err)
		}
		want = append(want, res.Events...)
	}
	if st := l.Stats(); st.Resent != uint64(len(appends)) {
		t.Errorf("%d appends sent again, want %d", st.Resent, len(appends))
	}
	page, err := l.Read(ctx, 0, 100, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != len(want) {
		t.Fatalf("%d events in the log, want %d (each once)", len(page.Events), len(want))
	}
	for i, e := range page.Events {
		if p := want[i]; e.ID != p.ID || e.Seq != p.Seq || e.Stream != p.Stream || e.Version != p.Version {
			t.Errorf("event %d: %s %s v%d at %d, answered %+v", i, e.ID, e.Stream, e.Version, e.Seq, p)
		}
	}
}
