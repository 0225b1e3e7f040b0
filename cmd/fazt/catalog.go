package main

import (
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// verticals are the business modules compiled into this binary; each
// registers its event types (and, later, its tables and routes). Tests
// add their own.
var verticals []func(*schemas.Registry) error

// projectionDefs are the read models of the verticals: serve registers
// each with its projections runner. Tests add their own.
var projectionDefs []func() projections.Projection

// catalog is every event schema and table this binary declares. The
// ledger (schemas/ledger.jsonl) records what has shipped, and
// `fazt schema check` holds the code to it.
func catalog() (schemas.Catalog, error) {
	reg := schemas.NewRegistry()
	for _, register := range []func(*schemas.Registry) error{
		schemas.RegisterKernelTypes,
		projections.RegisterKernelTypes,
		projections.RegisterReactorKernelTypes,
	} {
		if err := register(reg); err != nil {
			return schemas.Catalog{}, err
		}
	}
	for _, v := range verticals {
		if err := v(reg); err != nil {
			return schemas.Catalog{}, err
		}
	}
	return schemas.Catalog{Events: reg}, nil
}
