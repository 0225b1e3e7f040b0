package main

import (
	"log/slog"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// verticals are the business modules compiled into this binary: each
// registers its event types, projections, reactors and routes with the
// kernel. Tests add their own.
var verticals []func(*kernel.Kernel) error

// newKernel returns a kernel for cfg with every vertical registered.
func newKernel(cfg kernel.Config) (*kernel.Kernel, error) {
	k := kernel.New(cfg)
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
	k, err := newKernel(kernel.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return schemas.Catalog{}, err
	}
	return k.Catalog(), nil
}
