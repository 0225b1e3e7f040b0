package projections_test

import (
	"context"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
)

// BenchmarkQuery measures one Runner.Query of a single row by key on an
// idle projection, without and with a MinSeq the projection has passed
// (the read-your-writes path, which checks the wait and returns at once).
func BenchmarkQuery(b *testing.B) {
	l := openLog(b)
	last := appendAll(b, l, hits("counter", 2000, 100)...)
	r := openRunner(b, l, runnerOpts{}, counter("all", eventlog.Filter{}))
	waitFor(b, r, "all", last)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		minSeq uint64
	}{{"plain", 0}, {"min_seq", last}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				res, err := r.Query(ctx, "all", `SELECT n FROM counters WHERE key = ?`, []any{"k42"},
					projections.QueryOptions{MinSeq: c.minSeq})
				if err != nil || len(res.Rows) != 1 || res.Seq != last {
					b.Fatalf("%+v: %v", res, err)
				}
			}
		})
	}
}
