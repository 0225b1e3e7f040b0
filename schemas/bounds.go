package schemas

import (
	"fmt"
	"regexp"
	"regexp/syntax"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Limits of an event schema. Compiling a JSON Schema costs the validator
// library time that grows faster than the schema (one 88 KB schema
// nested 2,400 levels deep took minutes), and a registration read from
// the log is compiled again at every start. So every schema, declared in
// code, registered at run time or loaded from the log, is held to these
// before it is compiled or, for the expansion, before it is accepted;
// they are far above what an event's data needs. Over a limit, a schema
// is refused with eventlog.ErrInvalid naming it (and Load skips it).
const (
	// MaxSchemaBytes bounds the schema document.
	MaxSchemaBytes = 1 << 20
	// MaxSchemaDepth bounds how deep objects and arrays nest in the
	// document: 64 levels are about 30 levels of nested properties.
	MaxSchemaDepth = 64
	// MaxSchemaObjects bounds the JSON objects in the document (every
	// subschema but true and false is one). The library's compiler
	// spends time quadratic in their number.
	MaxSchemaObjects = 1000
	// MaxSchemaExpansion bounds the subschemas the schema amounts to
	// when every "$ref" is followed (a reference back to an enclosing
	// schema counts once): a few definitions that each refer twice to
	// the next would make every validation visit millions of them.
	MaxSchemaExpansion = 10_000
	// MaxSchemaPatternLen bounds the source of one regular expression
	// ("pattern", a "patternProperties" key), MaxSchemaPatternInsts its
	// compiled program: matching costs time proportional to both and to
	// the data.
	MaxSchemaPatternLen   = 1000
	MaxSchemaPatternInsts = 2000
)

// eventShape checks a parsed document against MaxSchemaDepth and
// MaxSchemaObjects, stopping at the first excess.
func eventShape(typ, name string, doc any) error {
	objects := 0
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		switch x := v.(type) {
		case map[string]any:
			if depth > MaxSchemaDepth {
				return eventInvalidf("event type %q: %s nests objects and arrays more than %d levels deep (MaxSchemaDepth); flatten it", typ, name, MaxSchemaDepth)
			}
			if objects++; objects > MaxSchemaObjects {
				return eventInvalidf("event type %q: %s has more than %d objects (MaxSchemaObjects); split the event type or share definitions", typ, name, MaxSchemaObjects)
			}
			for _, e := range x {
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		case []any:
			if depth > MaxSchemaDepth {
				return eventInvalidf("event type %q: %s nests objects and arrays more than %d levels deep (MaxSchemaDepth); flatten it", typ, name, MaxSchemaDepth)
			}
			for _, e := range x {
				if err := walk(e, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(doc, 1)
}

// eventRegexp is the schemas' regular expression engine: Go's (RE2,
// linear in the data), within MaxSchemaPatternLen and
// MaxSchemaPatternInsts.
func eventRegexp(s string) (jsonschema.Regexp, error) {
	if len(s) > MaxSchemaPatternLen {
		return nil, fmt.Errorf("the expression is %d bytes; the limit is %d (MaxSchemaPatternLen)", len(s), MaxSchemaPatternLen)
	}
	re, err := syntax.Parse(s, syntax.Perl)
	if err != nil {
		return nil, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, err
	}
	if n := len(prog.Inst); n > MaxSchemaPatternInsts {
		return nil, fmt.Errorf("the expression compiles to %d instructions; the limit is %d (MaxSchemaPatternInsts): simplify its repetitions", n, MaxSchemaPatternInsts)
	}
	return regexp.Compile(s)
}

// eventExpansion counts the subschemas validation can visit at one
// place in the data, following references; it stops counting past
// limit. A reference back to a schema being counted (recursion, which
// descends into the data) counts once.
func eventExpansion(root *jsonschema.Schema, limit int) int {
	memo := map[*jsonschema.Schema]int{}
	active := map[*jsonschema.Schema]bool{}
	var size func(s *jsonschema.Schema) int
	size = func(s *jsonschema.Schema) int {
		if s == nil {
			return 0
		}
		if n, ok := memo[s]; ok {
			return n
		}
		if active[s] {
			return 1
		}
		active[s] = true
		n := 1
		eventChildren(s, func(c *jsonschema.Schema) bool {
			n += size(c)
			return n <= limit
		})
		active[s] = false
		n = min(n, limit+1)
		memo[s] = n
		return n
	}
	return size(root)
}

// eventChildren calls fn with every subschema s applies, until fn
// returns false.
func eventChildren(s *jsonschema.Schema, fn func(*jsonschema.Schema) bool) {
	var kids []*jsonschema.Schema
	add := func(c ...*jsonschema.Schema) {
		for _, x := range c {
			if x != nil {
				kids = append(kids, x)
			}
		}
	}
	add(s.Ref, s.RecursiveRef, s.Not, s.If, s.Then, s.Else, s.PropertyNames, s.UnevaluatedProperties,
		s.Contains, s.Items2020, s.UnevaluatedItems, s.ContentSchema)
	if s.DynamicRef != nil {
		add(s.DynamicRef.Ref)
	}
	add(s.AllOf...)
	add(s.AnyOf...)
	add(s.OneOf...)
	add(s.PrefixItems...)
	for _, c := range s.Properties {
		add(c)
	}
	for _, c := range s.PatternProperties {
		add(c)
	}
	for _, c := range s.DependentSchemas {
		add(c)
	}
	for _, d := range s.Dependencies {
		if c, ok := d.(*jsonschema.Schema); ok {
			add(c)
		}
	}
	for _, v := range []any{s.AdditionalProperties, s.AdditionalItems, s.Items} {
		switch x := v.(type) {
		case *jsonschema.Schema:
			add(x)
		case []*jsonschema.Schema:
			add(x...)
		}
	}
	for _, c := range kids {
		if !fn(c) {
			return
		}
	}
}
