package schemas

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// boundsDeep is a schema whose objects and arrays nest exactly depth
// levels: a property holding arrays of arrays.
func boundsDeep(depth int) string {
	n := depth - 2 // the top object and its "properties" object
	return `{"type":"object","properties":{"a":` + strings.Repeat(`{"type":"array","items":`, n-1) + `{}` + strings.Repeat(`}`, n-1) + `}}`
}

// boundsWide is a schema of n string properties: n+2 objects.
func boundsWide(n int) string {
	var b strings.Builder
	b.WriteString(`{"type":"object","properties":{`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"p%d":{"type":"string"}`, i)
	}
	b.WriteString(`}}`)
	return b.String()
}

// boundsDoubling is a schema of k definitions, each referring twice to
// the next: 2^k subschemas once references are followed.
func boundsDoubling(k int) string {
	var defs []string
	for i := range k {
		defs = append(defs, fmt.Sprintf(`"d%d":{"allOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1))
	}
	defs = append(defs, fmt.Sprintf(`"d%d":{"type":"string"}`, k))
	return `{"type":"object","properties":{"a":{"$ref":"#/$defs/d0"}},"$defs":{` + strings.Join(defs, ",") + `}}`
}

func TestSchemaBounds(t *testing.T) {
	if got := boundsDeep(MaxSchemaDepth); !strings.Contains(got, `"items":{}`) {
		t.Fatalf("generator: %s", got)
	}
	refused := []struct{ name, schema, says string }{
		{"2,400 levels deep", `{"type":"object","properties":{"a":` + strings.Repeat(`{"type":"object","properties":{"a":`, 2400) + `{}` + strings.Repeat(`}}`, 2400) + `}}`, "more than 64 levels deep (MaxSchemaDepth)"},
		{"one level too deep", boundsDeep(MaxSchemaDepth + 1), "MaxSchemaDepth"},
		{"one object too many", boundsWide(MaxSchemaObjects - 1), "more than 1000 objects (MaxSchemaObjects)"},
		{"too many bytes", `{"type":"object","description":"` + strings.Repeat("x", MaxSchemaBytes) + `"}`, "the limit is 1048576 (MaxSchemaBytes)"},
		{"references doubling", boundsDoubling(16), "more than 10000 subschemas when its references are followed (MaxSchemaExpansion)"},
		{"long pattern", `{"type":"object","properties":{"a":{"type":"string","pattern":"` + strings.Repeat("a", MaxSchemaPatternLen+1) + `"}}}`, "MaxSchemaPatternLen"},
		{"pattern repeating", `{"type":"object","properties":{"a":{"type":"string","pattern":"^a{1000}b{1000}c{1000}$"}}}`, "MaxSchemaPatternInsts"},
		{"pattern property repeating", `{"type":"object","patternProperties":{"^x{1000}y{1000}z{1000}$":{}}}`, "MaxSchemaPatternInsts"},
		// Recursion that reaches the next level of the data twice.
		{"recursion through both branches of anyOf", `{"type":"object","properties":{"x":{"anyOf":[{"$ref":"#"},{"$ref":"#","title":"t"}]}}}`,
			"two paths to the same data at every level (at #/properties/x)"},
		{"recursion through two alternatives", `{"type":"object","oneOf":[{"properties":{"kind":{"const":"a"},"child":{"$ref":"#"}}},{"properties":{"kind":{"const":"b"},"child":{"$ref":"#"}}}]}`,
			"evaluate about 2^n subschemas"},
		{"recursion through a definition applied twice", `{"type":"object","properties":{"x":{"$ref":"#/$defs/a"}},"$defs":{"a":{"properties":{"y":{"$ref":"#/$defs/b"}}},"b":{"allOf":[{"$ref":"#/$defs/a"},{"$ref":"#/$defs/a"}]}}}`,
			"two paths to the same data"},
		{"recursion through a property and a pattern", `{"type":"object","properties":{"x":{"$ref":"#/$defs/a"}},"$defs":{"a":{"properties":{"y":{"$ref":"#/$defs/a"}},"patternProperties":{"^y":{"$ref":"#/$defs/a"}}}}}`,
			"two paths to the same data"},
		{"a reference loop", `{"type":"object","properties":{"x":{"$ref":"#/$defs/a"}},"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}}}`,
			"without a step into the data: validating it would never end"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			err := NewRegistry().Register("a.b", 1, []byte(tc.schema))
			if !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v; want ErrInvalid saying %q", err, tc.says)
			}
			// The compatibility check holds both schemas to the limits.
			if err := CheckCompatible("a.b", []byte(`{"type":"object"}`), []byte(tc.schema)); !errors.Is(err, eventlog.ErrInvalid) {
				t.Fatalf("CheckCompatible: %v; want ErrInvalid", err)
			}
		})
	}
	accepted := []struct{ name, schema string }{
		{"as deep as allowed", boundsDeep(MaxSchemaDepth)},
		{"as many objects as allowed", boundsWide(MaxSchemaObjects - 2)},
		{"references doubling a little", boundsDoubling(10)},
		{"a definition shared by many properties", `{"type":"object","$defs":{"s":{"type":"string","maxLength":9}},"properties":{"p":{"$ref":"#/$defs/s"},"q":{"$ref":"#/$defs/s"},"r":{"$ref":"#/$defs/s"}}}`},
		{"recursive", `{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#"}}}}`},
		{"recursive, two properties", `{"type":"object","properties":{"left":{"$ref":"#"},"right":{"$ref":"#"}}}`},
		{"recursive, any JSON value", `{"type":"object","properties":{"v":{"$ref":"#/$defs/v"}},"$defs":{"v":{"anyOf":[{"type":"string"},{"type":"array","items":{"$ref":"#/$defs/v"}},{"type":"object","additionalProperties":{"$ref":"#/$defs/v"}}]}}}`},
		{"recursive, a list", `{"type":"object","properties":{"next":{"anyOf":[{"type":"null"},{"$ref":"#"}]}}}`},
		{"pattern as long as allowed", `{"type":"object","properties":{"a":{"type":"string","pattern":"` + strings.Repeat("a", MaxSchemaPatternLen) + `"}}}`},
	}
	for _, tc := range accepted {
		t.Run("accepted/"+tc.name, func(t *testing.T) {
			r := NewRegistry()
			if err := r.Register("a.b", 1, []byte(tc.schema)); err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(&eventlog.Event{Type: "a.b", Data: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A recursive schema still validates its data, however deep.
	r := NewRegistry()
	if err := r.Register("tree.made", 1, []byte(accepted[4].schema)); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(&eventlog.Event{Type: "tree.made", Data: []byte(`{"children":[{"children":[{"name":7}]}]}`)}); err == nil || !strings.Contains(err.Error(), "/children/0/children/0/name") {
		t.Fatalf("recursive validation: %v", err)
	}
}
