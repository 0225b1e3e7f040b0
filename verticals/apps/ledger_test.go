package apps

import (
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/kerneltest"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// The committed ledger holds every declaration of the vertical: run
// `go run ./cmd/fazt schema lock` after adding one.
func TestLedgerHoldsTheVertical(t *testing.T) {
	kerneltest.CheckLedger(t, Category, func(k *kernel.Kernel) error {
		files, err := vfs.Register(k, vfs.Config{})
		if err != nil {
			return err
		}
		return Register(k, files, Config{})
	})
}
