package main

import "github.com/fazt-sh/fazt/schemas"

// catalog is every event schema and table this binary declares. Each
// vertical compiled in adds its own; the ledger (schemas/ledger.jsonl)
// records what has shipped, and `fazt schema check` holds the code to it.
func catalog() (schemas.Catalog, error) {
	reg := schemas.NewRegistry()
	if err := schemas.RegisterKernelTypes(reg); err != nil {
		return schemas.Catalog{}, err
	}
	return schemas.Catalog{Events: reg}, nil
}
