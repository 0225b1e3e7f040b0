package analytics

import "github.com/fazt-sh/fazt/schemas"

// RegisterSchemas registers the event schemas of this release in r, as
// Register does on a kernel, for the external tests.
func RegisterSchemas(r *schemas.Registry) error {
	for _, s := range eventSchemas {
		if s.release <= current {
			if err := r.Register(s.typ, s.version, []byte(s.schema)); err != nil {
				return err
			}
		}
	}
	return nil
}
