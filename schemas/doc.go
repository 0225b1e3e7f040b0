// Package schemas makes Evolutionary Database Design (EDD) enforceable:
// storage only grows. It holds the registry of event types and their
// JSON Schema versions, the declarations of read-model tables, the rules
// that say which changes are allowed, and the committed ledger of every
// schema that has shipped.
package schemas
