package kernel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
)

// hostileKernel opens a kernel whose NATS listener others may publish
// into, with a counter projection, and a connection that writes around
// the kernel.
func hostileKernel(t *testing.T) (*kernel.Kernel, *nats.Conn) {
	t.Helper()
	k := newKernel(t, t.TempDir(), func(c *kernel.Kernel) { c.NATSListen, c.NATSWritable = "127.0.0.1:0", true })
	if err := k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if err := k.RegisterProjection(counter("t.hit", "")); err != nil {
		t.Fatal(err)
	}
	open(t, k)
	nc, err := nats.Connect(k.Log().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return k, nc
}

func publishAround(t *testing.T, nc *nats.Conn, subject string, h nats.Header, data string) uint64 {
	return eventlogtest.PublishAround(t, nc, subject, h, data)
}

func appendHit(t *testing.T, k *kernel.Kernel, stream string) eventlog.Result {
	t.Helper()
	return postEvents(t, k, `{"events":[{"stream":"`+stream+`","type":"t.hit","data":{}}]}`)
}

// A message republished with the headers JetStream adds to direct gets
// (Nats-Sequence: 1, a subject, a time) is an event at its true
// sequence: the projection folds it, its checkpoint only moves forward,
// and the kernel becomes ready.
func TestRepublishedHeadersDoNotMoveCheckpoints(t *testing.T) {
	k, nc := hostileKernel(t)
	appendHit(t, k, "t.1")
	appendHit(t, k, "t.2")
	h := nats.Header{"Fazt-Id": {ulid.Make().String()}, "Fazt-Type": {"t.hit"}, "Fazt-Version": {"1"},
		"Nats-Sequence": {"1"}, "Nats-Subject": {eventlog.SubjectOf("t.1")}, "Nats-Time-Stamp": {"2001-01-01T00:00:00Z"}}
	seq := publishAround(t, nc, eventlog.SubjectOf("t.3"), h, `{}`)
	last := appendHit(t, k, "t.4").LastSeq

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := k.Projections().WaitFor(ctx, "counts", last); err != nil {
		t.Fatalf("projection did not reach seq %d: %v (%+v)", last, err, k.Projections().Status("counts"))
	}
	if err := k.WaitReady(ctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	if status, body, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK {
		t.Fatalf("readyz: %d %s", status, body)
	}
	res, err := k.Query(ctx, "counts", "SELECT stream, n FROM counts ORDER BY stream", nil, projections.QueryOptions{})
	if err != nil || len(res.Rows) != 4 || res.Rows[2][0] != "t.3" {
		t.Fatalf("counts: %v %v", res.Rows, err)
	}
	if st := k.Projections().Status("counts"); st.Seq != last || st.Halted != nil {
		t.Fatalf("status: %+v", st)
	}
	// Readers give it its true sequence and subject.
	_, body, _ := call(t, k, "GET", "/v1/streams/t.3", k.Token, "")
	if !strings.Contains(body, `"seq":`+strconv.FormatUint(seq, 10)) || !strings.Contains(body, `"stream":"t.3"`) {
		t.Fatalf("stream t.3: %s", body)
	}
}

// A message that is not a valid event is shown by every reader of the
// API as a malformed entry, and paged past: reads across it, the stream
// it is in, the live stream; appends to its stream go on; doctor and
// metrics count it.
func TestAPIPagesPastMalformed(t *testing.T) {
	k, nc := hostileKernel(t)
	appendHit(t, k, "t.1")
	h := nats.Header{"Fazt-Id": {ulid.Make().String()}, "Fazt-Type": {"t.hit"}, "Fazt-Version": {"2"}}
	bad := publishAround(t, nc, eventlog.SubjectOf("t.1"), h, "{not json")
	res := appendHit(t, k, "t.1")
	if res.Events[0].Version != 2 {
		t.Fatalf("append after the malformed message: %+v", res)
	}
	last := res.LastSeq

	// GET /v1/events across it.
	status, body, _ := call(t, k, "GET", "/v1/events?after=0", k.Token, "")
	var page struct {
		Events  []eventlog.Event `json:"events"`
		LastSeq uint64           `json:"last_seq"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil || len(page.Events) != int(last) || page.LastSeq != last {
		t.Fatalf("events: %d %s", status, body)
	}
	m := page.Events[bad-1]
	if m.Malformed == nil || string(m.Malformed.Data) != "{not json" || m.Malformed.Subject != eventlog.SubjectOf("t.1") ||
		!strings.Contains(m.Malformed.Reason, "data") || !strings.Contains(body, `"data_base64":"e25vdCBqc29u"`) {
		t.Fatalf("malformed entry: %+v in %s", m, body)
	}
	// GET /v1/streams/t.1.
	status, body, _ = call(t, k, "GET", "/v1/streams/t.1", k.Token, "")
	var sp struct {
		Events []eventlog.Event `json:"events"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &sp) != nil || len(sp.Events) != 3 || sp.Events[1].Malformed == nil || sp.Events[2].Version != 2 {
		t.Fatalf("stream: %d %s", status, body)
	}
	// The live stream.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+k.ListenAddr()+"/v1/events/live?after=0", nil)
	req.Header.Set("Authorization", "Bearer "+k.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var kinds []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && len(kinds) < int(last) {
		if v, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			kinds = append(kinds, v)
		}
	}
	if strings.Join(kinds, ",") != "t.hit,malformed,t.hit" {
		t.Fatalf("live stream events: %v", kinds)
	}
	cancel()

	// Doctor and metrics count it.
	_, body, _ = call(t, k, "GET", "/v1/doctor", k.Token, "")
	if !strings.Contains(body, "written around the kernel") || !strings.Contains(body, "seq "+strconv.FormatUint(bad, 10)) {
		t.Fatalf("doctor: %s", body)
	}
	_, body, _ = call(t, k, "GET", "/metrics", k.Token, "")
	if !strings.Contains(body, "fazt_log_malformed_messages_total 1") {
		t.Fatalf("metrics lack the malformed count")
	}
}

// A position whose successor would overflow is refused, never wrapped to
// the start of the log.
func TestAfterOverflowIsRefused(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	open(t, k)
	const max = "18446744073709551615"
	for _, tc := range []struct {
		path, lastID string
	}{
		{"/v1/events?after=" + max, ""},
		{"/v1/events/live?after=" + max, ""},
		{"/v1/events/live", max},
		{"/v1/events?after=18446744073709551616", ""},
	} {
		req, _ := http.NewRequest("GET", "http://"+k.ListenAddr()+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+k.Token)
		if tc.lastID != "" {
			req.Header.Set("Last-Event-ID", tc.lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s (Last-Event-ID %q): %d, want 400", tc.path, tc.lastID, resp.StatusCode)
		}
	}
	if status, body, _ := call(t, k, "GET", "/v1/events?after=18446744073709551614", k.Token, ""); status != http.StatusOK || !strings.Contains(body, `"events":[]`) {
		t.Fatalf("after max-1: %d %s", status, body)
	}
}
