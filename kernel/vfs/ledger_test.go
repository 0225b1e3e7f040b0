package vfs

import (
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
)

// The committed ledger holds every declaration of the service: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsTheService(t *testing.T) {
	kerneltest.CheckLedger(t, Category, func(k *kernel.Kernel) error {
		_, err := Register(k, Config{})
		return err
	})
}
