package kernel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// lastSeq is the log's newest sequence.
func lastSeq(t *testing.T, l *eventlog.Log) uint64 {
	t.Helper()
	seq, err := l.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// The kernel's categories are written only by its own code paths: a
// token holder cannot forge a schema registration (which would brick
// every later start), a skip decision or a parked record, nor write into
// those categories at all; the kernel's own registration and skip still
// work.
func TestReservedCategoriesOverHTTP(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`))
	k.RegisterProjection(counter("t.hit", "t.bad"))
	open(t, k)
	ctx := context.Background()
	res, err := k.Append(ctx, []eventlog.Event{{Stream: "t.good", Type: "t.hit", Data: []byte(`{}`)}, {Stream: "t.bad", Type: "t.hit", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	bad := res.LastSeq
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := k.Projections().WaitFor(wctx, "counts", bad); !errors.Is(err, projections.ErrHalted) {
		t.Fatalf("WaitFor: %v; want the projection halted", err)
	}

	one := func(stream, typ, data string) string {
		return fmt.Sprintf(`{"events":[{"stream":%q,"type":%q,"data":%s}]}`, stream, typ, data)
	}
	forged := map[string]string{
		"an incompatible schema registration": one("schemas.t.hit", "schemas.registered",
			`{"type":"t.hit","version":2,"schema":{"type":"object","properties":{"x":{"type":"string"}},"required":["x"]}}`),
		"a registration of a new type": one("schemas.t.new", "schemas.registered", `{"type":"t.new","version":1,"schema":{"type":"object"}}`),
		"a skip decision": one("projections.counts", "projections.event_skipped",
			fmt.Sprintf(`{"projection":"counts","seq":%d,"version":1}`, bad)),
		"a parked record":                 one("reactors.mailer", "reactors.event_parked", `{"reactor":"mailer","seq":1}`),
		"an event into schemas.x":         one("schemas.x", "t.hit", `{}`),
		"an event into projections.x":     one("projections.x", "t.hit", `{}`),
		"an event into reactors.x":        one("reactors.x", "t.hit", `{}`),
		"a kernel type on another stream": one("t.1", "projections.event_skipped", `{"projection":"counts","seq":1}`),
		"beside an ordinary event": `{"events":[{"stream":"t.1","type":"t.hit","data":{}},` +
			`{"stream":"schemas.t.hit","type":"schemas.registered","data":{"type":"t.hit","version":2,"schema":{"type":"object"}}}]}`,
	}
	before := lastSeq(t, k.Log())
	for name, body := range forged {
		status, resp, _ := call(t, k, "POST", "/v1/events", k.Token, body)
		if status != http.StatusBadRequest || !strings.Contains(resp, `"code":"invalid"`) || !strings.Contains(resp, "is reserved for the kernel") {
			t.Errorf("%s: %d %s; want 400 saying the category is reserved", name, status, resp)
		}
	}
	if got := lastSeq(t, k.Log()); got != before {
		t.Fatalf("refused appends wrote %d events", got-before)
	}
	for _, stream := range []string{"schemas.t.hit", "projections.counts", "reactors.mailer"} {
		if status, resp, _ := call(t, k, "GET", "/v1/streams/"+stream, k.Token, ""); status != http.StatusNotFound {
			t.Errorf("stream %s: %d %s; want nothing in it", stream, status, resp)
		}
	}
	// The SDK refuses the same, for verticals.
	_, err = k.Log().Append(ctx, []eventlog.Event{{Stream: "schemas.t.hit", Type: "schemas.registered",
		Data: []byte(`{"type":"t.hit","version":2,"schema":{"type":"object"}}`)}})
	if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "category schemas is reserved for the kernel") {
		t.Fatalf("SDK append of a registration: %v", err)
	}
	if _, err := k.Log().Reserve("schemas"); !errors.Is(err, eventlog.ErrConflict) {
		t.Fatalf("a vertical reserving the kernel's category: %v; want ErrConflict", err)
	}

	// The kernel's own paths write there, after their checks.
	if status, resp, _ := call(t, k, "POST", "/v1/schemas/t.new", k.Token, `{"type":"object","properties":{"n":{"type":"integer"}}}`); status != http.StatusCreated {
		t.Fatalf("register a schema: %d %s", status, resp)
	}
	if status, resp, _ := call(t, k, "POST", "/v1/schemas/t.new", k.Token, `{"type":"object","properties":{"n":{"type":"string"}}}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("register an incompatible schema: %d %s; want 422", status, resp)
	}
	if status, resp, _ := call(t, k, "POST", "/v1/projections/counts/skip", k.Token, fmt.Sprintf(`{"seq":%d}`, bad)); status != http.StatusOK {
		t.Fatalf("skip: %d %s", status, resp)
	}
	for stream, typ := range map[string]string{"schemas.t.new": "schemas.registered", "projections.counts": "projections.event_skipped"} {
		status, resp, _ := call(t, k, "GET", "/v1/streams/"+stream, k.Token, "")
		var out struct{ Events []eventlog.Event }
		if status != http.StatusOK || json.Unmarshal([]byte(resp), &out) != nil || len(out.Events) != 1 || out.Events[0].Type != typ {
			t.Fatalf("stream %s: %d %s; want one %s", stream, status, resp, typ)
		}
	}
}
