package vfs

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// The committed ledger holds every declaration of the service: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsTheService(t *testing.T) {
	l, err := schemas.ReadLedger(filepath.Join("..", "..", schemas.DefaultLedger))
	if err != nil {
		t.Fatal(err)
	}
	k := kernel.New("") // never opened: only its declarations are read
	k.Logger = slog.New(slog.DiscardHandler)
	if _, err := Register(k, Config{}); err != nil {
		t.Fatal(err)
	}
	r := l.Check(k.Catalog())
	// Only the service's own entries: the other verticals are not
	// registered here.
	for _, p := range r.Problems {
		if strings.Contains(p, " "+Category+".") {
			t.Errorf("breaks the ledger: %s", p)
		}
	}
	for _, e := range r.Unlocked {
		if strings.HasPrefix(e.Name, Category+".") {
			t.Errorf("not locked: %s %s version %d; run go run ./cmd/fazt schema lock", e.Kind, e.Name, e.Version)
		}
	}
}
