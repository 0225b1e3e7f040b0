package kernel_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// apiTypes are the event types the API tests append: any object, and a
// second version of orders.created for the appends that name schema 2.
var apiTypes = map[string][]string{
	"orders.created": {`{"type":"object"}`, `{"type":"object","properties":{"note":{"type":"string"}}}`},
	"orders.paid":    {`{"type":"object"}`}, "orders.shipped": {`{"type":"object"}`}, "orders.closed": {`{"type":"object"}`},
	"stock.reserved": {`{"type":"object"}`}, "stock.released": {`{"type":"object"}`},
	"seat.booked": {`{"type":"object"}`}, "t": {`{"type":"object"}`},
}

// apiKernel is an open kernel serving the HTTP API on a free loopback
// port, with apiTypes registered; mod adjusts its configuration.
func apiKernel(t *testing.T, mod func(*kernel.Kernel)) *kernel.Kernel {
	t.Helper()
	k := newKernel(t, t.TempDir(), mod)
	for typ, versions := range apiTypes {
		for i, schema := range versions {
			if err := k.RegisterEvent(typ, i+1, []byte(schema)); err != nil {
				t.Fatal(err)
			}
		}
	}
	open(t, k)
	return k
}

// client calls k's API with its token.
func client(k *kernel.Kernel) kerneltest.Client {
	return kerneltest.Client{Base: "http://" + k.ListenAddr(), Token: k.Token}
}

// request sends a request to k's API with its token, unless headers set
// Authorization ("" sends none), and returns the status, body and
// headers of the answer.
func request(t *testing.T, k *kernel.Kernel, method, path, body string, headers map[string]string) (int, string, http.Header) {
	t.Helper()
	return client(k).Do(t, method, path, strings.NewReader(body), headers)
}

// postEvents posts a body to /v1/events and requires success.
func postEvents(t *testing.T, k *kernel.Kernel, body string) eventlog.Result {
	t.Helper()
	return client(k).Append(t, body)
}

// scenario is one HTTP request, PocketBase style: what is sent, what
// must come back, and how many events the log holds afterwards (so that
// a rejected request provably wrote nothing).
type scenario struct {
	name    string
	seed    []string // bodies POSTed to /v1/events before the request (writeScenarios only)
	method  string
	url     string
	headers map[string]string // Authorization defaults to the token; "" sends none
	body    string
	status  int
	// contains are substrings of the response body; header are response
	// headers, exactly.
	contains []string
	header   map[string]string
	// events is the number of events in the log after the request
	// (writeScenarios only: a read scenario leaves its log as it was).
	events uint64
}

// check sends the request to k and checks the answer, and that the log
// then holds events events.
func (sc scenario) check(t *testing.T, k *kernel.Kernel, events uint64) {
	t.Helper()
	status, body, header := request(t, k, sc.method, sc.url, sc.body, sc.headers)
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
	for name, want := range sc.header {
		if got := header.Get(name); got != want {
			t.Errorf("header %s: %q, want %q", name, got, want)
		}
	}
	if n := logLength(t, k); n != events {
		t.Errorf("the log holds %d events after the request, want %d", n, events)
	}
}

const (
	oneEvent   = `{"events":[{"stream":"orders.1","type":"orders.created","data":{"total":12}}]}`
	twoEvents  = `{"events":[{"stream":"orders.1","type":"orders.created"},{"stream":"orders.1","type":"orders.paid"}]}`
	stockEvent = `{"events":[{"stream":"stock.1","type":"stock.reserved"}]}`
	ulid1      = "01JZ0000000000000000000001"
)

// readLog is what the log of TestHTTPReadScenarios holds: orders.1 at
// version 2 (seq 1 and 2) and stock.1 at version 1 (seq 3).
var readLog = []string{twoEvents, stockEvent}

// TestHTTPReadScenarios runs the scenarios that must write nothing, in
// parallel, against one kernel whose log holds readLog: each checks that
// the log still holds exactly that after its request.
func TestHTTPReadScenarios(t *testing.T) {
	// The scenarios run in parallel from one address: lift the
	// per-client connection cap, which has its own test.
	k := apiKernel(t, func(c *kernel.Kernel) { c.MaxConnsPerClient = 1 << 12 })
	for _, b := range readLog {
		postEvents(t, k, b)
	}
	events := logLength(t, k)
	for _, sc := range readScenarios() {
		if sc.seed != nil || sc.events != 0 {
			t.Fatalf("read scenario %q has a seed or an event count; it runs on readLog", sc.name)
		}
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.check(t, k, events)
		})
	}
}

// TestHTTPWriteScenarios runs the scenarios that write, or that need a
// log other than readLog, each on a kernel of its own.
func TestHTTPWriteScenarios(t *testing.T) {
	for _, sc := range writeScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			k := apiKernel(t, nil)
			for _, b := range sc.seed {
				postEvents(t, k, b)
			}
			sc.check(t, k, sc.events)
		})
	}
}

func writeScenarios() []scenario {
	return []scenario{
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

		// POST /v1/events: expectations that fail, on a log of their own.
		{name: "expect new on an existing stream", seed: []string{oneEvent}, method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.created"}],"expect":{"orders.1":0}}`,
			status: 409, contains: []string{`"conflict"`, `"stream":"orders.1"`, `"actual_version":1`}, events: 1},
		{name: "expect a version of a missing stream", method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":3}}`,
			status: 409, contains: []string{`"conflict"`, `"actual_version":0`}, events: 0},

		// GET /v1/events on logs other than readLog.
		{name: "list empty log", method: "GET", url: "/v1/events", status: 200, contains: []string{`{"events":[],"last_seq":0}`}},
		{name: "list after a position", seed: []string{twoEvents}, method: "GET", url: "/v1/events?after=1", status: 200,
			contains: []string{`"seq":2`, `"last_seq":2`}, events: 2},
	}
}

func readScenarios() []scenario {
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

	return []scenario{
		// Open routes.
		{name: "healthz", method: "GET", url: "/healthz", headers: noToken, status: 200, contains: []string{`{"status":"ok"}`}},
		{name: "readyz", method: "GET", url: "/readyz", headers: noToken, status: 200, contains: []string{`{"status":"ok"}`}},
		{name: "healthz wrong method", method: "POST", url: "/healthz", status: 405, contains: []string{`"method_not_allowed"`}},
		{name: "unknown route", method: "GET", url: "/nope", headers: noToken, status: 404, contains: []string{`"not_found"`, "GET /nope"}},
		{name: "unknown v1 route", method: "GET", url: "/v1/nope", status: 404, contains: []string{`"not_found"`}},
		{name: "unknown v1 route without token", method: "GET", url: "/v1/nope", headers: noToken, status: 401, contains: []string{`"unauthorized"`}},

		// POST /v1/events: expectations that fail write none of the append.
		{name: "expect a stale version", method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":1}}`,
			status: 409, contains: []string{`"conflict"`, `"actual_version":2`}},
		{name: "a failed expectation writes none of the append", method: "POST", url: "/v1/events",
			body:   `{"events":[{"stream":"stock.1","type":"stock.reserved"},{"stream":"orders.1","type":"orders.paid"}],"expect":{"orders.1":0}}`,
			status: 409, contains: []string{`"stream":"orders.1"`}},

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
		// A 405 lists the methods allowed; a 401 names the scheme.
		{name: "method not allowed lists allowed", method: "DELETE", url: "/v1/events", status: 405, header: map[string]string{"Allow": "GET, HEAD, POST"}},
		{name: "unauthorized names the scheme", method: "GET", url: "/v1/events", headers: noToken, status: 401, header: map[string]string{"WWW-Authenticate": `Bearer realm="fazt"`}},

		// GET /v1/streams/{stream}.
		{name: "read stream", method: "GET", url: "/v1/streams/orders.1", status: 200,
			contains: []string{`"stream":"orders.1"`, `"type":"orders.created"`, `"type":"orders.paid","schema":1`, `"version":2`}},
		{name: "read stream from a version", method: "GET", url: "/v1/streams/orders.1?from=2&limit=5", status: 200,
			contains: []string{`"version":2`}},
		{name: "read stream past its end", method: "GET", url: "/v1/streams/orders.1?from=3", status: 200,
			contains: []string{`"events":[]`}},
		{name: "read missing stream", method: "GET", url: "/v1/streams/orders.2", status: 404, contains: []string{`"not_found"`, "orders.2"}},
		{name: "read stream with bad name", method: "GET", url: "/v1/streams/orders", status: 400, contains: []string{`"invalid"`}},
		{name: "read stream with escaped bad name", method: "GET", url: "/v1/streams/orders.%2A", status: 400, contains: []string{`"invalid"`}},
		{name: "read stream from=abc", method: "GET", url: "/v1/streams/orders.1?from=abc", status: 400, contains: []string{"from=", "not a non-negative integer"}},
		{name: "read stream from=-1", method: "GET", url: "/v1/streams/orders.1?from=-1", status: 400, contains: []string{"from="}},
		{name: "read stream limit=0", method: "GET", url: "/v1/streams/orders.1?limit=0", status: 400, contains: []string{"limit=0", "1 to 1000"}},
		{name: "read stream limit=1001", method: "GET", url: "/v1/streams/orders.1?limit=1001", status: 400, contains: []string{"limit=1001"}},
		{name: "read stream limit=1e3", method: "GET", url: "/v1/streams/orders.1?limit=1e3", status: 400, contains: []string{"limit="}},
		{name: "read stream twice from", method: "GET", url: "/v1/streams/orders.1?from=1&from=2", status: 400, contains: []string{"from is given 2 times"}},
		{name: "read stream unknown parameter", method: "GET", url: "/v1/streams/orders.1?limt=5", status: 400, contains: []string{`unknown query parameter \"limt\"`}},
		{name: "read stream without token", method: "GET", url: "/v1/streams/orders.1", headers: noToken, status: 401},
		{name: "read stream wrong method", method: "POST", url: "/v1/streams/orders.1", body: oneEvent, status: 405, contains: []string{`"method_not_allowed"`}},
		{name: "streams without a name", method: "GET", url: "/v1/streams/", status: 404},

		// GET /v1/events.
		{name: "list by type", method: "GET", url: "/v1/events?type=orders.paid&type=stock.reserved", status: 200,
			contains: []string{`"orders.paid"`, `"stock.reserved"`}},
		{name: "list by category", method: "GET", url: "/v1/events?category=stock&limit=10", status: 200,
			contains: []string{`"stock.reserved"`, `"last_seq":3`}},
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
}
