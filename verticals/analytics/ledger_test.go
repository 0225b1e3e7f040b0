package analytics

import (
	"encoding/json"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// The committed ledger holds every declaration of every release: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsEveryRelease(t *testing.T) {
	l := kerneltest.CheckLedger(t, Category, func(k *kernel.Kernel) error { return Register(k, Config{}) })
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
