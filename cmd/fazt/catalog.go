package main

import (
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// newKernel returns a kernel on dir, its tunables set by tune (nil:
// the defaults), with the app's verticals registered.
func (a *app) newKernel(dir string, tune func(*kernel.Kernel)) (*kernel.Kernel, error) {
	k := kernel.New(dir)
	if tune != nil {
		tune(k)
	}
	for _, register := range a.verticals {
		if err := register(k); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// catalog is every event schema and table the app's verticals declare.
// The ledger (schemas/ledger.jsonl) records what has shipped, and
// `fazt schema check` holds the code to it.
func (a *app) catalog() (schemas.Catalog, error) {
	k, err := a.newKernel("", nil) // never opened: only its declarations are read
	if err != nil {
		return schemas.Catalog{}, err
	}
	return k.Catalog(), nil
}
