package kerneltest

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// CheckLedger fails tb for every way the declarations that register
// makes on a kernel (never opened) break the committed ledger
// (schemas/ledger.jsonl, found from the module's root) or are not
// locked in it. Only the entries of category are judged: the test
// registers one vertical or service, not the binary's whole catalog.
// It returns the ledger, for checks of the package's own.
func CheckLedger(tb testing.TB, category string, register func(*kernel.Kernel) error) *schemas.Ledger {
	tb.Helper()
	l, err := schemas.ReadLedger(filepath.Join(moduleRoot(tb), schemas.DefaultLedger))
	if err != nil {
		tb.Fatal(err)
	}
	k := kernel.New("") // never opened: only its declarations are read
	k.Logger = slog.New(slog.DiscardHandler)
	if err := register(k); err != nil {
		tb.Fatal(err)
	}
	r := l.Check(k.Catalog())
	for _, p := range r.Problems {
		if strings.Contains(p, " "+category+".") {
			tb.Errorf("breaks the ledger: %s", p)
		}
	}
	for _, e := range r.Unlocked {
		if strings.HasPrefix(e.Name, category+".") {
			tb.Errorf("not locked: %s %s version %d; run go run ./cmd/fazt schema lock", e.Kind, e.Name, e.Version)
		}
	}
	return l
}

// moduleRoot is the nearest directory holding go.mod, from the test's
// working directory (its package's directory) up.
func moduleRoot(tb testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("kerneltest: no go.mod above the test's directory")
		}
		dir = parent
	}
}
