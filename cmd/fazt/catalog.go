package main

import (
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// verticals are the business modules compiled into this binary: each
// registers its event types, projections, reactors and routes with the
// kernel. Tests add their own.
var verticals []func(*kernel.Kernel) error

// newKernel returns a kernel on dir, its tunables set by tune (nil:
// the defaults), with every vertical registered.
func newKernel(dir string, tune func(*kernel.Kernel)) (*kernel.Kernel, error) {
	k := kernel.New(dir)
	if tune != nil {
		tune(k)
	}
	for _, register := range verticals {
		if err := register(k); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// catalog is every event schema and table this binary declares. The
// ledger (schemas/ledger.jsonl) records what has shipped, and
// `fazt schema check` holds the code to it.
func catalog() (schemas.Catalog, error) {
	k, err := newKernel("", nil) // never opened: only its declarations are read
	if err != nil {
		return schemas.Catalog{}, err
	}
	return k.Catalog(), nil
}
