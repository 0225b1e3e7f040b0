package main

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// A message written into NATS around the kernel is printed by events
// read and tail as a visible malformed line, and both go on past it.
// tail follows from now unless --after says otherwise.
func TestCLIShowsMalformedAndGoesOn(t *testing.T) {
	s := startServer(t, t.TempDir(), "--nats-listen", "127.0.0.1:0", "--nats-writable")
	d := []string{"--addr", s.addr, "--token", s.token}
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publish := func(data string) uint64 {
		t.Helper()
		h := nats.Header{"Fazt-Id": {ulid.Make().String()}, "Fazt-Type": {"orders.noted"}, "Fazt-Version": {"9"}}
		m, err := nc.RequestMsg(&nats.Msg{Subject: eventlog.SubjectOf("orders.1"), Header: h, Data: []byte(data)}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var ack struct{ Seq uint64 }
		if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Seq == 0 {
			t.Fatalf("publish: %s", m.Data)
		}
		return ack.Seq
	}
	if status, body, _ := s.do(t, "POST", "/v1/schemas/orders.noted", strings.NewReader(`{"type":"object"}`), nil); status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}
	one := s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.noted","data":{"n":1}}]}`).LastSeq
	bad := publish("{not json")
	two := s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.noted","data":{"n":2}}]}`)
	if two.Events[0].Version != 2 {
		t.Fatalf("append after the malformed message: %+v", two)
	}

	out, _, err := fazt(t, nil, "", append([]string{"events", "read", "orders.1"}, d...)...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if err != nil || len(lines) != 3 || !strings.HasPrefix(lines[0], strconv.FormatUint(one, 10)+"  1  ") || !strings.HasPrefix(lines[2], strconv.FormatUint(two.LastSeq, 10)+"  2  ") ||
		!regexp.MustCompile(`^! seq `+strconv.FormatUint(bad, 10)+` malformed: bad or missing data \(fazt\.ev\.orders\.1, written around the kernel\)$`).MatchString(lines[1]) {
		t.Fatalf("read: %v\n%s", err, out)
	}

	// tail follows from now: the history is not printed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var now, all syncBuffer
	done := make(chan error, 2)
	go func() {
		done <- run(ctx, testVerticals, append([]string{"events", "tail"}, d...), noEnv, strings.NewReader(""), &now, io.Discard)
	}()
	go func() {
		done <- run(ctx, testVerticals, append([]string{"events", "tail", "--after", "0"}, d...), noEnv, strings.NewReader(""), &all, io.Discard)
	}()
	waitFor(t, "tail --after 0 to print the history", func() bool {
		return strings.Contains(all.String(), strconv.FormatUint(two.LastSeq, 10)+"  orders.1  2")
	})
	// A tail from now has no way to say it is connected but to print
	// something: append until it does.
	waitFor(t, "tail to follow new events", func() bool {
		if strings.Contains(now.String(), "orders.noted") {
			return true
		}
		s.appendJSON(t, `{"events":[{"stream":"orders.2","type":"orders.noted","data":{}}]}`)
		time.Sleep(50 * time.Millisecond)
		return false
	})
	bad2 := publish("neither")
	last := s.appendJSON(t, `{"events":[{"stream":"orders.3","type":"orders.noted","data":{}}]}`).LastSeq
	marker := strconv.FormatUint(last, 10) + "  orders.3"
	waitFor(t, "both tails to print the last event", func() bool {
		return strings.Contains(now.String(), marker) && strings.Contains(all.String(), marker)
	})
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("tail: %v", err)
		}
	}
	if strings.Contains(now.String(), "  orders.1  ") || !strings.Contains(now.String(), "! seq "+strconv.FormatUint(bad2, 10)+" malformed: ") {
		t.Fatalf("tail from now printed:\n%s", now.String())
	}
	for _, seq := range []uint64{bad, bad2} {
		if !strings.Contains(all.String(), "! seq "+strconv.FormatUint(seq, 10)+" malformed: bad or missing data") {
			t.Fatalf("tail --after 0 lacks seq %d:\n%s", seq, all.String())
		}
	}
}
