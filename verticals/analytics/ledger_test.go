package analytics

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/schemas"
)

// The committed ledger holds every declaration of every release: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsEveryRelease(t *testing.T) {
	l, err := schemas.ReadLedger(filepath.Join("..", "..", schemas.DefaultLedger))
	if err != nil {
		t.Fatal(err)
	}
	k := kernel.New("") // never opened: only its declarations are read
	if err := Register(k, Config{}); err != nil {
		t.Fatal(err)
	}
	r := l.Check(k.Catalog())
	// Only this vertical's entries: the others are not registered here.
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
	// Release 1's tables are there as they shipped.
	for _, tb := range tablesV1() {
		tb.Name = projectionName + "." + tb.Name
		want, _ := json.Marshal(tb)
		found := false
		for _, e := range l.Entries {
			if got, _ := json.Marshal(e.Table); e.Kind == "table" && e.Name == tb.Name && string(got) == string(want) {
				found = true
			}
		}
		if !found {
			t.Errorf("the ledger lacks release 1's table %s as declared by tablesV1", tb.Name)
		}
	}
}
