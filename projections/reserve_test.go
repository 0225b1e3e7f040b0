package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// With the category reserved, only the runner's writer records a skip:
// an ordinary append of a decision is refused. A message published
// around the kernel among the decisions does not keep the runner from
// reading them: the projection halts cleanly at its next failing event.
func TestSkipThroughReservedCategory(t *testing.T) {
	l := openLog(t, func(l *eventlog.Log) { l.Listen, l.ListenWritable = "127.0.0.1:0", true })
	ctx := context.Background()
	w, err := l.Reserve(projections.Category)
	if err != nil {
		t.Fatal(err)
	}
	p := counter("picky", eventlog.Filter{Categories: []string{"t"}})
	inner := p.Apply
	p.Apply = func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		if countKey(e) == "bad" {
			return errors.New("bad event")
		}
		return inner(ctx, tx, e)
	}
	appendAll(t, l, hits("t", 3, 1)...)
	bad1 := appendAll(t, l, ev("t.1", "t.hit", map[string]string{"k": "bad"}))
	bad2 := appendAll(t, l, ev("t.2", "t.hit", map[string]string{"k": "bad"}))
	r := openRunner(t, l, runnerOpts{}, p)
	waitStatus(t, r, "picky", "halt", func(s projections.Status) bool { return s.Halted != nil && s.Halted.Seq == bad1 })

	forged, _ := json.Marshal(map[string]any{"projection": "picky", "seq": bad1, "version": 1})
	if _, err := l.Append(ctx, []eventlog.Event{{Stream: projections.SkipStream("picky"), Type: projections.TypeEventSkipped, Data: forged}}); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("ordinary append of a skip decision: %v; want ErrInvalid", err)
	}
	// A runner without the writer cannot record the decision either.
	if err := r.Skip(ctx, "picky", bad1); !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("skip without the writer: %v; want ErrInvalid", err)
	}
	r.Writer = w
	if err := r.Skip(ctx, "picky", bad1); err != nil {
		t.Fatalf("skip through the writer: %v", err)
	}
	waitStatus(t, r, "picky", "halt at the second bad event", func(s projections.Status) bool { return s.Halted != nil && s.Halted.Seq == bad2 })

	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publishPoison(t, nc, eventlog.SubjectOf(projections.SkipStream("picky")))
	publishPoison(t, nc, eventlog.SubjectOf(projections.SkipStream("other")))
	if err := r.Retry("picky"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, r, "picky", "halt again", func(s projections.Status) bool { return s.Halted != nil || s.Error != "" })
	if s.Halted == nil || s.Halted.Seq != bad2 || s.Error != "" {
		t.Fatalf("after retry: %s; want halted at %d, the skip decisions read", statusJSON(s), bad2)
	}
}
