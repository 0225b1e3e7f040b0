package main

import (
	"log/slog"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// newKernel returns a kernel for cfg with the app's verticals registered.
func (a *app) newKernel(cfg kernel.Config) (*kernel.Kernel, error) {
	k := kernel.New(cfg)
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
	k, err := a.newKernel(kernel.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return schemas.Catalog{}, err
	}
	return k.Catalog(), nil
}
