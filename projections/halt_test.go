package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/projections"
)

// publishPoison publishes a message that is not an event on subject,
// around the log, and returns its sequence.
func publishPoison(tb testing.TB, nc *nats.Conn, subject string) uint64 {
	return eventlogtest.PublishAround(tb, nc, subject, nil, `{"x":1}`)
}

func TestPoisonMessage(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	dir := t.TempDir()
	first := appendAll(t, l, hits("counter", 5, 2)...)
	all := counter("all", eventlog.Filter{})
	r := openRunner(t, l, runnerOpts{dir: dir},
		all,
		counter("bytype", eventlog.Filter{Types: []string{"counter.hit"}}),
		counter("bycat", eventlog.Filter{Categories: []string{"counter"}}),
		counter("twocats", eventlog.Filter{Categories: []string{"counter", "misc"}}),
	)
	waitFor(t, r, "all", first)

	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	poison := publishPoison(t, nc, eventlog.SubjectOf("poison.1"))
	last := appendAll(t, l, hits("counter", 5, 2)...)

	// A filter by other categories cannot match the message: it goes on.
	for _, name := range []string{"bycat", "twocats"} {
		waitFor(t, r, name, last)
		if got := total(counts(t, r, name)); got != 10 {
			t.Fatalf("%s: %d events counted, want 10", name, got)
		}
	}
	// Every other projection halts at the message, with a clear status.
	for _, name := range []string{"all", "bytype"} {
		s := waitStatus(t, r, name, "halt", func(s projections.Status) bool { return s.Halted != nil })
		if s.Halted.Seq != poison || s.Halted.Type != "" || s.Halted.EventID != "" || !strings.Contains(s.Halted.Error, "not a valid event") ||
			s.State != projections.StateHalted || s.Seq != poison-1 || s.Lag != last-(poison-1) {
			t.Fatalf("%s: status %s, want halted at %d", name, statusJSON(s), poison)
		}
		if got := total(counts(t, r, name)); got != 5 {
			t.Fatalf("%s: %d events counted before the halt, want 5", name, got)
		}
	}

	// Retry reads it again and halts again.
	if err := r.Retry("all"); err != nil {
		t.Fatal(err)
	}
	if s := waitStatus(t, r, "all", "halt after retry", func(s projections.Status) bool { return s.Halted != nil }); s.Halted.Seq != poison {
		t.Fatalf("after retry: %s", statusJSON(s))
	}

	// Skip records the decision in the log, then moves on.
	if err := r.Skip(ctx, "all", poison); err != nil {
		t.Fatal(err)
	}
	recs := skipRecords(t, l, "all")
	if len(recs) != 1 || recs[0]["seq"] != float64(poison) || recs[0]["projection"] != "all" || recs[0]["event_id"] != nil ||
		!strings.Contains(recs[0]["error"].(string), "not a valid event") {
		t.Fatalf("skip records: %v", recs)
	}
	tail, _ := l.LastSeq(ctx)
	waitFor(t, r, "all", tail)
	want := map[string]int{"k0": 6, "k1": 4, projections.TypeEventSkipped: 1}
	if got := counts(t, r, "all"); !maps.Equal(got, want) {
		t.Fatalf("all after skip: %v, want %v", got, want)
	}
	// The skip was for "all" only.
	if s := r.Status("bytype"); s.Halted == nil || s.Halted.Seq != poison {
		t.Fatalf("bytype: %s", statusJSON(s))
	}

	// A rebuild of the same version honours the recorded decision.
	hash := hashOf(t, r, "all", countersTable)
	if err := r.Rebuild(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, r, "all", "swap", func(s projections.Status) bool { return s.Rebuild == nil && strings.HasSuffix(s.File, "000002.db") })
	if s.Halted != nil {
		t.Fatalf("rebuild halted: %s", statusJSON(s))
	}
	waitFor(t, r, "all", tail)
	if got := hashOf(t, r, "all", countersTable); got != hash {
		t.Fatalf("rebuilt file differs: %v", counts(t, r, "all"))
	}
	// And so does a restart, which also keeps bytype halted where it was.
	closeRunner(t, r)
	var logs logBuffer
	r = openRunner(t, l, runnerOpts{dir: dir, logger: slog.New(slog.NewTextHandler(&logs, nil))},
		all, counter("bytype", eventlog.Filter{Types: []string{"counter.hit"}}))
	waitFor(t, r, "all", tail)
	if s := waitStatus(t, r, "bytype", "halt after restart", func(s projections.Status) bool { return s.Halted != nil }); s.Halted.Seq != poison {
		t.Fatalf("bytype after restart: %s", statusJSON(s))
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"projection halted\" projection=bytype") {
		t.Fatalf("the halt is not logged:\n%s", logs.String())
	}
	var he *projections.HaltedError
	if err := r.WaitFor(ctx, "bytype", tail); !errors.As(err, &he) || he.Halt.Seq != poison {
		t.Fatalf("WaitFor on a halted projection: %v", err)
	}
}

func TestPanickingApplyHalts(t *testing.T) {
	l := openLog(t)
	p := counter("panicky", eventlog.Filter{})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if countKey(e) == "k1" {
			var m map[string]int
			m["boom"]++ // a nil map write: a panic
		}
		return inner(ctx, tx, e)
	}
	last := appendAll(t, l, hits("p", 3, 3)...)
	r := openRunner(t, l, runnerOpts{}, p)
	s := waitStatus(t, r, "panicky", "halt", func(s projections.Status) bool { return s.Halted != nil })
	if s.Halted.Seq != last-1 || !strings.Contains(s.Halted.Error, "panic in Apply: assignment to entry in nil map") {
		t.Fatalf("status %s", statusJSON(s))
	}
}

// A skip recorded in the log whose checkpoint never moved (a crash right
// after Skip appended it) is found and applied at the next start; a
// record for another version is not.
func TestSkipRecordFoundAfterCrash(t *testing.T) {
	l := openLog(t)
	p := counter("picky", eventlog.Filter{Categories: []string{"t"}})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if countKey(e) == "bad" {
			return errors.New("bad event")
		}
		return inner(ctx, tx, e)
	}
	appendAll(t, l, hits("t", 3, 1)...)
	bad := appendAll(t, l, ev("t.1", "t.hit", map[string]string{"k": "bad"}))
	last := appendAll(t, l, hits("t", 3, 1)...)
	page, _ := l.Read(context.Background(), bad-1, 1, eventlog.Filter{})
	id := page.Events[0].ID
	record := func(version int) {
		b, _ := json.Marshal(map[string]any{"projection": "picky", "seq": bad, "event_id": id, "event_type": "t.hit", "error": "bad event", "version": version})
		appendAll(t, l, eventlog.Event{Stream: projections.SkipStream("picky"), Type: projections.TypeEventSkipped, Data: b})
	}

	record(2) // another version's decision
	dir := t.TempDir()
	r := openRunner(t, l, runnerOpts{dir: dir}, p)
	if s := waitStatus(t, r, "picky", "halt", func(s projections.Status) bool { return s.Halted != nil }); s.Halted.Seq != bad {
		t.Fatalf("status %s", statusJSON(s))
	}
	closeRunner(t, r)

	record(1)
	var logs logBuffer
	r = openRunner(t, l, runnerOpts{dir: dir, logger: slog.New(slog.NewTextHandler(&logs, nil))}, p)
	waitFor(t, r, "picky", last)
	if got := counts(t, r, "picky"); !maps.Equal(got, map[string]int{"k0": 6}) {
		t.Fatalf("counts %v", got)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="projection skipped an event, as recorded in the log" projection=picky seq=`+strconv.FormatUint(bad, 10)) {
		t.Fatalf("the skip is not logged:\n%s", logs.String())
	}
	if s := r.Status("picky"); s.Halted != nil {
		t.Fatalf("status %s", statusJSON(s))
	}
}
