// Package analyticsbench measures the analytics read model's rebuild
// against the raw ingredients of a rebuild, for the go test benchmark
// of package analytics and for `fazt bench`.
//
// A [Sample] is page views of several sites, of the shape the collector
// records and `fazt demo` makes: time-ordered over [Days] days, paths
// and referrers with popular heads and long tails, campaign sources,
// device classes and visitors returning within a day. It depends only
// on its size and seed. [Sample.Fill] appends it to a log; the fold to
// measure is analytics.Projection() through a projections.Runner
// (BuildAsOf, Rebuild or catch-up); the raw ingredients are
//
//   - [Replay]: reading the same events with a JetStream ordered
//     consumer, as the runner's catch-up reads them, without decoding;
//   - [Sample.Insert]: writing the rows the folded read model holds
//     (every table, the same values, aggregates counted in memory) into
//     a new SQLite file opened and migrated as the runner does it, 1000
//     rows per transaction with prepared statements.
//
// A fold can be no faster than the slower of the two, so a rebuild's
// figure is reported as a ratio to min(replay, insert), both measured in
// the same run. [Digest] hashes the tables of a file: a folded file and
// the inserted one must have equal digests, which checks the fold and
// the benchmark's idea of its rows against each other.
//
// # Usage
//
//	s := analyticsbench.NewSample(1_000_000, 1)
//	last, err := s.Fill(ctx, log, nil) // an empty log
//	err = analyticsbench.Replay(ctx, log, s.Events())
//	took, err := s.Insert(ctx, filepath.Join(dir, "raw.db"))
//
//	r := projections.New(dir, log)
//	err = r.Register(analytics.Projection())
//	err = r.BuildAsOf(ctx, "analytics", last, filepath.Join(dir, "rebuilt.db"))
//	a, _ := analyticsbench.Digest(ctx, filepath.Join(dir, "raw.db"))
//	b, _ := analyticsbench.Digest(ctx, filepath.Join(dir, "rebuilt.db")) // equal to a
package analyticsbench
