package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

const (
	ordersV1 = `{
  "type": "object",
  "properties": {
    "total": {"type": "number", "minimum": 0},
    "status": {"type": "string", "enum": ["open", "paid"]},
    "address": {
      "type": "object",
      "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
      "required": ["city"]
    },
    "lines": {
      "type": "array",
      "items": {"type": "object", "properties": {"sku": {"type": "string"}, "n": {"type": "integer"}}, "required": ["sku"]}
    }
  },
  "required": ["total"]
}`
	// ordersV2 adds an optional coupon and the enum value "refunded".
	ordersV2 = `{
  "type": "object",
  "properties": {
    "total": {"type": "number", "minimum": 0},
    "status": {"type": "string", "enum": ["open", "paid", "refunded"]},
    "address": {
      "type": "object",
      "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
      "required": ["city"]
    },
    "lines": {
      "type": "array",
      "items": {"type": "object", "properties": {"sku": {"type": "string"}, "n": {"type": "integer"}}, "required": ["sku"]}
    },
    "coupon": {"type": "string"}
  },
  "required": ["total"]
}`
)

// edit returns ordersV1 changed by f, as JSON.
func edit(t testing.TB, f func(s map[string]any)) []byte {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal([]byte(ordersV1), &s); err != nil {
		t.Fatal(err)
	}
	f(s)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func prop(s map[string]any, path ...string) map[string]any {
	for _, p := range path {
		if p == "[]" {
			s = s["items"].(map[string]any)
			continue
		}
		s = s["properties"].(map[string]any)[p].(map[string]any)
	}
	return s
}

func TestCheckCompatible(t *testing.T) {
	allowed := []struct {
		name string
		f    func(s map[string]any)
	}{
		{"no change", func(s map[string]any) {}},
		{"add optional property", func(s map[string]any) {
			prop(s)["properties"].(map[string]any)["coupon"] = map[string]any{"type": "string"}
		}},
		{"add nested optional property", func(s map[string]any) {
			prop(s, "address")["properties"].(map[string]any)["country"] = map[string]any{"type": "string"}
		}},
		{"add optional property in array items", func(s map[string]any) {
			prop(s, "lines", "[]")["properties"].(map[string]any)["note"] = map[string]any{"type": "string"}
		}},
		{"add enum value", func(s map[string]any) {
			prop(s, "status")["enum"] = []any{"open", "paid", "refunded"}
		}},
		{"reorder enum values", func(s map[string]any) {
			prop(s, "status")["enum"] = []any{"paid", "open"}
		}},
		{"add description and title", func(s map[string]any) {
			s["title"] = "Order placed"
			prop(s, "total")["description"] = "in cents"
		}},
		{"type as one-element array", func(s map[string]any) {
			prop(s, "total")["type"] = []any{"number"}
		}},
		{"additionalProperties true stated", func(s map[string]any) {
			prop(s, "address")["additionalProperties"] = true
		}},
		{"property named like a keyword", func(s map[string]any) {
			prop(s)["properties"].(map[string]any)["id"] = map[string]any{"type": "string"}
			prop(s, "address")["properties"].(map[string]any)["$ref"] = map[string]any{"type": "string"}
		}},
		{"new optional property with its own oneOf", func(s map[string]any) {
			prop(s)["properties"].(map[string]any)["pay"] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		}},
	}
	for _, tc := range allowed {
		t.Run("allowed/"+tc.name, func(t *testing.T) {
			if err := CheckCompatible("orders.placed", []byte(ordersV1), edit(t, tc.f)); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}

	refused := []struct {
		name string
		f    func(s map[string]any)
		want []string // in the message
	}{
		{"remove property", func(s map[string]any) {
			delete(prop(s)["properties"].(map[string]any), "status")
		}, []string{`property "status"`, "removed"}},
		{"rename property", func(s map[string]any) {
			ps := prop(s)["properties"].(map[string]any)
			ps["state"] = ps["status"]
			delete(ps, "status")
		}, []string{`property "status"`, "removed", "rename"}},
		{"retype", func(s map[string]any) {
			prop(s, "total")["type"] = "integer"
		}, []string{`property "total"`, `type changed from "number" to "integer"`}},
		{"widen type", func(s map[string]any) {
			prop(s, "total")["type"] = []any{"number", "string"}
		}, []string{`property "total"`, "type changed", "widening too"}},
		{"optional to required", func(s map[string]any) {
			s["required"] = []any{"total", "status"}
		}, []string{`property "status"`, "from optional to required"}},
		{"required to optional", func(s map[string]any) {
			delete(s, "required")
		}, []string{`property "total"`, "from required to optional"}},
		{"new required property", func(s map[string]any) {
			prop(s)["properties"].(map[string]any)["coupon"] = map[string]any{"type": "string"}
			s["required"] = []any{"total", "coupon"}
		}, []string{`property "coupon"`, "added as required"}},
		{"enum narrowed", func(s map[string]any) {
			prop(s, "status")["enum"] = []any{"open"}
		}, []string{`property "status"`, `"enum" value(s) "paid" removed`}},
		{"enum added", func(s map[string]any) {
			prop(s, "address", "city")["enum"] = []any{"Oslo"}
		}, []string{`property "address.city"`, `"enum" added`}},
		{"additionalProperties to false", func(s map[string]any) {
			prop(s, "address")["additionalProperties"] = false
		}, []string{`property "address"`, `"additionalProperties" changed to false`}},
		{"nested retype", func(s map[string]any) {
			prop(s, "address", "zip")["type"] = "integer"
		}, []string{`property "address.zip"`, "type changed"}},
		{"items retype", func(s map[string]any) {
			prop(s, "lines", "[]", "n")["type"] = "number"
		}, []string{`property "lines[].n"`, `type changed from "integer" to "number"`}},
		{"items replaced", func(s map[string]any) {
			prop(s, "lines")["items"] = map[string]any{"type": "string"}
		}, []string{`property "lines[]"`, "type changed"}},
		{"pattern changed", func(s map[string]any) {
			prop(s, "address", "zip")["pattern"] = "^[0-9]+$"
		}, []string{`property "address.zip"`, `"pattern" changed`}},
		{"minimum loosened", func(s map[string]any) {
			delete(prop(s, "total"), "minimum")
		}, []string{`property "total"`, `"minimum" changed from 0 to absent`}},
		{"format added", func(s map[string]any) {
			prop(s, "address", "city")["format"] = "hostname"
		}, []string{`property "address.city"`, `"format" changed`}},
		{"oneOf changed", func(s map[string]any) {
			prop(s, "total")["oneOf"] = []any{map[string]any{"minimum": 1}}
		}, []string{`property "total"`, `changes to "oneOf" are not supported`}},
		{"extend a referenced schema", func(s map[string]any) {
			s["$defs"] = map[string]any{"other": map[string]any{"not": map[string]any{"$ref": "#/properties/address"}}}
			prop(s, "address")["properties"].(map[string]any)["country"] = map[string]any{"type": "string"}
		}, []string{`property "address.country": added, but the schema refers to "#/properties/address"`, "not supported"}},
		{"add enum value to a referenced schema", func(s map[string]any) {
			prop(s, "lines", "[]")["properties"].(map[string]any)["parent"] = map[string]any{"$ref": "#"}
			prop(s, "status")["enum"] = []any{"open", "paid", "refunded"}
		}, []string{`property "status": "enum" values added, but the schema refers to "#"`}},
		{"top-level allOf", func(s map[string]any) {
			s["allOf"] = []any{map[string]any{"required": []any{"total"}}}
		}, []string{"the top level", `changes to "allOf" are not supported`}},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			err := CheckCompatible("orders.placed", []byte(ordersV1), edit(t, tc.f))
			if err == nil {
				t.Fatal("allowed")
			}
			if !errors.Is(err, ErrIncompatible) || !errors.Is(err, ErrEDDViolation) {
				t.Fatalf("error does not wrap ErrIncompatible and ErrEDDViolation: %v", err)
			}
			msg := err.Error()
			for _, w := range append([]string{`event type "orders.placed"`}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message has several lines:\n%s", msg)
			}
		})
	}

	t.Run("refused/property added to closed nested object", func(t *testing.T) {
		closed := edit(t, func(s map[string]any) { prop(s, "address")["additionalProperties"] = false })
		var s map[string]any
		_ = json.Unmarshal(closed, &s)
		prop(s, "address")["properties"].(map[string]any)["country"] = map[string]any{"type": "string"}
		next, _ := json.Marshal(s)
		err := CheckCompatible("orders.placed", closed, next)
		if !errors.Is(err, ErrIncompatible) || !strings.Contains(fmt.Sprint(err), `property "address.country": added to an object that the previous version closes`) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("several problems, one line, sorted", func(t *testing.T) {
		next := edit(t, func(s map[string]any) {
			prop(s, "total")["type"] = "string"
			delete(prop(s)["properties"].(map[string]any), "address")
		})
		err := CheckCompatible("orders.placed", []byte(ordersV1), next)
		msg := fmt.Sprint(err)
		i, j := strings.Index(msg, `"address"`), strings.Index(msg, `"total"`)
		if i < 0 || j < 0 || i > j {
			t.Fatalf("want both problems, address first: %s", msg)
		}
	})

	bad := []struct {
		name     string
		old, new string
		is       error
	}{
		{"not JSON", ordersV1, `{"type":`, eventlog.ErrInvalid},
		{"not an object schema", ordersV1, `{"type":"array"}`, eventlog.ErrInvalid},
		{"does not compile", ordersV1, `{"type":"object","properties":{"a":{"type":"strin"}}}`, eventlog.ErrInvalid},
		{"closed at the top", `{"type":"object","additionalProperties":false}`, ordersV1, ErrEDDViolation},
		{"external ref", ordersV1, `{"type":"object","properties":{"a":{"$ref":"file:///etc/passwd"}}}`, eventlog.ErrInvalid},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			err := CheckCompatible("orders.placed", []byte(tc.old), []byte(tc.new))
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
		})
	}
	if err := CheckCompatible("orders placed", []byte(ordersV1), []byte(ordersV1)); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("bad type name: got %v", err)
	}
}

func TestRegister(t *testing.T) {
	r := NewRegistry()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Register("orders.placed", 1, []byte(ordersV1)))
	must(r.Register("orders.placed", 2, []byte(ordersV2)))
	must(r.Register("accounts.opened", 1, []byte(`{"type":"object"}`)))

	cases := []struct {
		name    string
		typ     string
		version int
		schema  string
		is      error
		want    string
	}{
		{"bad type", "orders placed", 1, ordersV1, eventlog.ErrInvalid, "not allowed"},
		{"version 0", "x.y", 0, ordersV1, eventlog.ErrInvalid, "start at 1"},
		{"skips a version", "x.y", 2, ordersV1, eventlog.ErrInvalid, "out of order; the next version is 1"},
		{"again", "orders.placed", 2, ordersV2, eventlog.ErrInvalid, "already registered"},
		{"not JSON", "x.y", 1, `{`, eventlog.ErrInvalid, "not valid JSON"},
		{"not an object", "x.y", 1, `{"type":"string"}`, eventlog.ErrInvalid, `"type": "object"`},
		{"bad regexp", "x.y", 1, `{"type":"object","properties":{"a":{"pattern":"(?<=x)"}}}`, eventlog.ErrInvalid, "not a valid JSON Schema: /properties/a/pattern"},
		{"huge number", "x.y", 1, `{"type":"object","properties":{"a":{"enum":[1e-99999]}}}`, eventlog.ErrInvalid, "/properties/a/enum/0: number 1e-99999 is out of range"},
		{"closed top", "x.y", 1, `{"type":"object","additionalProperties":false}`, ErrEDDViolation, "later versions"},
		{"incompatible", "orders.placed", 3, `{"type":"object"}`, ErrIncompatible, `schema version 3 is not a compatible extension of version 2: property "address": removed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Register(tc.typ, tc.version, []byte(tc.schema))
			if !errors.Is(err, tc.is) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("got %v, want %v containing %q", err, tc.is, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message has several lines: %s", err)
			}
		})
	}

	if got := r.Types(); strings.Join(got, ",") != "accounts.opened,orders.placed" {
		t.Errorf("Types() = %v", got)
	}
	if v, ok := r.Latest("orders.placed"); v != 2 || !ok {
		t.Errorf("Latest = %d, %v", v, ok)
	}
	if _, ok := r.Latest("x.y"); ok {
		t.Error("Latest of an unknown type is ok")
	}
	s, ok := r.Schema("orders.placed", 2)
	if !ok || string(s) != ordersV2 {
		t.Errorf("Schema(2) = %q, %v", s, ok)
	}
	s[0] = 'X' // a copy
	if s, _ := r.Schema("orders.placed", 2); string(s) != ordersV2 {
		t.Error("Schema returned the registry's own bytes")
	}
	for _, v := range []int{0, 3} {
		if _, ok := r.Schema("orders.placed", v); ok {
			t.Errorf("Schema(%d) found", v)
		}
	}
}

func registry(t testing.TB, schemas ...string) *Registry {
	t.Helper()
	r := NewRegistry()
	for i, s := range schemas {
		if err := r.Register("orders.placed", i+1, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestValidate(t *testing.T) {
	r := registry(t, ordersV1, ordersV2)
	cases := []struct {
		name   string
		typ    string
		schema int
		data   string
		want   []string // in the error; none means valid
	}{
		{"valid v1", "orders.placed", 1, `{"total":3,"status":"paid","lines":[{"sku":"a","n":2}]}`, nil},
		{"big but fine numbers", "orders.placed", 1, `{"total":1.7976931348623157e308,"lines":[{"sku":"a","n":123456789012345678901234567890}]}`, nil},
		{"valid v1, schema 0", "orders.placed", 0, `{"total":3}`, nil},
		{"valid v2", "orders.placed", 2, `{"total":3,"coupon":"X","status":"refunded"}`, nil},
		{"unknown fields pass", "orders.placed", 1, `{"total":3,"whatever":[1]}`, nil},
		{"unknown type", "orders.lost", 1, `{}`, []string{`event type "orders.lost" is not registered`}},
		{"unknown version", "orders.placed", 3, `{"total":1}`, []string{"no schema version 3", "versions 1 to 2"}},
		{"negative version", "orders.placed", -1, `{"total":1}`, []string{"negative"}},
		{"missing required", "orders.placed", 1, `{}`, []string{`/: required: missing property "total"`}},
		{"empty data is {}", "orders.placed", 1, ``, []string{`missing property "total"`}},
		{"wrong type", "orders.placed", 1, `{"total":"3"}`, []string{"/total: type: got string, want number"}},
		{"nested path", "orders.placed", 1, `{"total":1,"lines":[{"sku":"a"},{"n":1}]}`, []string{`/lines/1: required: missing property "sku"`}},
		{"nested type", "orders.placed", 1, `{"total":1,"address":{"city":"x","zip":"12"}}`, []string{"/address/zip: pattern:"}},
		{"enum value of v2 in v1", "orders.placed", 1, `{"total":1,"status":"refunded"}`, []string{"/status: enum:"}},
		{"not JSON", "orders.placed", 1, `{"total":`, []string{"not valid JSON"}},
		{"huge exponent", "orders.placed", 1, `{"total":1,"lines":[{"sku":"a","n":1e999999}]}`, []string{"/lines/0/n: number 1e999999 is out of range"}},
		{"beyond float64", "orders.placed", 1, `{"total":1e309}`, []string{"/total: number 1e309 is out of range"}},
		{"not an object", "orders.placed", 1, `[1]`, []string{"/: type: got array, want object"}},
		{"several causes, sorted and capped", "orders.placed", 1,
			`{"total":"x","status":1,"address":{},"lines":[{},{}]}`,
			[]string{`/address: required: missing property "city"`, "/lines/0", "/lines/1", "and 2 more"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &eventlog.Event{Stream: "orders.1", Type: tc.typ, Schema: tc.schema, Data: json.RawMessage(tc.data)}
			err := r.Validate(e)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("invalid: %v", err)
				}
				return
			}
			if !errors.Is(err, eventlog.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q: %s", w, err)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message has several lines: %s", err)
			}
		})
	}
	if err := r.Validate(nil); !errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("Validate(nil) = %v", err)
	}
	var _ func(*eventlog.Event) error = r.Validate // fits eventlog.Log.Validate
}

type orderV1 struct {
	Total  float64 `json:"total"`
	Status string  `json:"status"`
}

type orderV2 struct {
	Total  float64 `json:"total"`
	Status string  `json:"status"`
	Coupon string  `json:"coupon"`
}

// TestRollback: a binary that knows only v1 reads events a newer binary
// wrote with v2, and the newer one reads v1 events.
func TestRollback(t *testing.T) {
	newReg := registry(t, ordersV1, ordersV2)
	oldReg := registry(t, ordersV1)
	v2 := eventlog.Event{Stream: "orders.1", Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"total":3,"coupon":"X"}`)}
	v1 := eventlog.Event{Stream: "orders.1", Type: "orders.placed", Data: json.RawMessage(`{"total":4,"status":"open"}`)}

	var o1 orderV1
	if err := Decode(oldReg, v2, &o1); err != nil || o1 != (orderV1{Total: 3}) {
		t.Fatalf("old registry, v2 event: %+v, %v", o1, err)
	}
	var o2 orderV2
	if err := Decode(newReg, v2, &o2); err != nil || o2 != (orderV2{Total: 3, Coupon: "X"}) {
		t.Fatalf("new registry, v2 event: %+v, %v", o2, err)
	}
	for name, r := range map[string]*Registry{"old": oldReg, "new": newReg} {
		var o orderV2
		if err := Decode(r, v1, &o); err != nil || o != (orderV2{Total: 4, Status: "open"}) {
			t.Errorf("%s registry, v1 event: %+v, %v", name, o, err)
		}
	}

	// An enum value added by v2 passes an old binary too.
	refunded := eventlog.Event{Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"total":1,"status":"refunded"}`)}
	if err := Decode(oldReg, refunded, &o1); err != nil || o1.Status != "refunded" {
		t.Errorf("old registry, v2 enum value: %+v, %v", o1, err)
	}
	// Version 7 from a far newer binary: validated against v2.
	v7 := eventlog.Event{Type: "orders.placed", Schema: 7, Data: json.RawMessage(`{"total":5,"coupon":"Y","gift":true}`)}
	if err := Decode(newReg, v7, &o2); err != nil || o2.Coupon != "Y" {
		t.Errorf("new registry, v7 event: %+v, %v", o2, err)
	}

	// What stays refused.
	bad := []struct {
		name string
		r    *Registry
		e    eventlog.Event
		want string
	}{
		{"invalid v2 data, old registry", oldReg, eventlog.Event{Type: "orders.placed", Schema: 2, Data: json.RawMessage(`{"total":"3"}`)}, "/total: type"},
		{"invalid v1 data", newReg, eventlog.Event{Type: "orders.placed", Data: json.RawMessage(`{}`)}, "missing property"},
		{"v1 data with v2 enum value", newReg, eventlog.Event{Type: "orders.placed", Data: json.RawMessage(`{"total":1,"status":"refunded"}`)}, "/status: enum"},
		{"unknown type", newReg, eventlog.Event{Type: "orders.lost"}, "not registered"},
		{"no registry", nil, v1, "no registry"},
	}
	for _, tc := range bad {
		var o orderV2
		if err := Decode(tc.r, tc.e, &o); !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid with %q", tc.name, err, tc.want)
		}
	}
	// Valid data that does not fit the Go type: encoding/json's error.
	var wrong struct {
		Total string `json:"total"`
	}
	if err := Decode(newReg, v1, &wrong); err == nil || errors.Is(err, eventlog.ErrInvalid) {
		t.Errorf("decode into a wrong type: %v", err)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry()
	var wg sync.WaitGroup
	for g := range 8 {
		typ := fmt.Sprintf("orders.placed%d", g)
		wg.Go(func() {
			for v, s := range []string{ordersV1, ordersV2} {
				if err := r.Register(typ, v+1, []byte(s)); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 50 {
				e := &eventlog.Event{Type: "orders.placed0", Schema: 1, Data: json.RawMessage(`{"total":1,"address":{"city":"x","zip":"12345"}}`)}
				if err := r.Validate(e); err != nil && !strings.Contains(err.Error(), "not registered") {
					t.Error(err)
				}
				var o orderV2
				_ = Decode(r, *e, &o)
				r.Types()
				r.Latest(typ)
				r.Schema(typ, 1)
			}
		})
	}
	wg.Wait()
	if n := len(r.Types()); n != 8 {
		t.Errorf("%d types", n)
	}
}

// A $ref into an enum value compiles, but not once enums are stripped.
func TestRegisterRefIntoEnum(t *testing.T) {
	s := `{"type":"object","properties":{"a":{"enum":[{"type":"string"}]},"b":{"$ref":"#/properties/a/enum/0"}}}`
	var doc any
	_ = json.Unmarshal([]byte(s), &doc)
	eventStripEnums(doc)
	if _, err := eventCompileDoc("x.y", "stripped", doc); err == nil {
		t.Fatal("the stripped schema compiles; the test needs one that does not")
	}
	r := NewRegistry()
	if err := r.Register("x.y", 1, []byte(s)); err != nil {
		t.Fatal(err)
	}
	e := eventlog.Event{Type: "x.y", Schema: 2, Data: json.RawMessage(`{"b":1}`)}
	var m map[string]any
	if err := Decode(r, e, &m); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

// The internals runtime.go uses: check changes nothing, and only Register
// marks a type as declared in code.
func TestRegistryInternals(t *testing.T) {
	r := NewRegistry()
	if err := r.check("orders.placed", 1, []byte(ordersV1)); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Latest("orders.placed"); ok {
		t.Fatal("check registered")
	}
	if err := r.check("orders.placed", 2, []byte(ordersV2)); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("check out of order: %v", err)
	}
	if err := r.register("orders.placed", 1, []byte(ordersV1), false); err != nil || r.inCode("orders.placed") {
		t.Fatalf("register at run time: %v, in code %v", err, r.inCode("orders.placed"))
	}
	if err := r.check("orders.placed", 2, []byte(`{"type":"object"}`)); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("check incompatible: %v", err)
	}
	if err := r.Register("accounts.opened", 1, []byte(`{"type":"object"}`)); err != nil || !r.inCode("accounts.opened") {
		t.Fatalf("Register: %v, in code %v", err, r.inCode("accounts.opened"))
	}
}
