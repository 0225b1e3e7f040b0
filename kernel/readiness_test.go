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

// Readiness covers the log and the critical projections: a halted
// projection that is not critical shows in status, doctor and metrics
// and leaves the node in the load balancer; a halted critical one takes
// it out, saying why.
func TestReadinessCritical(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	k.RegisterEvent("t.hit", 1, []byte(`{"type":"object"}`))
	soft := counter("t.hit", "t.soft") // "counts", not critical
	hard := counter("t.hit", "t.hard")
	hard.Name, hard.Critical = "ledger", true
	for _, p := range []projections.Projection{soft, hard} {
		if err := k.RegisterProjection(p); err != nil {
			t.Fatal(err)
		}
	}
	open(t, k)
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := k.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if status, body, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK || body != `{"status":"ok"}`+"\n" {
		t.Fatalf("readyz at start: %d %q", status, body)
	}
	halt := func(stream, name string) uint64 {
		t.Helper()
		res, err := k.Append(ctx, []eventlog.Event{{Stream: stream, Type: "t.hit", Data: []byte(`{}`)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Projections().WaitFor(wctx, name, res.LastSeq); !errors.Is(err, projections.ErrHalted) {
			t.Fatalf("%s: %v; want it halted", name, err)
		}
		return res.LastSeq
	}
	metric := func(want string) {
		t.Helper()
		status, body, _ := call(t, k, "GET", "/metrics", k.Token, "")
		if status != http.StatusOK || !strings.Contains(body, "\n"+want+"\n") {
			t.Fatalf("metrics have no %q", want)
		}
	}

	// A poisoned event halts the projection that is not critical.
	seq := halt("t.soft", "counts")
	status, body, _ := call(t, k, "GET", "/readyz", "", "")
	if status != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"degraded":["counts (halted at seq %d, not critical`, seq)) {
		t.Fatalf("readyz with a halted projection that is not critical: %d %s", status, body)
	}
	status, body, _ = call(t, k, "GET", "/v1/projections/counts", k.Token, "")
	var st projections.Status
	if status != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil || st.Halted == nil || st.Halted.Seq != seq || st.Critical {
		t.Fatalf("status: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "GET", "/v1/doctor", k.Token, ""); status != http.StatusOK ||
		!strings.Contains(body, `"name":"projection counts","status":"fail"`) || !strings.Contains(body, "not critical: the node stays ready") {
		t.Fatalf("doctor: %d %s", status, body)
	}
	metric(`fazt_projection_halted{projection="counts"} 1`)
	metric(`fazt_projection_critical{projection="counts"} 0`)
	metric(`fazt_projection_critical{projection="ledger"} 1`)
	metric("fazt_ready 1")

	// A poisoned event halts the critical one: the node is not ready.
	seq = halt("t.hard", "ledger")
	status, body, _ = call(t, k, "GET", "/readyz", "", "")
	var rd struct {
		Status, Reason string
		Projections    []string
	}
	if status != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &rd) != nil || rd.Status != "halted" ||
		!strings.Contains(rd.Reason, "critical projection is halted") || len(rd.Projections) != 1 ||
		rd.Projections[0] != fmt.Sprintf("ledger (halted at seq %d: cannot count t.hard)", seq) {
		t.Fatalf("readyz with a halted critical projection: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "GET", "/v1/doctor", k.Token, ""); status != http.StatusOK ||
		!strings.Contains(body, "critical: the node is not ready until it runs again") {
		t.Fatalf("doctor: %d %s", status, body)
	}
	metric("fazt_ready 0")

	// Skipping the event brings the node back.
	if status, body, _ := call(t, k, "POST", "/v1/projections/ledger/skip", k.Token, fmt.Sprintf(`{"seq":%d}`, seq)); status != http.StatusOK {
		t.Fatalf("skip: %d %s", status, body)
	}
	if status, body, _ := call(t, k, "GET", "/readyz", "", ""); status != http.StatusOK {
		t.Fatalf("readyz after the skip: %d %s", status, body)
	}
}
