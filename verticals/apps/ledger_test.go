package apps

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/schemas"
)

// The committed ledger holds every declaration of the vertical: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsTheVertical(t *testing.T) {
	l, err := schemas.ReadLedger(filepath.Join("..", "..", schemas.DefaultLedger))
	if err != nil {
		t.Fatal(err)
	}
	k := kernel.New("") // never opened: only its declarations are read
	k.Logger = slog.New(slog.DiscardHandler)
	files, err := vfs.Register(k, vfs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Register(k, files, Config{}); err != nil {
		t.Fatal(err)
	}
	r := l.Check(k.Catalog())
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
