// Package schemas makes Evolutionary Database Design (EDD) enforceable:
// storage only grows. It holds the registry of event types and their
// JSON Schema versions, the declarations of read-model tables, the rules
// that say which changes are allowed, and the committed ledger of every
// schema that has shipped.
//
// # Event schemas
//
// Every event type has numbered versions of a JSON Schema (draft 2020-12
// unless "$schema" says otherwise) for its data, an object:
//
//	r := schemas.NewRegistry()
//	err := r.Register("orders.placed", 1, []byte(`{"type":"object",
//		"properties":{"total":{"type":"number"}},"required":["total"]}`))
//	err = r.Register("orders.placed", 2, []byte(`{"type":"object",
//		"properties":{"total":{"type":"number"},"coupon":{"type":"string"}},
//		"required":["total"]}`))
//	log.Validate = r.Validate // appends of unknown or invalid events fail with ErrInvalid
//
//	var o OrderPlaced
//	err = schemas.Decode(r, e, &o) // any version, also newer than r knows
//
// Version N must be a compatible extension of N-1 (CheckCompatible): it
// may add optional properties, enum values and annotations, nothing else,
// so that new code reads old events and old code, after a rollback, reads
// new ones. Decode validates an event of a version newer than it knows
// against the newest schema it knows, letting through enum values it does
// not know: code must expect unknown enum values as it ignores unknown
// fields. A schema may not be closed ("additionalProperties": false) at
// the top level: that would forbid every later version to add a property.
// "format" is an annotation, not checked; numbers in data must fit a
// float64 (at most 100 characters, exponent within ±400). Types, Latest
// and Schema list everything registered, for the ledger.
//
// # Limits
//
// Compiling a JSON Schema can cost far more than its size suggests (one
// of 88 KB nested 2,400 levels deep took minutes), and a registration is
// compiled again at every start. Every schema, in code, at run time or
// read from the log, is therefore held to limits before it is compiled:
// MaxSchemaBytes (1 MiB), MaxSchemaDepth (objects and arrays nest at
// most 64 levels, about 30 levels of properties), MaxSchemaObjects
// (1,000), regular expressions of at most MaxSchemaPatternLen bytes and
// MaxSchemaPatternInsts compiled instructions; and, once compiled,
// MaxSchemaExpansion (10,000 subschemas when every "$ref" is followed,
// a reference back to an enclosing schema counting once). A recursive
// schema (a tree of comments, any JSON value) is accepted when each
// level of the data reaches the next along one path only; one that
// applies itself twice to the same data at every level (both branches
// of an "anyOf" referring back, say) would make validation exponential
// in the data's depth, and is refused, as is a reference loop that never
// steps into the data (MaxSchemaRecursion bounds the recursive part the
// check looks at). Over a limit, the schema is refused with
// eventlog.ErrInvalid naming the limit.
//
// # Registration at run time
//
// RegisterAtRuntime records a registration in the log (type
// TypeRegistered, stream "schemas.<type>") after checking it, through the
// writer of the category Category, which the kernel reserves: no one else
// can write a registration. Load rebuilds the registry from the log at
// start. A record it cannot apply (a schema the rules or limits refuse
// today, a malformed record, a message published around the kernel) is
// skipped and listed by Skipped, never an obstacle to the start: the type
// stays at its last good version and the next registration continues
// from there.
package schemas
