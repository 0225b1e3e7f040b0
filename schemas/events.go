package schemas

// Event schemas are validated with github.com/santhosh-tekuri/jsonschema/v6:
// it is maintained, pure Go, passes the official JSON-Schema-Test-Suite for
// every draft up to 2020-12, takes a loader of our choosing for $refs, and
// its errors carry the instance location (a JSON pointer) and the keyword
// of every failure, which is what makes our messages precise.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// eventPrinter renders the validator's messages (it needs one).
var eventPrinter = message.NewPrinter(language.English)

// eventMaxCauses bounds how many validation failures one message lists.
const eventMaxCauses = 3

// Registry holds the JSON Schema versions of every event type. It is safe
// for concurrent use; Validate fits eventlog.Log.Validate.
type Registry struct {
	mu    sync.RWMutex
	types map[string][]*eventSchema // versions[i] is version i+1
	code  map[string]bool           // types the binary registers itself
	// streams is the version of each registration stream seen
	// (runtime.go): RegisterAtRuntime expects it.
	streams map[string]uint64
	skipped []SkippedRegistration // what Load could not apply
}

// eventSchema is one registered version.
type eventSchema struct {
	raw      []byte             // as registered; the ledger records these bytes
	doc      any                // parsed, for the compatibility checker
	compiled *jsonschema.Schema // validates events of this version
	// tolerant is compiled without the "enum" keywords the checker lets
	// later versions extend; it validates events newer than the registry.
	tolerant *jsonschema.Schema
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{types: map[string][]*eventSchema{}, code: map[string]bool{}, streams: map[string]uint64{}}
}

// Register adds version of typ. Versions of a type are registered in
// order 1, 2, 3...; each after the first must be a compatible extension of
// the one before (see CheckCompatible). The schema is a JSON Schema
// (draft 2020-12 unless it says otherwise) with "type": "object" at the
// top and not "additionalProperties": false there.
func (r *Registry) Register(typ string, version int, schema []byte) error {
	return r.register(typ, version, schema, true)
}

// register adds a version; inCode says the binary declares it (Register)
// rather than a registration read from the log (runtime.go).
func (r *Registry) register(typ string, version int, schema []byte, inCode bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.prepare(typ, version, schema)
	if err != nil {
		return err
	}
	r.types[typ] = append(r.types[typ], s)
	if inCode {
		r.code[typ] = true
	}
	return nil
}

// check reports whether register would accept the version, changing
// nothing.
func (r *Registry) check(typ string, version int, schema []byte) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, err := r.prepare(typ, version, schema)
	return err
}

// inCode reports whether the binary registers typ itself.
func (r *Registry) inCode(typ string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.code[typ]
}

// InCode reports whether the binary declares typ itself (Register), as
// opposed to a registration made at run time and read from the log.
func (r *Registry) InCode(typ string) bool { return r.inCode(typ) }

// prepare checks and compiles the next version of typ; r.mu is held.
func (r *Registry) prepare(typ string, version int, schema []byte) (*eventSchema, error) {
	if err := eventlog.ValidateType(typ); err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, eventInvalidf("event type %q: schema version %d: versions start at 1", typ, version)
	}
	prev := r.types[typ]
	if version != len(prev)+1 {
		if version <= len(prev) {
			return nil, eventInvalidf("event type %q: schema version %d is already registered; the next version is %d", typ, version, len(prev)+1)
		}
		return nil, eventInvalidf("event type %q: schema version %d registered out of order; the next version is %d", typ, version, len(prev)+1)
	}
	name := fmt.Sprintf("schema version %d", version)
	doc, compiled, err := eventParse(typ, name, schema)
	if err != nil {
		return nil, err
	}
	if version > 1 {
		label := fmt.Sprintf("event type %q: schema version %d is not a compatible extension of version %d", typ, version, version-1)
		if err := eventCheck(label, prev[version-2].doc, doc); err != nil {
			return nil, err
		}
	}
	// A second copy, parsed again: eventStripEnums edits it in place.
	loose, _ := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	eventStripEnums(loose)
	tolerant, err := eventCompileDoc(typ, name+" without enums", loose)
	if err != nil {
		// Only a $ref pointing into an enum can get here; such a schema
		// gets no enum tolerance rather than no registration.
		tolerant = compiled
	}
	return &eventSchema{raw: bytes.Clone(schema), doc: doc, compiled: compiled, tolerant: tolerant}, nil
}

// Latest returns the newest registered version of typ.
func (r *Registry) Latest(typ string) (int, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := len(r.types[typ])
	return n, n > 0
}

// Types returns every registered event type, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ts := make([]string, 0, len(r.types))
	for t := range r.types {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

// Schema returns a copy of the schema registered as version of typ, byte
// for byte.
func (r *Registry) Schema(typ string, version int) ([]byte, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	vs := r.types[typ]
	if version < 1 || version > len(vs) {
		return nil, false
	}
	return bytes.Clone(vs[version-1].raw), true
}

// Validate checks e's data against the schema of its type and version
// (Schema 0 means 1). Errors wrap eventlog.ErrInvalid. Only registered
// versions are accepted: a binary writes only what it knows.
func (r *Registry) Validate(e *eventlog.Event) error {
	if e == nil {
		return eventInvalidf("no event")
	}
	vs, version, err := r.lookup(e)
	if err != nil {
		return err
	}
	if version > len(vs) {
		return eventInvalidf("event type %q has no schema version %d (%s)", e.Type, version, eventKnown(len(vs)))
	}
	return eventValidate(vs[version-1].compiled, e.Type, version, e.Data)
}

// Decode validates e's data and decodes it with encoding/json into v,
// ignoring fields v does not have. Events of any version decode, also
// versions newer than r knows (written by a newer binary, read after a
// rollback): those are validated against the newest schema r knows,
// which they satisfy because later versions only add optional properties,
// except for enum values added later, which are let through (so code must
// be ready for enum values it does not know, as for unknown fields).
//
// Errors wrap eventlog.ErrInvalid when the type is not registered or the
// data is invalid; an error of encoding/json (v does not fit valid data)
// is returned wrapped as is.
func Decode(r *Registry, e eventlog.Event, v any) error {
	if r == nil {
		return eventInvalidf("event type %q: no registry to decode with", e.Type)
	}
	vs, version, err := r.lookup(&e)
	if err != nil {
		return err
	}
	sch := vs[min(version, len(vs))-1].compiled
	if version > len(vs) {
		sch = vs[len(vs)-1].tolerant
	}
	if err := eventValidate(sch, e.Type, version, e.Data); err != nil {
		return err
	}
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("{}")
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("event type %q schema version %d: decode: %w", e.Type, version, err)
	}
	return nil
}

// lookup returns the versions of e's type and e's schema version (0 is 1).
func (r *Registry) lookup(e *eventlog.Event) ([]*eventSchema, int, error) {
	r.mu.RLock()
	vs := r.types[e.Type]
	r.mu.RUnlock()
	if len(vs) == 0 {
		return nil, 0, eventInvalidf("event type %q is not registered", e.Type)
	}
	version := e.Schema
	if version == 0 {
		version = 1
	}
	if version < 0 {
		return nil, 0, eventInvalidf("event type %q: schema version %d is negative", e.Type, version)
	}
	return vs, version, nil
}

func eventKnown(n int) string {
	if n == 1 {
		return "registered: version 1"
	}
	return fmt.Sprintf("registered: versions 1 to %d", n)
}

// eventValidate checks data (empty means {}) against sch and flattens the
// validator's tree of failures into one line.
func eventValidate(sch *jsonschema.Schema, typ string, version int, data json.RawMessage) error {
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return eventInvalidf("event type %q schema version %d: data is not valid JSON: %v", typ, version, err)
	}
	if ptr, num := eventBigNumber(inst, ""); ptr != "" {
		return eventInvalidf("event type %q schema version %d: data is invalid: %s: number %.40s %s", typ, version, ptr, num, eventNumberRule)
	}
	err = sch.Validate(inst)
	if err == nil {
		return nil
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return eventInvalidf("event type %q schema version %d: data is invalid: %s", typ, version, eventOneLine(err.Error()))
	}
	return eventInvalidf("event type %q schema version %d: data is invalid: %s", typ, version, eventFlatten(ve, false))
}

// eventFlatten lists the failures at the leaves of the validator's error
// tree as "/pointer: keyword: what", sorted, the first few only. Unless
// deep, anyOf, oneOf and the like are leaves: the failures of their
// branches would mislead about data.
func eventFlatten(ve *jsonschema.ValidationError, deep bool) string {
	var causes []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		through := deep
		switch e.ErrorKind.(type) {
		case *kind.Schema, *kind.Group, *kind.Reference, *kind.AllOf:
			through = true
		}
		if !through || len(e.Causes) == 0 {
			causes = append(causes, eventCause(e))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.Strings(causes)
	causes = slices.Compact(causes)
	if len(causes) > eventMaxCauses {
		n := len(causes) - eventMaxCauses
		causes = append(causes[:eventMaxCauses], fmt.Sprintf("and %d more", n))
	}
	return strings.Join(causes, "; ")
}

func eventCause(e *jsonschema.ValidationError) string {
	ptr := "/"
	if len(e.InstanceLocation) > 0 {
		var sb strings.Builder
		for _, tok := range e.InstanceLocation {
			sb.WriteString("/" + eventEscape(tok))
		}
		ptr = sb.String()
	}
	var what string
	switch k := e.ErrorKind.(type) {
	case *kind.Required: // the library quotes with ' ; we quote like Go
		what = "missing " + eventPlural(k.Missing, "property", "properties")
	case *kind.AdditionalProperties:
		what = "not allowed: " + eventPlural(k.Properties, "property", "properties")
	default:
		what = e.ErrorKind.LocalizedString(eventPrinter)
	}
	if kw := e.ErrorKind.KeywordPath(); len(kw) > 0 {
		what = strings.Join(kw, "/") + ": " + what
	}
	return ptr + ": " + eventOneLine(what)
}

func eventPlural(names []string, one, many string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	if len(q) == 1 {
		return one + " " + q[0]
	}
	return many + " " + strings.Join(q, ", ")
}

// eventOneLine folds a multi-line message into one line.
func eventOneLine(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "- "))
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// The validator compares numbers exactly (math/big): "1e999999" costs it
// tens of milliseconds and a number of 500,000 digits close to a second,
// so a small event could keep it busy for minutes. Such numbers do not
// fit the float64 that JSON numbers are in practice (RFC 8259, section
// 6), so they are refused before validation.
const (
	eventMaxNumberLen = 100
	eventMaxNumberExp = 400
	eventNumberRule   = "is out of range: numbers have at most 100 characters, an exponent within ±400 and fit a 64-bit float"
)

// eventBigNumber returns the JSON pointer and text of a number in v (as
// parsed with json.Number) that breaks eventNumberRule; the pointer is
// "" when there is none; of several it picks one deterministically.
func eventBigNumber(v any, ptr string) (string, string) {
	switch x := v.(type) {
	case json.Number:
		if !eventNumberOK(string(x)) {
			if ptr == "" {
				ptr = "/"
			}
			return ptr, string(x)
		}
	case map[string]any:
		var bad, num string
		for k, e := range x {
			if p, n := eventBigNumber(e, ptr+"/"+eventEscape(k)); p != "" && (bad == "" || p < bad) {
				bad, num = p, n
			}
		}
		return bad, num
	case []any:
		for i, e := range x {
			if p, n := eventBigNumber(e, ptr+"/"+strconv.Itoa(i)); p != "" {
				return p, n
			}
		}
	}
	return "", ""
}

func eventNumberOK(s string) bool {
	if len(s) > eventMaxNumberLen {
		return false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(s[i+1:])
		if err != nil || exp > eventMaxNumberExp || exp < -eventMaxNumberExp {
			return false
		}
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// eventParse parses and compiles a schema and applies the rules every
// event schema obeys, whatever its version. name says which schema it is
// in messages ("schema version 2", "old schema").
func eventParse(typ, name string, schema []byte) (any, *jsonschema.Schema, error) {
	if len(schema) > MaxSchemaBytes {
		return nil, nil, eventInvalidf("event type %q: %s is %d bytes; the limit is %d (MaxSchemaBytes)", typ, name, len(schema), MaxSchemaBytes)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, nil, eventInvalidf("event type %q: %s is not valid JSON: %v", typ, name, err)
	}
	if err := eventShape(typ, name, doc); err != nil {
		return nil, nil, err
	}
	if ptr, num := eventBigNumber(doc, ""); ptr != "" {
		return nil, nil, eventInvalidf("event type %q: %s: %s: number %.40s %s", typ, name, ptr, num, eventNumberRule)
	}
	obj, ok := doc.(map[string]any)
	if !ok || obj["type"] != "object" {
		return nil, nil, eventInvalidf("event type %q: %s must be a JSON object with \"type\": \"object\" at the top (event data is an object)", typ, name)
	}
	// A closed top level would freeze the type: older binaries validate
	// newer events against the newest schema they know, and newer events
	// may carry properties that a later version added.
	for _, kw := range []string{"additionalProperties", "unevaluatedProperties"} {
		if v, ok := obj[kw]; ok && v == false {
			return nil, nil, violation("event type %q: %s has %q false at the top level: binaries that know only this version could not read events of later versions, which may add properties; leave it out", typ, name, kw)
		}
	}
	compiled, err := eventCompileDoc(typ, name, doc)
	if err != nil {
		return nil, nil, err
	}
	if n := eventExpansion(compiled, MaxSchemaExpansion); n > MaxSchemaExpansion {
		return nil, nil, eventInvalidf("event type %q: %s expands to more than %d subschemas when its references are followed (MaxSchemaExpansion): validating one event would visit them all; refer to shared definitions fewer times", typ, name, MaxSchemaExpansion)
	}
	if why := eventRecursion(compiled); why != "" {
		return nil, nil, eventInvalidf("event type %q: %s %s", typ, name, why)
	}
	return doc, compiled, nil
}

// eventCompileDoc compiles a parsed schema; doc must not change after.
func eventCompileDoc(typ, name string, doc any) (*jsonschema.Schema, error) {
	// A loader that loads nothing (the library's default reads files): a
	// $ref outside the schema fails instead of reading files or the
	// network, so a schema means the same on every machine. Formats stay
	// annotations (the 2020-12 default): a stricter format check in a
	// later library release must never make events in the log invalid.
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(eventNoLoader{})
	c.UseRegexpEngine(eventRegexp)
	url := "https://events.fazt.invalid/" + typ + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, eventInvalidf("event type %q: %s: %s", typ, name, eventOneLine(err.Error()))
	}
	s, err := c.Compile(url)
	if err != nil {
		var sve *jsonschema.SchemaValidationError
		if errors.As(err, &sve) {
			if ve, ok := sve.Err.(*jsonschema.ValidationError); ok {
				return nil, eventInvalidf("event type %q: %s is not a valid JSON Schema: %s", typ, name, eventFlatten(ve, true))
			}
		}
		return nil, eventInvalidf("event type %q: %s does not compile: %s", typ, name, eventOneLine(err.Error()))
	}
	return s, nil
}

type eventNoLoader struct{}

func (eventNoLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("references outside the schema are not supported; put the definition under \"$defs\"")
}

// eventInvalidf returns an error that wraps eventlog.ErrInvalid.
func eventInvalidf(format string, args ...any) error {
	return &eventInvalidError{msg: fmt.Sprintf(format, args...)}
}

type eventInvalidError struct{ msg string }

func (e *eventInvalidError) Error() string        { return e.msg }
func (e *eventInvalidError) Is(target error) bool { return target == eventlog.ErrInvalid }
