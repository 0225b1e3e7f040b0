package schemas

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fazt-sh/fazt/eventlog"
)

// CheckCompatible reports whether newSchema may follow oldSchema as the
// next version of event type typ. The rule, EDD's for events: a new
// version may only add optional properties (and enum values, and
// annotations such as "title" and "description"). Events of both
// versions then stay readable by binaries of either: new code reads old
// events, and old code (after a rollback) reads new ones (see Decode for
// enum values it does not know).
//
// Refused, with an error wrapping ErrIncompatible that names the property
// ("address.zip", "lines[].sku") and the change: removing or renaming a
// property; any change of "type" (widening too); making a property
// required, or adding a required one; making a required property
// optional; removing enum values, adding or removing "enum"; closing an
// object ("additionalProperties") or adding a property to a closed one;
// any change to a constraint (format, pattern, minimum, maxLength, ...);
// any change to a keyword the checker does not understand (oneOf, anyOf,
// allOf, not, $ref, $defs, if/then/else, ...); extending a subschema that
// a $ref or an anchor can reach (identical keywords elsewhere would judge
// the same data differently). The checker recurses into "properties" and
// "items" only, and compares numbers as written (1.0 is not 1).
//
// Either schema failing to parse or compile is an eventlog.ErrInvalid;
// one closed at the top level is an ErrEDDViolation (see Register).
func CheckCompatible(typ string, oldSchema, newSchema []byte) error {
	if err := eventlog.ValidateType(typ); err != nil {
		return err
	}
	oldDoc, _, err := eventParse(typ, "old schema", oldSchema)
	if err != nil {
		return err
	}
	newDoc, _, err := eventParse(typ, "new schema", newSchema)
	if err != nil {
		return err
	}
	return eventCheck(fmt.Sprintf("event type %q: the new schema is not a compatible extension of the old one", typ), oldDoc, newDoc)
}

// eventCheck compares two parsed schemas; label starts the message.
func eventCheck(label string, oldDoc, newDoc any) error {
	var c eventCompat
	eventReferenced(oldDoc, "", &c.referenced)
	eventReferenced(newDoc, "", &c.referenced)
	c.schema("", "", oldDoc, newDoc)
	if len(c.problems) == 0 {
		return nil
	}
	sort.Strings(c.problems) // by property, whatever order they were found in
	return incompatible("%s: %s", label, strings.Join(c.problems, "; "))
}

// Keywords by how the checker treats a change to them.
var (
	// Annotations: changes are free, validation ignores them.
	eventAnnotations = map[string]bool{
		"title": true, "description": true, "$comment": true, "examples": true,
		"deprecated": true, "readOnly": true, "writeOnly": true,
	}
	// Constraints: any change is refused. Judging whether a new value is
	// looser would be easy for some (maximum) and not for others
	// (pattern); one rule for all is simpler to trust.
	eventConstraints = map[string]bool{
		"format": true, "pattern": true, "const": true, "default": true,
		"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true,
		"multipleOf": true, "minLength": true, "maxLength": true,
		"minItems": true, "maxItems": true, "uniqueItems": true,
		"minProperties": true, "maxProperties": true, "minContains": true, "maxContains": true,
		"contentEncoding": true, "contentMediaType": true,
	}
	// Keywords that make an object closed to properties it does not list.
	eventClosers = []string{"additionalProperties", "unevaluatedProperties", "patternProperties", "propertyNames"}
)

// eventCompat collects the problems found.
type eventCompat struct {
	problems   []string
	referenced []string // pointers of subschemas a $ref or anchor can reach
}

// extended records an allowed extension (what) of the subschema at ptr,
// unless a $ref can reach it: then identical keywords elsewhere (a "not",
// an "if", a "oneOf" that refers to it) would judge the same data
// differently in the two versions, and the checker cannot follow that.
func (c *eventCompat) extended(path, ptr, what string) {
	if r, ok := eventReached(c.referenced, ptr); ok {
		c.add(path, "%s, but the schema refers to %q with \"$ref\" (or an anchor); extending a referenced schema is not supported by the compatibility checker", what, "#"+r)
	}
}

// eventReached reports which of the referenced pointers, if any, reaches
// the subschema at ptr (is ptr or one of its parents).
func eventReached(referenced []string, ptr string) (string, bool) {
	for _, r := range referenced {
		if r == "" || ptr == r || strings.HasPrefix(ptr, r+"/") {
			return r, true
		}
	}
	return "", false
}

func (c *eventCompat) add(path, format string, args ...any) {
	where := "the top level"
	if path != "" {
		where = fmt.Sprintf("property %q", path)
	}
	c.problems = append(c.problems, where+": "+fmt.Sprintf(format, args...))
}

// schema compares the subschemas at path (for messages) and ptr (the
// JSON pointer in the schema document).
func (c *eventCompat) schema(path, ptr string, oldS, newS any) {
	om, ok1 := oldS.(map[string]any)
	nm, ok2 := newS.(map[string]any)
	if !ok1 || !ok2 { // boolean schemas, or malformed
		if !reflect.DeepEqual(oldS, newS) {
			c.add(path, "schema changed from %s to %s", eventShow(oldS, true), eventShow(newS, true))
		}
		return
	}
	keys := make([]string, 0, len(om)+len(nm))
	for k := range om {
		keys = append(keys, k)
	}
	for k := range nm {
		if _, ok := om[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	objectDone := false
	for _, k := range keys {
		ov, oin := om[k]
		nv, nin := nm[k]
		switch {
		case eventAnnotations[k]:
		case k == "properties" || k == "required":
			if !objectDone {
				c.object(path, ptr, om, nm)
				objectDone = true
			}
		case k == "items":
			switch {
			case oin && nin:
				c.schema(path+"[]", ptr+"/items", ov, nv)
			case nin:
				c.add(path, "\"items\" added (%s): it constrains arrays that earlier events may hold", eventShow(nv, true))
			default:
				c.add(path, "\"items\" removed (was %s): binaries of the previous version would refuse items this version allows", eventShow(ov, true))
			}
		case k == "type":
			if !reflect.DeepEqual(eventTypes(ov, oin), eventTypes(nv, nin)) {
				c.add(path, "type changed from %s to %s (any change of type is refused, widening too)", eventShow(ov, oin), eventShow(nv, nin))
			}
		case k == "enum":
			c.enum(path, ptr, ov, oin, nv, nin)
		case k == "additionalProperties":
			if eventOpen(ov, oin) && eventOpen(nv, nin) || reflect.DeepEqual(ov, nv) {
				break
			}
			if eventOpen(ov, oin) && nv == false {
				c.add(path, "\"additionalProperties\" changed to false: events that carry properties this version does not list were valid before")
				break
			}
			c.add(path, "\"additionalProperties\" changed from %s to %s", eventShow(ov, oin), eventShow(nv, nin))
		case eventConstraints[k]:
			if oin != nin || !reflect.DeepEqual(ov, nv) {
				c.add(path, "%q changed from %s to %s (any change to it is refused for an existing property)", k, eventShow(ov, oin), eventShow(nv, nin))
			}
		default:
			if oin != nin || !reflect.DeepEqual(ov, nv) {
				c.add(path, "%q changed from %s to %s: changes to %q are not supported by the compatibility checker; add a new optional property or a new event type instead", k, eventShow(ov, oin), eventShow(nv, nin), k)
			}
		}
	}
}

// object compares "properties" and "required" of an object schema.
func (c *eventCompat) object(path, ptr string, om, nm map[string]any) {
	oprops, _ := om["properties"].(map[string]any)
	nprops, _ := nm["properties"].(map[string]any)
	oreq, nreq := eventSet(om["required"]), eventSet(nm["required"])
	for _, name := range eventSorted(oprops) {
		if nv, ok := nprops[name]; ok {
			c.schema(eventJoin(path, name), ptr+"/properties/"+eventEscape(name), oprops[name], nv)
		} else {
			c.add(eventJoin(path, name), "removed (a rename is a removal too): events already written carry it; keep it, and add new properties as optional")
		}
	}
	closer := ""
	for _, k := range eventClosers {
		if v, ok := om[k]; ok && !eventOpen(v, true) {
			closer = k
			break
		}
	}
	for _, name := range eventSorted(nprops) {
		if _, ok := oprops[name]; ok {
			continue
		}
		switch {
		case nreq[name]:
			c.add(eventJoin(path, name), "added as required: events written before this version do not have it; add it as optional")
		case closer != "":
			c.add(eventJoin(path, name), "added to an object that the previous version closes with %q: binaries that know only that version would refuse events that carry it", closer)
		default:
			c.extended(eventJoin(path, name), ptr, "added")
		}
	}
	for _, name := range eventSorted(oreq) {
		if !nreq[name] {
			c.add(eventJoin(path, name), "changed from required to optional: binaries that know only the previous version would refuse events without it")
		}
	}
	for _, name := range eventSorted(nreq) {
		if oreq[name] {
			continue
		}
		_, inOld := oprops[name]
		if _, inNew := nprops[name]; inNew && !inOld {
			continue // reported above as a new required property
		}
		c.add(eventJoin(path, name), "changed from optional to required: events written before this version may not have it")
	}
}

// enum allows only added values.
func (c *eventCompat) enum(path, ptr string, ov any, oin bool, nv any, nin bool) {
	oa, ok1 := ov.([]any)
	na, ok2 := nv.([]any)
	switch {
	case !oin && !nin:
	case !oin:
		c.add(path, "\"enum\" added (%s): it narrows the values allowed before", eventShow(nv, true))
	case !nin:
		c.add(path, "\"enum\" removed (was %s): only adding values is allowed", eventShow(ov, true))
	case !ok1 || !ok2:
		if !reflect.DeepEqual(ov, nv) {
			c.add(path, "\"enum\" changed from %s to %s", eventShow(ov, true), eventShow(nv, true))
		}
	default:
		have := map[string]bool{}
		for _, v := range na {
			have[eventKey(v)] = true
		}
		var gone []string
		for _, v := range oa {
			if !have[eventKey(v)] {
				gone = append(gone, eventShow(v, true))
			}
		}
		if len(gone) > 0 {
			c.add(path, "\"enum\" value(s) %s removed: events already written may hold them; only adding values is allowed", strings.Join(gone, ", "))
		}
		old := map[string]bool{}
		for _, v := range oa {
			old[eventKey(v)] = true
		}
		for _, v := range na {
			if !old[eventKey(v)] {
				c.extended(path, ptr, "\"enum\" values added")
				break
			}
		}
	}
}

// eventReferenced appends to out the JSON pointers of the subschemas of
// schema s (at ptr) that can be reached by reference: the targets of
// "#/..." refs, and those carrying an anchor or an $id. A ref that is not
// a local pointer ("#name", another document) counts as reaching the root.
func eventReferenced(s any, ptr string, out *[]string) {
	switch x := s.(type) {
	case []any: // allOf, prefixItems, ...
		for i, v := range x {
			eventReferenced(v, ptr+"/"+strconv.Itoa(i), out)
		}
	case map[string]any:
		for k, v := range x {
			sub := ptr + "/" + eventEscape(k)
			switch k {
			case "$ref", "$dynamicRef", "$recursiveRef":
				ref, _ := v.(string)
				if frag, ok := strings.CutPrefix(ref, "#"); ok && (frag == "" || frag[0] == '/') {
					*out = append(*out, frag)
				} else {
					*out = append(*out, "")
				}
			case "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$id", "id":
				if ptr != "" {
					*out = append(*out, ptr)
				}
			case "properties", "patternProperties", "$defs", "definitions", "dependentSchemas":
				if m, ok := v.(map[string]any); ok { // names to schemas
					for name, ns := range m {
						eventReferenced(ns, sub+"/"+eventEscape(name), out)
					}
				}
			case "enum", "const", "default", "examples", "required", "dependentRequired":
				// data, not schemas
			default:
				eventReferenced(v, sub, out)
			}
		}
	}
}

func eventEscape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// eventStripEnums removes "enum" wherever the checker lets a later
// version add values (the schemas it walks through properties and items,
// unless a $ref reaches them: under a "not" a missing enum would refuse
// more, not less), so that the schema accepts events of later versions.
func eventStripEnums(doc any) {
	var refs []string
	eventReferenced(doc, "", &refs)
	var strip func(s any, ptr string)
	strip = func(s any, ptr string) {
		m, ok := s.(map[string]any)
		if !ok {
			return
		}
		if _, ok := eventReached(refs, ptr); ok {
			return
		}
		delete(m, "enum")
		if props, ok := m["properties"].(map[string]any); ok {
			for name, p := range props {
				strip(p, ptr+"/properties/"+eventEscape(name))
			}
		}
		strip(m["items"], ptr+"/items")
	}
	strip(doc, "")
}

// eventOpen reports whether an additionalProperties-like value allows
// anything: absent, true or {}.
func eventOpen(v any, present bool) bool {
	if !present || v == true {
		return true
	}
	m, ok := v.(map[string]any)
	return ok && len(m) == 0
}

// eventTypes normalizes "type": "string" and ["string"] to one set.
func eventTypes(v any, present bool) any {
	if !present {
		return nil
	}
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			s, ok := x.(string)
			if !ok {
				return v
			}
			out = append(out, s)
		}
		sort.Strings(out)
		return slices.Compact(out)
	}
	return v
}

func eventSet(v any) map[string]bool {
	set := map[string]bool{}
	if a, ok := v.([]any); ok {
		for _, x := range a {
			if s, ok := x.(string); ok {
				set[s] = true
			}
		}
	}
	return set
}

func eventSorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func eventJoin(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// eventKey is a canonical JSON form of a value (objects' keys sorted).
func eventKey(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// eventShow renders a schema value for a message, compact and bounded.
func eventShow(v any, present bool) string {
	if !present {
		return "absent"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	if n := 80; len(b) > n {
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		return string(b[:n]) + "..."
	}
	return string(b)
}
