package kernel_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// A new kernel registers its own event types, and only those, each
// exactly as the committed ledger holds it.
func TestKernelTypesAreLocked(t *testing.T) {
	k := newKernel(t, t.TempDir(), nil)
	cat := k.Catalog()
	want := []string{schemas.TypeRegistered, projections.TypeEventSkipped, reactor.TypeEventParked, reactor.TypeEventUnparked}
	slices.Sort(want)
	if got := cat.Events.Types(); !slices.Equal(got, want) {
		t.Fatalf("a new kernel registers %q, want %q", got, want)
	}
	ledger, err := schemas.ReadLedger(filepath.Join("..", "schemas", "ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var own schemas.Ledger
	for _, e := range ledger.Entries {
		if e.Kind == "event" && slices.Contains(want, e.Name) {
			own.Entries = append(own.Entries, e)
		}
	}
	if len(own.Entries) != len(want) {
		t.Fatalf("the ledger holds %d versions of the kernel's types, want %d (version 1 of each)", len(own.Entries), len(want))
	}
	if r := own.Check(cat); !r.OK() || len(r.Unlocked) != 0 {
		t.Fatalf("the kernel's types against the ledger: problems %q, unlocked %+v", r.Problems, r.Unlocked)
	}
}
