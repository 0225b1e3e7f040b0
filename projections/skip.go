package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fazt-sh/fazt/eventlog"
)

// TypeEventSkipped is the event recording an operator's decision to skip
// one event in one projection (Runner.Skip). It is appended to the
// stream SkipStream(projection), at schema version 1
// (EventSkippedSchema). The kernel registers it.
const TypeEventSkipped = "projections.event_skipped"

// EventSkippedSchema is the JSON Schema of TypeEventSkipped, version 1.
// The committed schema ledger holds it: it never changes.
const EventSkippedSchema = `{
  "type": "object",
  "properties": {
    "projection": {"type": "string", "description": "the projection that skips the event"},
    "seq": {"type": "integer", "minimum": 1, "description": "the log sequence of the skipped event"},
    "event_id": {"type": "string", "description": "its ID; empty for a malformed message"},
    "event_type": {"type": "string", "description": "its type; empty for a malformed message"},
    "error": {"type": "string", "description": "why the projection halted there"},
    "version": {"type": "integer", "minimum": 1, "description": "the projection version the decision applies to"}
  },
  "required": ["projection", "seq"]
}`

// Category is the log category of the skip decisions. The kernel
// reserves it (eventlog.Log.Reserve) and gives the writer to the Runner
// (Runner.Writer): only Skip, which checks the projection is halted at
// that very event, records a decision; an ordinary append could
// otherwise make a projection pass over any event.
const Category = "projections"

// SkipStream is the stream holding a projection's skip decisions.
func SkipStream(projection string) string { return Category + "." + projection }

// skipRecord is the data of a TypeEventSkipped event.
type skipRecord struct {
	Projection string `json:"projection"`
	Seq        uint64 `json:"seq"`
	EventID    string `json:"event_id,omitempty"`
	EventType  string `json:"event_type,omitempty"`
	Error      string `json:"error,omitempty"`
	Version    int    `json:"version,omitempty"`
}

// maxSkipError bounds the error text copied into a skip record.
const maxSkipError = 4096

// Skip skips exactly one event: the one name is halted at, which must be
// seq. The decision is appended to the log first (TypeEventSkipped on
// SkipStream(name)), then the projection resumes; it moves past the
// event only after it has read that record back from the log, so a
// crash in between halts again and finds the record, never losing or
// repeating the decision. A rebuild of the same version skips the same
// event; a new version tries it again, except a malformed message, which
// no version can apply. Calling Skip again for a recorded decision
// appends nothing. Errors: ErrNotFound, ErrConflict (not halted at seq),
// and the log's append errors (ErrInvalid when the log validates events
// and TypeEventSkipped is not registered with EventSkippedSchema; or
// when the log reserves Category and Writer is not its writer).
func (r *Runner) Skip(ctx context.Context, name string, seq uint64) error {
	pr, err := r.lookup(name)
	if err != nil {
		return err
	}
	pr.opMu.Lock()
	defer pr.opMu.Unlock()
	pr.mu.Lock()
	var halt *Halt
	var version int
	for _, g := range []*gen{pr.cur, pr.next} {
		if g != nil && g.halt != nil && g.halt.Seq == seq {
			h := *g.halt
			halt, version = &h, g.version
		}
	}
	pr.mu.Unlock()
	if halt == nil {
		st := r.Status(name)
		where := "not halted"
		if st.Halted != nil {
			where = fmt.Sprintf("halted at seq %d", st.Halted.Seq)
		} else if st.Rebuild != nil && st.Rebuild.Halted != nil {
			where = fmt.Sprintf("rebuild halted at seq %d", st.Rebuild.Halted.Seq)
		}
		return fmt.Errorf("%w: projection %s is %s, not at seq %d; only the event a projection is halted at can be skipped", eventlog.ErrConflict, name, where, seq)
	}
	_, found, err := r.findSkip(ctx, name, seq, halt.EventID, version)
	if err != nil {
		return fmt.Errorf("projection %s: read skip decisions: %w", name, err)
	}
	if !found {
		msg := halt.Error
		if len(msg) > maxSkipError {
			msg = msg[:maxSkipError]
		}
		data, _ := json.Marshal(skipRecord{Projection: name, Seq: seq, EventID: halt.EventID, EventType: halt.Type, Error: msg, Version: version})
		appendSkip := r.log.Append
		if r.Writer != nil {
			appendSkip = r.Writer.Append
		}
		res, err := appendSkip(ctx, []eventlog.Event{{Stream: SkipStream(name), Type: TypeEventSkipped, Data: data}})
		if err != nil {
			return fmt.Errorf("projection %s: record the skip of seq %d: %w", name, seq, err)
		}
		r.Logger.Warn("projection event skipped by the operator", "projection", name, "seq", seq, "type", halt.Type,
			"event_id", halt.EventID, "err", halt.Error, "record_seq", res.LastSeq)
	}
	return r.Retry(name)
}

// findSkip looks in the log for a decision to skip the event at seq in
// name at version; it returns the record's sequence. Records it cannot
// read are passed over: they decide nothing.
func (r *Runner) findSkip(ctx context.Context, name string, seq uint64, id string, version int) (uint64, bool, error) {
	var found uint64
	stream := SkipStream(name)
	_, err := r.log.ReadEach(ctx, 0, eventlog.Filter{Categories: []string{Category}}, func(e eventlog.Event) bool {
		if e.Malformed != nil {
			r.Logger.Warn("a message among the skip decisions is not an event; passed over", "projection", name, "seq", e.Seq, "err", e.Err())
			return true
		}
		var rec skipRecord
		if e.Stream != stream || e.Type != TypeEventSkipped || json.Unmarshal(e.Data, &rec) != nil {
			return true
		}
		if rec.Projection == name && rec.Seq == seq && rec.EventID == id && (id == "" || rec.Version == version) {
			found = e.Seq
			return false
		}
		return true
	})
	return found, found != 0, err
}
