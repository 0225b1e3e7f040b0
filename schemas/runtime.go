package schemas

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/fazt-sh/fazt/eventlog"
)

// Event types can also be registered at run time, through the API, by
// whoever runs the server. Such a registration is itself an event in the
// log (type TypeRegistered, stream "schemas.<type>"), so the registry is
// rebuilt from the log at start like any read model, and the log's own
// expectation on that stream numbers the versions without races.

// TypeRegistered is the kernel's event recording a run-time registration.
const TypeRegistered = "schemas.registered"

const registeredSchema = `{
  "type": "object",
  "properties": {
    "type": {"type": "string", "description": "the event type registered"},
    "version": {"type": "integer", "minimum": 1},
    "schema": {"type": "object", "description": "the JSON Schema of that version"}
  },
  "required": ["type", "version", "schema"]
}`

// RegisterKernelTypes registers the event types the kernel itself writes.
func RegisterKernelTypes(r *Registry) error {
	return r.Register(TypeRegistered, 1, []byte(registeredSchema))
}

// registration is the data of a TypeRegistered event.
type registration struct {
	Type    string          `json:"type"`
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema"`
}

// RegistrationStream is the stream holding a type's run-time registrations.
func RegistrationStream(typ string) string { return "schemas." + typ }

// RegisterAtRuntime checks schema as the next version of typ, appends the
// registration to the log and applies it. A type the binary registers in
// code cannot be changed here. Errors: ErrInvalid (bad type or schema),
// ErrIncompatible (not a compatible extension), ErrConflict (another
// registration of the same type won the race; retry).
func (r *Registry) RegisterAtRuntime(ctx context.Context, log *eventlog.Log, typ string, schema []byte) (int, error) {
	if err := eventlog.ValidateType(typ); err != nil {
		return 0, err
	}
	if r.inCode(typ) {
		return 0, fmt.Errorf("%w: event type %s is declared by the fazt binary itself; change it in code", eventlog.ErrInvalid, typ)
	}
	latest, _ := r.Latest(typ)
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
	stream := RegistrationStream(typ)
	_, err := log.Append(ctx, []eventlog.Event{{Stream: stream, Type: TypeRegistered, Data: data}}, eventlog.ExpectVersion(stream, uint64(latest)))
	if err != nil {
		return 0, err
	}
	if err := r.register(typ, version, schema, false); err != nil {
		return 0, fmt.Errorf("registered in the log but not applied: %w", err)
	}
	return version, nil
}

// Load applies every run-time registration in the log, in order.
func (r *Registry) Load(ctx context.Context, log *eventlog.Log) error {
	var after uint64
	for {
		p, err := log.Read(ctx, after, 1000, eventlog.Filter{Types: []string{TypeRegistered}, Categories: []string{"schemas"}})
		if err != nil {
			return fmt.Errorf("load schema registrations: %w", err)
		}
		for _, e := range p.Events {
			if e.Malformed != nil {
				continue // not a registration; the log reports it
			}
			var reg registration
			if err := json.Unmarshal(e.Data, &reg); err != nil {
				return fmt.Errorf("schema registration at seq %d: %w", e.Seq, err)
			}
			if latest, _ := r.Latest(reg.Type); reg.Version <= latest {
				continue // already known (the binary may have it in code now)
			}
			if err := r.register(reg.Type, reg.Version, reg.Schema, false); err != nil {
				return fmt.Errorf("schema registration at seq %d (%s version %d): %w", e.Seq, reg.Type, reg.Version, err)
			}
		}
		if len(p.Events) == 0 || p.LastSeq == after {
			return nil
		}
		after = p.LastSeq
	}
}
