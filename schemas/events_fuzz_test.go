package schemas

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

var fuzzSchemas = []string{
	ordersV1,
	ordersV2,
	`{"type":"object"}`,
	`{"type":"object","properties":{"a":{"type":["string","null"]}},"required":["a"]}`,
	`{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","enum":["x","y"]}}}}`,
	`{"type":"object","properties":{"p":{"oneOf":[{"type":"string"},{"type":"integer"}]}},"$defs":{"d":{"type":"number"}}}`,
	`{"type":"object","properties":{"n":{"$ref":"#/$defs/d"}},"$defs":{"d":{"type":"number","minimum":1}}}`,
	`{"type":"object","properties":{"m":{"type":"object","additionalProperties":false,"properties":{"k":true}}}}`,
	`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"d":{"format":"date-time"}}}`,
	`{"type":"object","additionalProperties":false}`,
	`{"type":"object","if":{"required":["a"]},"then":{"required":["b"]},"items":[{"type":"string"}]}`,
	`{"type":"object","properties":{"a":{"pattern":"^a+$","minLength":1}},"patternProperties":{"^x":{}}}`,
	`{"type":"object","properties":{"e":{"enum":[1,"1",1.0,{"a":1},[1],null]}}}`,
	`[]`,
	`{"type":`,
	``,
}

// FuzzCheckCompatible: never panics; a schema the registry accepts is
// compatible with itself; a pair the checker allows registers as v1, v2.
func FuzzCheckCompatible(f *testing.F) {
	for _, a := range fuzzSchemas {
		for _, b := range fuzzSchemas[:4] {
			f.Add([]byte(a), []byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, oldS, newS []byte) {
		err := CheckCompatible("fuzz.event", oldS, newS)
		for _, s := range [][]byte{oldS, newS} {
			if NewRegistry().Register("fuzz.event", 1, s) != nil {
				continue
			}
			if err := CheckCompatible("fuzz.event", s, s); err != nil {
				t.Fatalf("schema incompatible with itself: %v\n%s", err, s)
			}
		}
		if err == nil {
			r := NewRegistry()
			if err := r.Register("fuzz.event", 1, oldS); err != nil {
				t.Fatalf("compatible, but v1 does not register: %v", err)
			}
			if err := r.Register("fuzz.event", 2, newS); err != nil {
				t.Fatalf("compatible, but v2 does not register: %v", err)
			}
		} else if !errors.Is(err, eventlog.ErrInvalid) && !errors.Is(err, ErrEDDViolation) {
			t.Fatalf("error of no known kind: %v", err)
		}
	})
}

// FuzzDecode: never panics, and keeps the rollback promise: data a newer
// binary accepts as version 2 decodes on a binary that knows only v1.
func FuzzDecode(f *testing.F) {
	seeds := []struct {
		data    string
		version int
	}{
		{`{"total":3}`, 1},
		{`{"total":3,"coupon":"X"}`, 2},
		{`{"total":3,"status":"refunded","lines":[{"sku":"a","n":1}]}`, 2},
		{`{"total":1,"address":{"city":"Oslo","zip":"01234"}}`, 0},
		{`{"total":1,"gift":{"to":"me"}}`, 9},
		{`{"total":"3"}`, 1},
		{`{}`, -1},
		{`[1,2]`, 1},
		{`{"total":1e400}`, 2},
		{`{"total":3,"total":"x"}`, 1},
		{``, 1},
		{`{"total":`, 2},
		{"\xff", 1},
	}
	for _, s := range seeds {
		f.Add([]byte(s.data), s.version)
	}
	newReg := registry(f, ordersV1, ordersV2)
	oldReg := registry(f, ordersV1)
	f.Fuzz(func(t *testing.T, data []byte, version int) {
		e := eventlog.Event{Stream: "orders.1", Type: "orders.placed", Schema: version, Data: json.RawMessage(data)}
		var o2 orderV2
		var m map[string]any
		errNew := Decode(newReg, e, &m)
		_ = Decode(newReg, e, &o2)
		errOld := Decode(oldReg, e, &o2)
		valid := newReg.Validate(&e)
		if valid == nil && version >= 0 && errors.Is(errOld, eventlog.ErrInvalid) {
			t.Fatalf("valid for the new registry, refused by the old one: %v\n%s", errOld, data)
		}
		if valid == nil && errors.Is(errNew, eventlog.ErrInvalid) {
			t.Fatalf("valid, but Decode refuses it: %v\n%s", errNew, data)
		}
	})
}

// FuzzRollback checks the promise the checker exists for: when newS may
// follow oldS, data valid under newS decodes on a binary that knows only
// oldS.
func FuzzRollback(f *testing.F) {
	pairs := [][2]string{
		{ordersV1, ordersV2},
		{`{"type":"object","properties":{"tags":{"type":"array","items":{"enum":["x"]}}}}`,
			`{"type":"object","properties":{"tags":{"type":"array","items":{"enum":["x","y"]}}},"title":"t"}`},
		{`{"type":"object","properties":{"m":{"type":"object","properties":{"k":{"type":"integer"}}}},"maxProperties":2}`,
			`{"type":"object","properties":{"m":{"type":"object","properties":{"k":{"type":"integer"},"j":{"type":"string"}}}},"maxProperties":2}`},
		{`{"type":"object","properties":{"addr":{"type":"object"},"other":{"not":{"$ref":"#/properties/addr"}}}}`,
			`{"type":"object","properties":{"addr":{"type":"object","properties":{"zip":{"type":"string"}}},"other":{"not":{"$ref":"#/properties/addr"}}}}`},
		// Found by a random search: stripping the enum under "not" for
		// events of later versions refused more, not less.
		{`{"type":"object","properties":{"c":{"enum":["x","y"]},"d":{"not":{"$ref":"#/properties/c"}}}}`,
			`{"type":"object","properties":{"c":{"enum":["x","y"],"description":"changed"},"d":{"not":{"$ref":"#/properties/c"}}}}`},
	}
	data := []string{`{"d":2}`, `{"other":{"zip":1}}`, `{"total":1,"coupon":"X","status":"refunded"}`, `{"tags":["y","x"]}`, `{"m":{"k":1,"j":"s"}}`, `{}`, `{"m":{"j":1}}`}
	for _, p := range pairs {
		for _, d := range data {
			f.Add([]byte(p[0]), []byte(p[1]), []byte(d))
		}
	}
	f.Fuzz(func(t *testing.T, oldS, newS, data []byte) {
		if CheckCompatible("fuzz.event", oldS, newS) != nil {
			return
		}
		newReg, oldReg := NewRegistry(), NewRegistry()
		if newReg.Register("fuzz.event", 1, oldS) != nil || newReg.Register("fuzz.event", 2, newS) != nil || oldReg.Register("fuzz.event", 1, oldS) != nil {
			t.Fatal("compatible schemas do not register")
		}
		e := eventlog.Event{Type: "fuzz.event", Schema: 2, Data: data}
		if newReg.Validate(&e) != nil {
			return
		}
		var v any
		if err := Decode(oldReg, e, &v); errors.Is(err, eventlog.ErrInvalid) {
			t.Fatalf("valid as version 2, refused by a binary that knows version 1: %v\nold: %s\nnew: %s\ndata: %s", err, oldS, newS, data)
		}
	})
}

// FuzzEvolve builds a schema, a next version and events from the fuzzer's
// bytes (read as a stream of choices), so that it explores structured
// schemas rather than bytes. Whenever the checker allows the change, data
// valid under the new version must decode on a binary that knows only the
// old one, and each schema must be compatible with itself.
func FuzzEvolve(f *testing.F) {
	for _, s := range []string{"", "\x00", "\x01\x02\x03\x04\x05\x06\x07\x08", "\xff\xfe\xfd\xfc\xfb\xfa", "abcdefghijklmnopqrstuvwxyz0123456789"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g := &evolveGen{b: b}
		old := g.object(0)
		oldS, _ := json.Marshal(old)
		next := evolveCopy(old).(map[string]any)
		for range 1 + g.n(3) {
			g.mutate(next, 0)
		}
		newS, _ := json.Marshal(next)
		for _, s := range [][]byte{oldS, newS} {
			if NewRegistry().Register("fuzz.event", 1, s) == nil {
				if err := CheckCompatible("fuzz.event", s, s); err != nil {
					t.Fatalf("schema incompatible with itself: %v\n%s", err, s)
				}
			}
		}
		if CheckCompatible("fuzz.event", oldS, newS) != nil {
			return
		}
		newReg, oldReg := NewRegistry(), NewRegistry()
		if newReg.Register("fuzz.event", 1, oldS) != nil || newReg.Register("fuzz.event", 2, newS) != nil || oldReg.Register("fuzz.event", 1, oldS) != nil {
			t.Fatalf("compatible schemas do not register\nold: %s\nnew: %s", oldS, newS)
		}
		for range 4 {
			data, _ := json.Marshal(g.value(0))
			e := eventlog.Event{Type: "fuzz.event", Schema: 2, Data: data}
			if newReg.Validate(&e) != nil {
				continue
			}
			var v any
			if err := Decode(oldReg, e, &v); err != nil {
				t.Fatalf("valid as version 2, refused by a binary that knows version 1: %v\nold: %s\nnew: %s\ndata: %s", err, oldS, newS, data)
			}
		}
	})
}

type evolveGen struct {
	b []byte
	i int
}

// n returns a choice in [0, k).
func (g *evolveGen) n(k int) int {
	if g.i >= len(g.b) {
		return 0
	}
	g.i++
	return int(g.b[g.i-1]) % k
}

var evolveNames = []string{"a", "b", "c", "d"}

func (g *evolveGen) name() string { return evolveNames[g.n(len(evolveNames))] }

func (g *evolveGen) object(depth int) map[string]any {
	s := map[string]any{"type": "object"}
	props := map[string]any{}
	for range g.n(4) {
		props[g.name()] = g.schema(depth + 1)
	}
	s["properties"] = props
	if g.n(2) == 0 {
		var req []any
		for _, name := range eventSorted(props) {
			if g.n(2) == 0 {
				req = append(req, name)
			}
		}
		if req != nil {
			s["required"] = req
		}
	}
	if depth > 0 && g.n(4) == 0 {
		s["additionalProperties"] = false
	}
	return s
}

func (g *evolveGen) schema(depth int) any {
	switch k := g.n(9); {
	case depth < 3 && k == 0:
		return g.object(depth)
	case depth < 3 && k == 1:
		return map[string]any{"type": "array", "items": g.schema(depth + 1)}
	case k == 2:
		return map[string]any{"enum": []any{"x", "y", 1}[:1+g.n(3)]}
	case k == 3:
		return map[string]any{"type": "integer", "minimum": g.n(3)}
	case k == 4:
		return map[string]any{"not": map[string]any{"$ref": "#/properties/" + g.name()}}
	case k == 5:
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"enum": []any{"x", 2}}}}
	case k == 6:
		return true
	default:
		return map[string]any{"type": []string{"string", "integer", "number", "boolean", "object"}[g.n(5)]}
	}
}

// mutate changes s (an object schema) in one of many ways, most of which
// the checker should refuse.
func (g *evolveGen) mutate(s map[string]any, depth int) {
	props, _ := s["properties"].(map[string]any)
	if props == nil {
		props = map[string]any{}
		s["properties"] = props
	}
	name := g.name()
	switch g.n(9) {
	case 0: // add or replace a property
		props[name] = g.schema(depth + 1)
	case 1:
		delete(props, name)
	case 2: // toggle required
		req, _ := s["required"].([]any)
		s["required"] = append(req, name)
	case 3:
		delete(s, "required")
	case 4: // add an enum value somewhere
		if p, ok := props[name].(map[string]any); ok {
			if e, ok := p["enum"].([]any); ok {
				p["enum"] = append(e, []any{"z", 3, "x"}[g.n(3)])
			}
		}
	case 5:
		if p, ok := props[name].(map[string]any); ok {
			p["description"] = "changed"
		}
	case 6:
		if g.n(2) == 0 {
			s["additionalProperties"] = false
		} else {
			delete(s, "additionalProperties")
		}
	case 7: // recurse into an object or array items
		if p, ok := props[name].(map[string]any); ok {
			if it, ok := p["items"].(map[string]any); ok {
				p = it
			}
			if p["type"] == "object" {
				g.mutate(p, depth+1)
			}
		}
	case 8:
		if p, ok := props[name].(map[string]any); ok {
			p["type"] = "string"
		}
	}
}

func (g *evolveGen) value(depth int) any {
	switch g.n(8) {
	case 0:
		return "x"
	case 1:
		return []any{"y", "z"}[g.n(2)]
	case 2:
		return g.n(4)
	case 3:
		return 1.5
	case 4:
		return g.n(2) == 0
	case 5:
		if depth < 4 {
			return []any{g.value(depth + 1), g.value(depth + 1)}[:g.n(3)]
		}
	}
	m := map[string]any{}
	if depth < 4 {
		for range g.n(4) {
			m[g.name()] = g.value(depth + 1)
		}
	}
	return m
}

func evolveCopy(v any) any {
	b, _ := json.Marshal(v)
	var c any
	_ = json.Unmarshal(b, &c)
	return c
}
