package kernel

import (
	"errors"

	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// kernelTypes are the kernel's own event types: the records its code
// paths keep in the categories New reserves (run-time schema
// registrations, skip decisions, parked events). Each schema stands
// beside the code that writes the record; the kernel registers them all
// here, in one place. The committed ledger holds every one of them, so
// a version listed here never changes: a new version is a new row.
var kernelTypes = []struct {
	typ     string
	version int
	schema  string
}{
	{schemas.TypeRegistered, 1, schemas.RegisteredSchema},
	{projections.TypeEventSkipped, 1, projections.EventSkippedSchema},
	{reactor.TypeEventParked, 1, reactor.EventParkedSchema},
	{reactor.TypeEventUnparked, 1, reactor.EventUnparkedSchema},
}

// registerKernelTypes registers kernelTypes in reg.
func registerKernelTypes(reg *schemas.Registry) error {
	var err error
	for _, t := range kernelTypes {
		err = errors.Join(err, reg.Register(t.typ, t.version, []byte(t.schema)))
	}
	return err
}
