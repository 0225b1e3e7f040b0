package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
)

// scenario is one HTTP request against a fresh server, PocketBase style:
// what is sent, what must come back, and how many events the log holds
// afterwards (so that a rejected request provably wrote nothing).
type scenario struct {
	name    string
	seed    []string // bodies POSTed to /v1/events before the request
	method  string
	url     string
	headers map[string]string // Authorization defaults to the token; "" sends none
	body    string
	status  int
	// contains are substrings of the response body.
	contains []string
	// events is the number of events in the log after the request.
	events int
}

func (sc scenario) run(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	for _, b := range sc.seed {
		s.appendJSON(t, b)
	}
	status, body, header := s.do(t, sc.method, sc.url, strings.NewReader(sc.body), sc.headers)
	if status != sc.status {
		t.Errorf("status %d, want %d; body: %.500s", status, sc.status, body)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !json.Valid([]byte(body)) {
		t.Errorf("body is not JSON: %.500s", body)
	}
	if status >= 400 && !strings.Contains(body, `{"error":{"code":"`) {
		t.Errorf("error body without an error object: %.500s", body)
	}
	for _, want := range sc.contains {
		if !strings.Contains(body, want) {
			t.Errorf("body does not contain %q: %.500s", want, body)
		}
	}
	if n := len(s.events(t)); n != sc.events {
		t.Errorf("the log holds %d events after the request, want %d", n, sc.events)
	}
}

const (
	oneEvent  = `{"events":[{"stream":"orders.1","type":"orders.created","data":{"total":12}}]}`
	twoEvents = `{"events":[{"stream":"orders.1","type":"orders.created"},{"stream":"orders.1","type":"orders.paid"}]}`
	ulid1     = "01JZ0000000000000000000001"
)

func TestHTTPScenarios(t *testing.T) {
	big := `{"events":[{"stream":"orders.1","type":"orders.created","data":"` + strings.Repeat("x", 13<<20) + `"}]}`
	var many strings.Builder
	many.WriteString(`{"events":[`)
	for i := range eventlog.MaxAppendEvents + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `{"stream":"orders.%d","type":"orders.created"}`, i)
	}
	many.WriteString(`]}`)
	noToken := map[string]string{"Authorization": ""}
	wrongToken := map[string]string{"Authorization": "Bearer " + strings.Repeat("0", 64)}
	basicAuth := map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}

	scenarios := []scenario{
		// Open routes.
		{name: "healthz", method: "GET", url: "/healthz", headers: noToken, status: 200, contains: []string{`{"status":"ok"}`}},
		{name: "readyz", method: "GET", url: "/readyz", headers: noToken, status: 200, contains: []string{`{"status":"ok"}`}},
		{name: "healthz wrong method", method: "POST", url: "/healthz", status: 405, contains: []string{`"method_not_allowed"`}},
		{name: "unknown route", method: "GET", url: "/nope", headers: noToken, status: 404, contains: []string{`"not_found"`, "GET /nope"}},
		{name: "unknown v1 route", method: "GET", url: "/v1/nope", status: 404, contains: []string{`"not_found"`}},
		{name: "unknown v1 route without token", method: "GET", url: "/v1/nope", headers: noToken, status: 401, contains: []string{`"unauthorized"`}},

		// POST /v1/events: success.
		{name: "append one", method: "POST", url: "/v1/events", body: oneEvent, status: 200,
			contains: []string{`"stream":"orders.1"`, `"seq":1`, `"version":1`, `"last_seq":1`}, events: 1},
		{name: "append across streams with expectations", method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.created"},{"stream":"stock.9","type":"stock.reserved"}],"expect":{"orders.1":0,"stock.9":0}}`,
			status: 200, contains: []string{`"last_seq":2`, `"stream":"stock.9","seq":2,"version":1`}, events: 2},
		{name: "append with id, schema and meta", method: "POST", url: "/v1/events",
			body:   `{"events":[{"id":"` + strings.ToLower(ulid1) + `","stream":"orders.1","type":"orders.created","schema":2,"data":{"note":"gift"},"meta":{"correlation_id":"c1","causation_id":"c0","actor":"me"}}]}`,
			status: 200, contains: []string{`"id":"` + ulid1 + `"`}, events: 1},
		{name: "append at the expected version", seed: []string{oneEvent}, method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":1}}`,
			status: 200, contains: []string{`"seq":2`, `"version":2`}, events: 2},

		// POST /v1/events: expectations that fail.
		{name: "expect new on an existing stream", seed: []string{oneEvent}, method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.created"}],"expect":{"orders.1":0}}`,
			status: 409, contains: []string{`"conflict"`, `"stream":"orders.1"`, `"actual_version":1`}, events: 1},
		{name: "expect a stale version", seed: []string{twoEvents}, method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":1}}`,
			status: 409, contains: []string{`"conflict"`, `"actual_version":2`}, events: 2},
		{name: "expect a version of a missing stream", method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":3}}`,
			status: 409, contains: []string{`"conflict"`, `"actual_version":0`}, events: 0},
		{name: "a failed expectation writes none of the append", seed: []string{oneEvent}, method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"stock.1","type":"stock.reserved"},{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":0}}`,
			status: 409, contains: []string{`"stream":"orders.1"`}, events: 1},

		// POST /v1/events: bad input.
		{name: "append without token", method: "POST", url: "/v1/events", headers: noToken, body: oneEvent, status: 401, contains: []string{`"unauthorized"`, "Bearer"}},
		{name: "append with wrong token", method: "POST", url: "/v1/events", headers: wrongToken, body: oneEvent, status: 401, contains: []string{`"unauthorized"`}},
		{name: "append with basic auth", method: "POST", url: "/v1/events", headers: basicAuth, body: oneEvent, status: 401, contains: []string{`"unauthorized"`}},
		{name: "empty body", method: "POST", url: "/v1/events", status: 400, contains: []string{`"invalid"`, "empty"}},
		{name: "truncated JSON", method: "POST", url: "/v1/events", body: `{"events":[`, status: 400, contains: []string{`"invalid"`, "not valid JSON"}},
		{name: "malformed JSON", method: "POST", url: "/v1/events", body: `{"events": nope}`, status: 400, contains: []string{`"invalid"`, "not valid JSON"}},
		{name: "not an object", method: "POST", url: "/v1/events", body: `[1,2]`, status: 400, contains: []string{`"invalid"`, "JSON object"}},
		{name: "unknown top-level field", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"orders.created"}],"expected":{}}`,
			status: 400, contains: []string{`"invalid"`, `unknown field \"expected\"`}},
		{name: "client sets a field the log owns", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"orders.created","seq":7}]}`,
			status: 400, contains: []string{`"invalid"`, `unknown field \"seq\"`}},
		{name: "unknown meta field", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"orders.created","meta":{"user":"x"}}]}`,
			status: 400, contains: []string{`unknown field \"user\"`}},
		{name: "trailing garbage", method: "POST", url: "/v1/events", body: oneEvent + ` xyz`, status: 400, contains: []string{`"invalid"`, "after the JSON object"}},
		{name: "two objects", method: "POST", url: "/v1/events", body: oneEvent + oneEvent, status: 400, contains: []string{"after the JSON object"}},
		{name: "missing events", method: "POST", url: "/v1/events", body: `{}`, status: 400, contains: []string{`\"events\" is missing`}},
		{name: "null events", method: "POST", url: "/v1/events", body: `{"events":null}`, status: 400, contains: []string{`\"events\" is missing`}},
		{name: "events of the wrong type", method: "POST", url: "/v1/events", body: `{"events":{}}`, status: 400, contains: []string{`field \"events\"`}},
		{name: "schema of the wrong type", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"t","schema":"1"}]}`, status: 400, contains: []string{"schema"}},
		{name: "negative schema", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"t","schema":-1}]}`, status: 400, contains: []string{"negative"}},
		{name: "stream without category", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders","type":"orders.created"}]}`, status: 400, contains: []string{"category and an id"}},
		{name: "stream with a space", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1 2","type":"orders.created"}]}`, status: 400, contains: []string{"not allowed"}},
		{name: "stream with a wildcard", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.>","type":"orders.created"}]}`, status: 400, contains: []string{"not allowed"}},
		{name: "stream with double dots", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders..1","type":"orders.created"}]}`, status: 400, contains: []string{"empty token"}},
		{name: "missing type", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1"}]}`, status: 400, contains: []string{"event type is empty"}},
		{name: "bad type", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"orders created"}]}`, status: 400, contains: []string{"event type"}},
		{name: "bad id", method: "POST", url: "/v1/events", body: `{"events":[{"id":"not-a-ulid","stream":"orders.1","type":"t"}]}`, status: 400, contains: []string{"not a ULID"}},
		{name: "one bad event fails the append", method: "POST", url: "/v1/events",
			body: `{"events":[{"stream":"orders.1","type":"t"},{"stream":"bad","type":"t"}]}`, status: 400, contains: []string{"event 1"}},
		{name: "negative expectation", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"t"}],"expect":{"orders.1":-1}}`, status: 400, contains: []string{`"invalid"`}},
		{name: "expectation on a stream not written", method: "POST", url: "/v1/events", body: `{"events":[{"stream":"orders.1","type":"t"}],"expect":{"orders.2":0}}`, status: 400, contains: []string{"does not write"}},
		{name: "too many events", method: "POST", url: "/v1/events", body: many.String(), status: 400, contains: []string{"limit"}},
		{name: "oversized body", method: "POST", url: "/v1/events", body: big, status: 413, contains: []string{`"too_large"`, "12 MiB"}},
		{name: "append with a query parameter", method: "POST", url: "/v1/events?expect=1", body: oneEvent, status: 400, contains: []string{`unknown query parameter \"expect\"`}},
		{name: "append with a wrong method", method: "PUT", url: "/v1/events", body: oneEvent, status: 405, contains: []string{`"method_not_allowed"`, "PUT"}},
		{name: "wrong method without token", method: "DELETE", url: "/v1/events", headers: noToken, status: 401},

		// GET /v1/streams/{stream}.
		{name: "read stream", seed: []string{twoEvents}, method: "GET", url: "/v1/streams/orders.1", status: 200,
			contains: []string{`"stream":"orders.1"`, `"type":"orders.created"`, `"type":"orders.paid","schema":1`, `"version":2`}, events: 2},
		{name: "read stream from a version", seed: []string{twoEvents}, method: "GET", url: "/v1/streams/orders.1?from=2&limit=5", status: 200,
			contains: []string{`"version":2`}, events: 2},
		{name: "read stream past its end", seed: []string{twoEvents}, method: "GET", url: "/v1/streams/orders.1?from=3", status: 200,
			contains: []string{`"events":[]`}, events: 2},
		{name: "read missing stream", seed: []string{oneEvent}, method: "GET", url: "/v1/streams/orders.2", status: 404, contains: []string{`"not_found"`, "orders.2"}, events: 1},
		{name: "read stream with bad name", method: "GET", url: "/v1/streams/orders", status: 400, contains: []string{`"invalid"`}},
		{name: "read stream with escaped bad name", method: "GET", url: "/v1/streams/orders.%2A", status: 400, contains: []string{`"invalid"`}},
		{name: "read stream from=abc", method: "GET", url: "/v1/streams/orders.1?from=abc", status: 400, contains: []string{"from=", "not a non-negative integer"}},
		{name: "read stream from=-1", method: "GET", url: "/v1/streams/orders.1?from=-1", status: 400, contains: []string{"from="}},
		{name: "read stream limit=0", method: "GET", url: "/v1/streams/orders.1?limit=0", status: 400, contains: []string{"limit=0", "1 to 1000"}},
		{name: "read stream limit=1001", method: "GET", url: "/v1/streams/orders.1?limit=1001", status: 400, contains: []string{"limit=1001"}},
		{name: "read stream limit=1e3", method: "GET", url: "/v1/streams/orders.1?limit=1e3", status: 400, contains: []string{"limit="}},
		{name: "read stream twice from", method: "GET", url: "/v1/streams/orders.1?from=1&from=2", status: 400, contains: []string{"from is given 2 times"}},
		{name: "read stream unknown parameter", method: "GET", url: "/v1/streams/orders.1?limt=5", status: 400, contains: []string{`unknown query parameter \"limt\"`}},
		{name: "read stream without token", seed: []string{oneEvent}, method: "GET", url: "/v1/streams/orders.1", headers: noToken, status: 401, events: 1},
		{name: "read stream wrong method", method: "POST", url: "/v1/streams/orders.1", body: oneEvent, status: 405, contains: []string{`"method_not_allowed"`}},
		{name: "streams without a name", method: "GET", url: "/v1/streams/", status: 404},

		// GET /v1/events.
		{name: "list empty log", method: "GET", url: "/v1/events", status: 200, contains: []string{`{"events":[],"last_seq":0}`}},
		{name: "list after a position", seed: []string{twoEvents}, method: "GET", url: "/v1/events?after=1", status: 200,
			contains: []string{`"seq":2`, `"last_seq":2`}, events: 2},
		{name: "list by type", seed: []string{twoEvents, `{"events":[{"stream":"stock.1","type":"stock.reserved"}]}`}, method: "GET",
			url: "/v1/events?type=orders.paid&type=stock.reserved", status: 200, contains: []string{`"orders.paid"`, `"stock.reserved"`}, events: 3},
		{name: "list by category", seed: []string{twoEvents, `{"events":[{"stream":"stock.1","type":"stock.reserved"}]}`}, method: "GET",
			url: "/v1/events?category=stock&limit=10", status: 200, contains: []string{`"stock.reserved"`, `"last_seq":3`}, events: 3},
		{name: "list after=x", method: "GET", url: "/v1/events?after=x", status: 400, contains: []string{"after="}},
		{name: "list limit=abc", method: "GET", url: "/v1/events?limit=abc", status: 400, contains: []string{"limit="}},
		{name: "list limit too large", method: "GET", url: "/v1/events?limit=100000", status: 400, contains: []string{"limit=100000"}},
		{name: "list bad type", method: "GET", url: "/v1/events?type=a%20b", status: 400, contains: []string{"query parameter type"}},
		{name: "list bad category", method: "GET", url: "/v1/events?category=a.b", status: 400, contains: []string{"query parameter category", "single token"}},
		{name: "list malformed query", method: "GET", url: "/v1/events?after=%zz", status: 400, contains: []string{"malformed query"}},
		{name: "list without token", method: "GET", url: "/v1/events", headers: noToken, status: 401},
		{name: "list wrong method", method: "PATCH", url: "/v1/events", status: 405, contains: []string{`"method_not_allowed"`}},

		// GET /v1/events/live: bad input (streaming is tested on its own).
		{name: "live after=x", method: "GET", url: "/v1/events/live?after=x", status: 400, contains: []string{"after="}},
		{name: "live bad Last-Event-ID", method: "GET", url: "/v1/events/live", headers: map[string]string{"Last-Event-ID": "abc"}, status: 400, contains: []string{"Last-Event-ID"}},
		{name: "live bad type", method: "GET", url: "/v1/events/live?type=", status: 400, contains: []string{"query parameter type"}},
		{name: "live bad category", method: "GET", url: "/v1/events/live?category=x*", status: 400, contains: []string{"query parameter category"}},
		{name: "live limit is unknown", method: "GET", url: "/v1/events/live?limit=5", status: 400, contains: []string{`unknown query parameter \"limit\"`}},
		{name: "live without token", method: "GET", url: "/v1/events/live", headers: noToken, status: 401},
		{name: "live wrong method", method: "POST", url: "/v1/events/live", status: 405},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, sc.run)
	}
}

func TestMethodNotAllowedListsAllowed(t *testing.T) {
	s := startServer(t, t.TempDir())
	status, _, h := s.do(t, "DELETE", "/v1/events", nil, nil)
	if status != 405 || h.Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("status %d Allow %q", status, h.Get("Allow"))
	}
	status, _, h = s.do(t, "GET", "/v1/events", nil, map[string]string{"Authorization": ""})
	if status != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("status %d WWW-Authenticate %q", status, h.Get("WWW-Authenticate"))
	}
}

func TestIdempotentRetry(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.appendJSON(t, oneEvent)
	// Fresh IDs: JetStream's dedupe window answers the retry.
	body := `{"events":[{"id":"` + ulid.Make().String() + `","stream":"orders.2","type":"orders.created"},{"id":"` + ulid.Make().String() + `","stream":"orders.1","type":"orders.paid"}]}`
	first := s.appendJSON(t, body)
	if first.Duplicate || first.LastSeq != 3 || len(first.Events) != 2 {
		t.Fatalf("first append: %+v", first)
	}
	for range 2 {
		again := s.appendJSON(t, body)
		if !again.Duplicate || again.LastSeq != first.LastSeq || fmt.Sprint(again.Events) != fmt.Sprint(first.Events) {
			t.Fatalf("retry: %+v, first: %+v", again, first)
		}
	}
	// IDs older than the window: the log finds them in their stream,
	// before checking the expectation.
	old := `{"events":[{"id":"` + ulid1 + `","stream":"orders.3","type":"orders.created"}],"expect":{"orders.3":0}}`
	first = s.appendJSON(t, old)
	again := s.appendJSON(t, old)
	if first.Duplicate || !again.Duplicate || fmt.Sprint(again.Events) != fmt.Sprint(first.Events) {
		t.Fatalf("retry of an old id: %+v, first: %+v", again, first)
	}
	status, resp, _ := s.do(t, "POST", "/v1/events", strings.NewReader(old), nil)
	if status != 200 || !strings.Contains(resp, `"duplicate":true`) || !strings.Contains(resp, `"seq":4`) {
		t.Fatalf("raw retry: %d %s", status, resp)
	}
	if n := len(s.events(t)); n != 4 {
		t.Fatalf("%d events after the retries, want 4", n)
	}
}

func TestLiveEvents(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.appendJSON(t, oneEvent)
	live, _ := s.openLive(t, ctx, "?after=0", nil)
	e := next(t, live)
	if e.id != "1" || e.event != "orders.created" || !strings.Contains(e.data, `"data":{"total":12}`) {
		t.Fatalf("first event: %+v", e)
	}
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.paid","data":{"a":"line\nbreak"}},{"stream":"stock.1","type":"stock.reserved"}]}`)
	for _, want := range []string{"2 orders.paid", "3 stock.reserved"} {
		e := next(t, live)
		var ev eventlog.Event
		if err := json.Unmarshal([]byte(e.data), &ev); err != nil {
			t.Fatalf("event data %q: %v", e.data, err)
		}
		if got := e.id + " " + e.event; got != want || fmt.Sprint(ev.Seq) != e.id || ev.Type != e.event {
			t.Fatalf("got %q (%+v), want %q", got, ev, want)
		}
	}
	cancel()

	// Reconnecting with Last-Event-ID resumes after it, whatever after says.
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.shipped"}]}`)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	live, _ = s.openLive(t, ctx2, "?after=0", map[string]string{"Last-Event-ID": "3"})
	if e := next(t, live); e.id != "4" || e.event != "orders.shipped" {
		t.Fatalf("after reconnect: %+v", e)
	}

	// Filters apply to history and to new events.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	live, _ = s.openLive(t, ctx3, "?category=stock&type=stock.released&type=stock.reserved", nil)
	s.appendJSON(t, `{"events":[{"stream":"orders.1","type":"orders.closed"},{"stream":"stock.1","type":"stock.released"}]}`)
	if e := next(t, live); e.id != "3" {
		t.Fatalf("filtered history: %+v", e)
	}
	if e := next(t, live); e.id != "6" || e.event != "stock.released" {
		t.Fatalf("filtered live: %+v", e)
	}
}

// A message that is not an event (published straight into NATS, around
// the kernel) must not pass as one, and must not stop a reader: reads
// show it as a malformed entry and go on, and so does a live stream.
func TestMalformedMessageInLog(t *testing.T) {
	s := startServer(t, t.TempDir(), "--nats-listen", "127.0.0.1:0", "--nats-writable")
	if !strings.HasPrefix(s.nats, "nats://127.0.0.1:") {
		t.Fatalf("serve.json nats = %q", s.nats)
	}
	s.appendJSON(t, oneEvent)
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request(eventlog.SubjectOf("rogue.1"), []byte(`{"x":1}`), 5*time.Second); err != nil {
		t.Fatalf("publish into the stream: %v", err)
	}
	after := s.appendJSON(t, oneEvent).LastSeq

	status, body, _ := s.do(t, "GET", "/v1/events?after=0", nil, nil)
	if status != 200 || !strings.Contains(body, `{"stream":"rogue.1","time":"`) || !strings.Contains(body, `"seq":2,"malformed":{"subject":"`+eventlog.SubjectOf("rogue.1")+`","reason":"bad or missing id, type, version"`) ||
		!strings.Contains(body, `"data_base64":"eyJ4IjoxfQ=="`) || !strings.Contains(body, fmt.Sprintf(`"seq":%d,"version":2`, after)) {
		t.Fatalf("read: %d %s", status, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, _ := s.openLive(t, ctx, "?after=0&category=orders&category=rogue", nil)
	if e := next(t, live); e.id != "1" {
		t.Fatalf("first: %+v", e)
	}
	if e := next(t, live); e.id != "2" || e.event != "malformed" || !strings.Contains(e.data, `"reason":"bad or missing id, type, version"`) {
		t.Fatalf("want a malformed entry, got %+v", e)
	}
	if e := next(t, live); e.id != fmt.Sprint(after) || e.event != "orders.created" {
		t.Fatalf("the stream did not go on: %+v", e)
	}
	if !strings.Contains(s.stderr.String(), "not a valid event") {
		t.Errorf("the server log does not mention the bad message:\n%s", s.stderr)
	}
}

func TestShutdownWithLiveClient(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.appendJSON(t, oneEvent)
	live, _ := s.openLive(t, context.Background(), "?after=0", nil)
	next(t, live)
	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a live client", d)
	}
	select {
	case _, ok := <-live:
		if ok {
			t.Fatal("event after shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the live stream is still open after shutdown")
	}
	if _, err := readState(s.dir); err == nil {
		t.Fatal("serve.json is still there after shutdown")
	}
}

func TestConcurrentExpectations(t *testing.T) {
	s := startServer(t, t.TempDir())
	// Two clients race to create each stream: exactly one of each pair wins.
	errs := make(chan int, 20)
	for i := range 20 {
		go func() {
			body := fmt.Sprintf(`{"events":[{"stream":"seat.%d","type":"seat.booked"}],"expect":{"seat.%d":0}}`, i%10, i%10)
			req, _ := http.NewRequest("POST", s.addr+"/v1/events", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- -1 // no t.Fatal outside the test's goroutine
				return
			}
			resp.Body.Close()
			errs <- resp.StatusCode
		}()
	}
	counts := map[int]int{}
	for range 20 {
		counts[<-errs]++
	}
	if counts[200] != 10 || counts[409] != 10 {
		t.Fatalf("statuses %v, want 10 x 200 and 10 x 409", counts)
	}
	if n := len(s.events(t)); n != 10 {
		t.Fatalf("%d events, want 10", n)
	}
	if status, body, _ := s.do(t, "GET", "/readyz", nil, nil); status != http.StatusOK {
		t.Fatalf("readyz %d %s", status, body)
	}
}
