package kernel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// Records in the kernel's categories that it would never write, put in
// the log around it (by a binary from before the categories were
// reserved, or a writable NATS client), never stop a start: the kernel
// opens, serves, and doctor, GET /v1/schemas and /metrics name them.
func TestStartSurvivesBadLogContent(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	build := func() *kernel.Kernel {
		k := newKernel(t, dir, nil)
		k.RegisterEvent("mail.requested", 1, []byte(`{"type":"object"}`))
		k.RegisterReactor(reactor.Reactor{
			Name:      "mailer",
			Filter:    eventlog.Filter{Categories: []string{"mail"}},
			Handle:    func(context.Context, eventlog.Event, string) error { return nil },
			FetchWait: 100 * time.Millisecond,
		})
		return k
	}
	// A first start registers t.note at run time.
	k := build()
	if err := k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if status, resp, _ := call(t, k, "POST", "/v1/schemas/t.note", k.Token, `{"type":"object","properties":{"n":{"type":"integer"}}}`); status != http.StatusCreated {
		t.Fatalf("register: %d %s", status, resp)
	}
	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Around the kernel: the log without its validation or reservations,
	// and raw messages through a writable listener.
	l := eventlogtest.OpenDir(t, dir, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	deep := `{"type":"object","properties":{"a":` + strings.Repeat(`{"type":"object","properties":{"a":`, 2400) + `{}` + strings.Repeat(`}}`, 2400) + `}}`
	var seqs []uint64
	for _, e := range []eventlog.Event{
		// Not a compatible extension of version 1: before, every later
		// start failed with "not a compatible extension".
		{Stream: "schemas.t.note", Type: "schemas.registered", Data: []byte(`{"type":"t.note","version":2,"schema":{"type":"object","properties":{"n":{"type":"string"}}}}`)},
		{Stream: "schemas.t.junk", Type: "schemas.registered", Data: []byte(`[1]`)},
		{Stream: "schemas.t.deep", Type: "schemas.registered", Data: []byte(`{"type":"t.deep","version":1,"schema":` + deep + `}`)},
		{Stream: "reactors.mailer", Type: "reactors.event_parked", Data: []byte(`{"reactor":"mailer","seq":"not a number"}`)},
	} {
		res, err := l.Append(ctx, []eventlog.Event{e})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, res.LastSeq)
	}
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{eventlog.SubjectOf("schemas.t.raw"), eventlog.SubjectOf("reactors.mailer")} {
		m, err := nc.Request(subject, []byte(`{}`), 5*time.Second)
		var ack struct{ Seq uint64 }
		if err != nil || json.Unmarshal(m.Data, &ack) != nil || ack.Seq == 0 {
			t.Fatalf("raw publish on %s: %v", subject, err)
		}
		seqs = append(seqs, ack.Seq)
	}
	nc.Close()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The real kernel starts and serves.
	k = build()
	open(t, k)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := k.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if status, resp, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK {
		t.Fatalf("readyz: %d %s", status, resp)
	}
	if status, resp, _ := call(t, k, "POST", "/v1/events", k.Token, `{"events":[{"stream":"t.1","type":"t.note","data":{"n":1}}]}`); status != http.StatusOK {
		t.Fatalf("append of the type's good version: %d %s", status, resp)
	}
	if status, resp, _ := call(t, k, "POST", "/v1/events", k.Token, `{"events":[{"stream":"t.1","type":"t.note","schema":2,"data":{"n":"x"}}]}`); status != http.StatusBadRequest {
		t.Fatalf("append of the skipped version: %d %s; want 400", status, resp)
	}

	// Doctor names every skipped record.
	status, resp, _ := call(t, k, "GET", "/v1/doctor", k.Token, "")
	var doc struct{ Checks []kernel.Check }
	if status != http.StatusOK || json.Unmarshal([]byte(resp), &doc) != nil {
		t.Fatalf("doctor: %d %s", status, resp)
	}
	checks := map[string]kernel.Check{}
	for _, c := range doc.Checks {
		checks[c.Name] = c
	}
	c := checks["schema registrations"]
	if c.Status != kernel.CheckWarn || !strings.Contains(c.Detail, "4 records in the log were skipped") || !strings.Contains(c.Fix, "fazt schema register") {
		t.Fatalf("schema check: %+v", c)
	}
	for _, want := range []string{
		fmt.Sprintf("seq %d (t.note version 2): event type \"t.note\": schema version 2 is not a compatible extension", seqs[0]),
		fmt.Sprintf("seq %d (stream schemas.t.junk): not a schema registration", seqs[1]),
		fmt.Sprintf("seq %d (t.deep version 1): event type \"t.deep\": schema version 1 nests objects and arrays more than 64 levels deep (MaxSchemaDepth)", seqs[2]),
		fmt.Sprintf("seq %d (stream schemas.t.raw): not an event: bad or missing id, type, version", seqs[4]),
	} {
		if !strings.Contains(c.Detail, want) {
			t.Errorf("schema check does not say %q:\n%s", want, c.Detail)
		}
	}
	if c := checks["reactor mailer"]; c.Status != kernel.CheckWarn || !strings.Contains(c.Detail, "2 records of its parked events cannot be read") {
		t.Errorf("reactor check: %+v", c)
	}

	// GET /v1/schemas shows the types' status.
	status, resp, _ = call(t, k, "GET", "/v1/schemas", k.Token, "")
	var list struct {
		Types   []kernel.SchemaInfo
		Skipped []json.RawMessage
	}
	if status != http.StatusOK || json.Unmarshal([]byte(resp), &list) != nil || len(list.Skipped) != 4 {
		t.Fatalf("schemas: %d %s", status, resp)
	}
	infos := map[string]kernel.SchemaInfo{}
	for _, i := range list.Types {
		infos[i.Type] = i
	}
	if i := infos["t.note"]; i.Status != "skipped" || i.Latest != 1 || len(i.Skipped) != 1 || i.Skipped[0].Seq != seqs[0] {
		t.Errorf("t.note: %+v", i)
	}
	if i := infos["t.deep"]; i.Status != "skipped" || i.Latest != 0 || len(i.Skipped) != 1 {
		t.Errorf("t.deep: %+v", i)
	}
	if i := infos["mail.requested"]; i.Status != "" || len(i.Skipped) != 0 {
		t.Errorf("mail.requested: %+v", i)
	}
	if status, resp, _ := call(t, k, "GET", "/v1/schemas/t.junk", k.Token, ""); status != http.StatusOK || !strings.Contains(resp, `"status":"skipped"`) {
		t.Errorf("a type only skipped records name: %d %s", status, resp)
	}

	// Metrics count them.
	status, resp, _ = call(t, k, "GET", "/metrics", k.Token, "")
	for _, want := range []string{"\nfazt_schema_registrations_skipped 4\n", "\nfazt_reactor_records_unreadable{reactor=\"mailer\"} 2\n", "\nfazt_ready 1\n"} {
		if status != http.StatusOK || !strings.Contains(resp, want) {
			t.Errorf("metrics do not have %q", strings.TrimSpace(want))
		}
	}

	// The type goes on from its last good version.
	if status, resp, _ := call(t, k, "POST", "/v1/schemas/t.note", k.Token, `{"type":"object","properties":{"n":{"type":"integer"},"m":{"type":"string"}}}`); status != http.StatusCreated || !strings.Contains(resp, `"version":2`) {
		t.Fatalf("register after a skipped version: %d %s", status, resp)
	}
}
