package schemas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/fazt-sh/fazt/eventlog"
)

// Event types can also be registered at run time, through the API, by
// whoever runs the server. Such a registration is itself an event in the
// log (type TypeRegistered, stream "schemas.<type>"), so the registry is
// rebuilt from the log at start like any read model, and the log's own
// expectation on that stream numbers the versions without races.

// TypeRegistered is the kernel's event recording a run-time
// registration, at schema version 1 (RegisteredSchema). The kernel
// registers it.
const TypeRegistered = "schemas.registered"

// RegisteredSchema is the JSON Schema of TypeRegistered, version 1. The
// committed schema ledger holds it: it never changes.
const RegisteredSchema = `{
  "type": "object",
  "properties": {
    "type": {"type": "string", "description": "the event type registered"},
    "version": {"type": "integer", "minimum": 1},
    "schema": {"type": "object", "description": "the JSON Schema of that version"}
  },
  "required": ["type", "version", "schema"]
}`

// registration is the data of a TypeRegistered event.
type registration struct {
	Type    string          `json:"type"`
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema"`
}

// RegistrationStream is the stream holding a type's run-time registrations.
func RegistrationStream(typ string) string { return Category + "." + typ }

// Category is the log category of the registrations. The kernel
// reserves it (eventlog.Log.Reserve): only RegisterAtRuntime, which
// checks a schema before it records it, writes there.
const Category = "schemas"

// RegisterAtRuntime checks schema as the next version of typ, appends the
// registration to the log through w (the writer of the reserved category
// Category) and applies it. A type the binary registers in code cannot
// be changed here. Errors: ErrInvalid (bad type or schema, a schema over
// a limit such as MaxSchemaDepth, no writer), ErrIncompatible (not a
// compatible extension), ErrConflict (another registration of the same
// type won the race; Load, then retry).
func (r *Registry) RegisterAtRuntime(ctx context.Context, w *eventlog.Writer, typ string, schema []byte) (int, error) {
	if err := eventlog.ValidateType(typ); err != nil {
		return 0, err
	}
	if w == nil {
		return 0, fmt.Errorf("%w: event type %s: no writer for the %q category to record the registration with", eventlog.ErrInvalid, typ, Category)
	}
	if r.inCode(typ) {
		return 0, fmt.Errorf("%w: event type %s is declared by the fazt binary itself; change it in code", eventlog.ErrInvalid, typ)
	}
	stream := RegistrationStream(typ)
	r.mu.RLock()
	latest, at := len(r.types[typ]), r.streams[stream]
	r.mu.RUnlock()
	version := latest + 1
	// The schema is applied as the log records it, so Schema returns the
	// same bytes here as in a registry rebuilt by Load.
	schema = compactJSON(schema)
	if err := r.check(typ, version, schema); err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // json.Marshal would turn < > & in the schema into \u003c...
	if err := enc.Encode(registration{Type: typ, Version: version, Schema: schema}); err != nil {
		return 0, err
	}
	data := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	// The expectation is on the stream's version, which differs from the
	// schema version when Load skipped a bad registration in the stream.
	res, err := w.Append(ctx, []eventlog.Event{{Stream: stream, Type: TypeRegistered, Data: data}}, eventlog.ExpectVersion(stream, at))
	if err != nil {
		return 0, err
	}
	if err := r.register(typ, version, schema, false); err != nil {
		return 0, fmt.Errorf("registered in the log but not applied: %w", err)
	}
	r.sawStream(stream, res.Events[0].Version)
	return version, nil
}

// sawStream records that a registration stream is at least at version v.
func (r *Registry) sawStream(stream string, v uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.streams[stream] = max(r.streams[stream], v)
}

// SkippedRegistration is a record in the "schemas" category of the log
// that Load did not apply: a registration the kernel refuses today (not
// a compatible extension, a schema over a limit, malformed), or a record
// that is not a registration at all. Such records can only have been
// written around the kernel, or before it reserved the category.
type SkippedRegistration struct {
	Seq    uint64 `json:"seq"`
	Stream string `json:"stream"`
	// Type and Version are what the record registers, when readable.
	Type    string `json:"type,omitempty"`
	Version int    `json:"version,omitempty"`
	Error   string `json:"error"`
}

// Skipped returns the records Load skipped, by sequence.
func (r *Registry) Skipped() []SkippedRegistration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.skipped)
}

// skip records a skipped record once (Load may run again).
func (r *Registry) skip(s SkippedRegistration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, have := range r.skipped {
		if have.Seq == s.Seq {
			return
		}
	}
	r.skipped = append(r.skipped, s)
}

// Load applies every run-time registration in the log, in order. What
// it cannot apply it skips and lists in Skipped (nothing read from the
// log may stop a start): the types stay at their last good version, and
// RegisterAtRuntime registers the next one. It fails only when the log
// cannot be read. A version the registry knows already is passed over:
// the binary may declare the type in code now.
func (r *Registry) Load(ctx context.Context, log *eventlog.Log) error {
	var after uint64
	for {
		p, err := log.Read(ctx, after, 1000, eventlog.Filter{Categories: []string{Category}})
		for _, e := range p.Events {
			if e.Malformed != nil {
				// A message that is not an event: reported, then paged past.
				r.skip(SkippedRegistration{Seq: e.Seq, Stream: e.Stream, Error: "not an event: " + e.Malformed.Reason})
				continue
			}
			r.load(e)
		}
		if err != nil {
			return fmt.Errorf("load schema registrations: %w", err)
		}
		if len(p.Events) == 0 || p.LastSeq == after {
			return nil
		}
		after = p.LastSeq
	}
}

// load applies one record of the "schemas" category, or skips it.
func (r *Registry) load(e eventlog.Event) {
	r.sawStream(e.Stream, e.Version)
	bad := func(reg registration, format string, args ...any) {
		r.skip(SkippedRegistration{Seq: e.Seq, Stream: e.Stream, Type: reg.Type, Version: reg.Version, Error: fmt.Sprintf(format, args...)})
	}
	if e.Type != TypeRegistered {
		bad(registration{}, "event type %s is not %s: only the kernel writes the %q category", e.Type, TypeRegistered, Category)
		return
	}
	var reg registration
	if err := json.Unmarshal(e.Data, &reg); err != nil {
		bad(registration{}, "not a schema registration: %v", err)
		return
	}
	if RegistrationStream(reg.Type) != e.Stream {
		bad(reg, "registers type %q on stream %s, which belongs to another type", reg.Type, e.Stream)
		return
	}
	if latest, _ := r.Latest(reg.Type); reg.Version >= 1 && reg.Version <= latest {
		// Already known: declared in code now, or this very record
		// (Load again, or after RegisterAtRuntime).
		if have, _ := r.Schema(reg.Type, reg.Version); !r.inCode(reg.Type) && !bytes.Equal(have, reg.Schema) {
			bad(reg, "event type %q schema version %d is registered already, with another schema", reg.Type, reg.Version)
		}
		return
	}
	if err := r.register(reg.Type, reg.Version, reg.Schema, false); err != nil {
		bad(reg, "%v", err)
	}
}
