package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/verticals/analytics"
	"github.com/fazt-sh/fazt/verticals/analytics/analyticsbench"
)

// fillAndProject fills l with n hits, then opens a runner in dir and
// waits until it has projected them: filling first and catching up
// after is quicker than projecting live while filling.
func (b *bench) fillAndProject(ctx context.Context, l *eventlog.Log, dir string, n int) (*projections.Runner, uint64, error) {
	b.prog.say("filling a log with %d events", n)
	last, err := fill(ctx, l, n, func(done int) { b.prog.say("filling a log: %d/%d events", done, n) })
	if err != nil {
		return nil, 0, fmt.Errorf("fill the log: %w", err)
	}
	r, err := openRunner(ctx, dir, l)
	if err != nil {
		return nil, 0, err
	}
	if err := b.waitProjected(ctx, r, projName, last); err != nil {
		closeRunner(r)
		return nil, 0, err
	}
	return r, last, nil
}

// waitProjected waits until r has folded the log up to last into name,
// saying how far it got now and then.
func (b *bench) waitProjected(ctx context.Context, r *projections.Runner, name string, last uint64) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		err := r.WaitFor(wctx, name, last)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("project the log: %w", err)
		}
		b.prog.say("projecting: %d/%d events", r.Status(name).Seq, last)
	}
}

// rebuild is scenario 3: the counting projection's catch-up and rebuild,
// then the analytics read model's rebuild, each with its own log.
func (b *bench) rebuild(ctx context.Context, dir string) ([]Row, error) {
	rows, err := b.rebuildCounts(ctx, filepath.Join(dir, "counts"))
	if err != nil {
		return rows, err
	}
	pv, err := b.rebuildAnalytics(ctx, filepath.Join(dir, "analytics"))
	if err != nil {
		return rows, fmt.Errorf("analytics: %w", err)
	}
	return append(rows, pv), nil
}

// rebuildCounts is a new projection catching up with the log, and a full
// blue/green rebuild of a serving one, against the two raw ingredients
// of a fold: replaying the events in order with a JetStream ordered
// consumer and inserting the same rows into SQLite in batches.
func (b *bench) rebuildCounts(ctx context.Context, dir string) ([]Row, error) {
	n := b.cfg.RebuildEvents
	l, err := openLog(ctx, filepath.Join(dir, "log"), eventlog.Relaxed)
	if err != nil {
		return nil, err
	}
	defer closeLog(l)
	serving, last, err := b.fillAndProject(ctx, l, filepath.Join(dir, "serving"), n)
	if err != nil {
		return nil, err
	}
	defer closeRunner(serving)

	var replays, inserts, catchups, rebuilds []sample
	for r := 1; r <= b.cfg.Rounds; r++ {
		b.prog.say("raw ordered replay, round %d/%d", r, b.cfg.Rounds)
		replay, keys, err := orderedReplay(ctx, l, n)
		if err != nil {
			return nil, err
		}
		b.prog.say("raw batched SQLite insert, round %d/%d", r, b.cfg.Rounds)
		rdir := filepath.Join(dir, fmt.Sprintf("raw%d", r))
		if err := os.MkdirAll(rdir, 0o700); err != nil {
			return nil, err
		}
		insert, err := rawInsert(ctx, filepath.Join(rdir, "counts.db"), keys)
		os.RemoveAll(rdir)
		if err != nil {
			return nil, fmt.Errorf("raw insert: %w", err)
		}
		b.prog.say("kernel catch-up, round %d/%d", r, b.cfg.Rounds)
		catchup, err := catchUp(ctx, filepath.Join(dir, fmt.Sprintf("catchup%d", r)), l, last)
		if err != nil {
			return nil, err
		}
		b.prog.say("kernel full rebuild, round %d/%d", r, b.cfg.Rounds)
		rebuilt, err := rebuildOnce(ctx, serving, projName, n)
		if err != nil {
			return nil, err
		}
		replays, inserts = append(replays, replay), append(inserts, insert)
		catchups, rebuilds = append(catchups, catchup), append(rebuilds, rebuilt)
	}
	// The raw baseline of a round is its slower ingredient: a fold can
	// be no faster than reading the events or writing the rows.
	raws := make([]sample, len(replays))
	for i := range raws {
		raws[i] = replays[i]
		if inserts[i].rate() < replays[i].rate() {
			raws[i] = inserts[i]
		}
	}
	note := fmt.Sprintf("%d events; raw ordered replay %s ev/s, raw batched insert %s ev/s (medians)",
		n, si(median(rates(replays))), si(median(rates(inserts))))
	baseline := "min(ordered replay, batched SQLite insert)"
	catch := rateRow("catch-up, new projection", "ev/s", baseline, raws, catchups)
	full := rateRow("full rebuild, blue/green", "ev/s", baseline, raws, rebuilds)
	for _, row := range []*Row{&catch, &full} {
		row.Latency = fmt.Sprintf("between checkpoint advances (batches of up to %d)", projections.DefaultBatchSize)
		row.RawP50, row.RawP99 = 0, 0
		row.Note = note
	}
	full.atLeast(0.5)
	return []Row{catch, full}, nil
}

// rebuildAnalytics is scenario 3's analytics row: a full blue/green
// rebuild of the analytics vertical's read model from a log of
// --rebuild-events realistic page views (analyticsbench), against its
// own raw ingredients: an ordered replay of the same events, and a
// batched insert of the rows the read model holds (every table, the
// aggregates counted beforehand).
func (b *bench) rebuildAnalytics(ctx context.Context, dir string) (Row, error) {
	l, err := openLog(ctx, filepath.Join(dir, "log"), eventlog.Relaxed)
	if err != nil {
		return Row{}, err
	}
	defer closeLog(l)
	s := analyticsbench.NewSample(b.cfg.RebuildEvents, 1)
	n := s.Events()
	b.prog.say("filling a log with %d page views", s.Views())
	last, err := s.Fill(ctx, l, func(done int) { b.prog.say("filling a log with page views: %d/%d events", done, n) })
	if err != nil {
		return Row{}, fmt.Errorf("fill the log: %w", err)
	}
	serving := projections.New(filepath.Join(dir, "serving"), l)
	serving.Logger = quiet
	p := analytics.Projection()
	if err := serving.Register(p); err != nil {
		return Row{}, err
	}
	if err := serving.Open(ctx); err != nil {
		return Row{}, fmt.Errorf("open projections: %w", err)
	}
	defer closeRunner(serving)
	if err := b.waitProjected(ctx, serving, p.Name, last); err != nil {
		return Row{}, err
	}

	var raws, rebuilds []sample
	var replays, inserts []float64
	for r := 1; r <= b.cfg.Rounds; r++ {
		b.prog.say("analytics: raw ordered replay, round %d/%d", r, b.cfg.Rounds)
		start := time.Now()
		if err := analyticsbench.Replay(ctx, l, n); err != nil {
			return Row{}, err
		}
		replay := sample{ops: n, elapsed: time.Since(start)}
		b.prog.say("analytics: raw batched SQLite insert, round %d/%d", r, b.cfg.Rounds)
		raw := filepath.Join(dir, fmt.Sprintf("raw%d.db", r))
		took, err := s.Insert(ctx, raw)
		if err != nil {
			return Row{}, fmt.Errorf("raw insert: %w", err)
		}
		insert := sample{ops: n, elapsed: took}
		b.prog.say("analytics: kernel full rebuild, round %d/%d", r, b.cfg.Rounds)
		rebuilt, err := rebuildOnce(ctx, serving, p.Name, n)
		if err != nil {
			return Row{}, err
		}
		if r == 1 {
			if err := sameRows(ctx, raw, serving.Status(p.Name).File); err != nil {
				return Row{}, err
			}
		}
		removeDB(raw)
		replays, inserts = append(replays, replay.rate()), append(inserts, insert.rate())
		raws, rebuilds = append(raws, slower(replay, insert)), append(rebuilds, rebuilt)
	}
	row := rateRow("full rebuild, blue/green, analytics", "ev/s", "min(ordered replay, batched SQLite insert)", raws, rebuilds)
	row.Latency = fmt.Sprintf("between checkpoint advances (batches of up to %d)", projections.DefaultBatchSize)
	row.RawP50, row.RawP99 = 0, 0
	row.Note = fmt.Sprintf("%d page views of %d sites over %d days and %d site creations (analyticsbench); raw ordered replay %s ev/s, "+
		"raw batched insert of the read model's rows %s ev/s (medians)",
		s.Views(), s.Sites(), analyticsbench.Days, s.Sites(), si(median(replays)), si(median(inserts)))
	row.atLeast(0.5)
	return row, nil
}

// slower is the sample with the lower rate: a fold can be no faster
// than reading the events or writing the rows.
func slower(a, b sample) sample {
	if b.rate() < a.rate() {
		return b
	}
	return a
}

// sameRows reports an error unless the SQLite files at raw and folded
// hold the same analytics read model: the benchmark's rows are the
// fold's.
func sameRows(ctx context.Context, raw, folded string) error {
	a, err := analyticsbench.Digest(ctx, raw)
	if err != nil {
		return err
	}
	f, err := analyticsbench.Digest(ctx, folded)
	if err != nil {
		return err
	}
	if !maps.Equal(a, f) {
		return fmt.Errorf("the rebuilt read model differs from the rows inserted raw: %v, raw %v", f, a)
	}
	return nil
}

func removeDB(path string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

func rates(s []sample) []float64 {
	out := make([]float64, len(s))
	for i := range s {
		out[i] = s[i].rate()
	}
	return out
}

// catchUp opens a new runner in dir, which builds the projection from
// the log, and times it until it has folded up to last.
func catchUp(ctx context.Context, dir string, l *eventlog.Log, last uint64) (sample, error) {
	defer os.RemoveAll(dir)
	start := time.Now()
	r, err := openRunner(ctx, dir, l)
	if err != nil {
		return sample{}, err
	}
	defer closeRunner(r)
	lat, err := track(ctx, func() (uint64, bool) {
		s := r.Status(projName)
		return s.Seq, s.Seq >= last
	})
	if err != nil {
		return sample{}, fmt.Errorf("catch-up: %w", err)
	}
	return sample{ops: int(last), elapsed: time.Since(start), lat: lat}, nil
}

// rebuildOnce rebuilds the serving runner's projection name from
// scratch and times it until the new file has replaced the old.
func rebuildOnce(ctx context.Context, r *projections.Runner, name string, n int) (sample, error) {
	old := r.Status(name).File
	start := time.Now()
	if err := r.Rebuild(ctx, name); err != nil {
		return sample{}, err
	}
	lat, err := track(ctx, func() (uint64, bool) {
		s := r.Status(name)
		if s.Rebuild != nil {
			return s.Rebuild.Done, false
		}
		return s.Seq, s.File != old
	})
	if err != nil {
		return sample{}, fmt.Errorf("rebuild: %w", err)
	}
	return sample{ops: n, elapsed: time.Since(start), lat: lat}, nil
}

// track polls at every millisecond until it reports done, and returns
// the time between the advances it saw (a checkpoint moves once per
// committed batch).
func track(ctx context.Context, at func() (uint64, bool)) ([]time.Duration, error) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	limit := time.After(10 * time.Minute)
	var lat []time.Duration
	prev, since := uint64(0), time.Now()
	for {
		seq, done := at()
		if seq != prev {
			now := time.Now()
			lat = append(lat, now.Sub(since))
			prev, since = seq, now
		}
		if done {
			slices.Sort(lat)
			return lat, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-limit:
			return nil, fmt.Errorf("not done after 10 minutes (at %d)", seq)
		case <-t.C:
		}
	}
}

// visible is scenario 4: the time from an append's scheduled send to the
// projection's checkpoint covering it, first at the highest rate the log
// and the projection sustain together, then paced open-loop at 1,000
// events/s (DESIGN.md's target) and at 50% and 80% of that maximum.
func (b *bench) visible(ctx context.Context, dir string) ([]Row, error) {
	l, err := openLog(ctx, filepath.Join(dir, "log"), eventlog.Strict)
	if err != nil {
		return nil, err
	}
	defer closeLog(l)
	r, err := openRunner(ctx, filepath.Join(dir, "proj"), l)
	if err != nil {
		return nil, err
	}
	defer closeRunner(r)

	b.prog.say("closed loop: the highest append-to-projection rate")
	start := time.Now()
	s, err := asyncLoop(ctx, asyncWindow, 2*b.cfg.Duration, func(i int) (func() error, error) {
		p, err := l.AppendAsync(ctx, []eventlog.Event{hit(i)})
		if err != nil {
			return nil, err
		}
		return func() error { _, err := p.Wait(); return err }, nil
	})
	if err != nil {
		return nil, err
	}
	last, err := l.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	if err := waitProjected(ctx, r, last, 10*time.Minute); err != nil {
		return nil, err
	}
	maxRate := float64(s.ops) / time.Since(start).Seconds()
	rows := []Row{{Case: "maximum, closed loop", Unit: "ev/s", Kernel: maxRate,
		Note: "4000 single-event strict appends in flight; events / time until the projection covered the last"}}

	for _, c := range []struct {
		name string
		rate float64
	}{
		{"1,000 ev/s", 1000},
		{"50% of maximum", maxRate / 2},
		{"80% of maximum", maxRate * 0.8},
	} {
		b.prog.say("paced at %s ev/s (%s)", si(c.rate), c.name)
		p, err := pace(ctx, l, r, c.rate, 4*b.cfg.Duration)
		if err != nil {
			return rows, fmt.Errorf("paced at %.0f/s: %w", c.rate, err)
		}
		row := Row{Case: c.name, Unit: "ev/s", Kernel: p.rate(), Kernels: []float64{p.rate()},
			P50: ms(percentile(p.lat, 50)), P99: ms(percentile(p.lat, 99)),
			Latency: "scheduled send to projection checkpoint",
			Note: fmt.Sprintf("paced at %s ev/s for %v; acknowledged p50 %s, p99 %s", si(c.rate), 4*b.cfg.Duration,
				millis(ms(percentile(p.ack, 50))), millis(ms(percentile(p.ack, 99))))}
		if c.rate == 1000 {
			row.Target = "p99 < 10 ms"
			met := row.P99 < 10
			row.Met = &met
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// pace appends single events open-loop at rate for d, each at its
// scheduled time whatever happened to the ones before, and measures from
// that time to the moment the projection's checkpoint covers the event,
// so a stall delays every event scheduled during it (no coordinated
// omission).
func pace(ctx context.Context, l *eventlog.Log, r *projections.Runner, rate float64, d time.Duration) (paced, error) {
	base, err := l.LastSeq(ctx)
	if err != nil {
		return paced{}, err
	}
	if err := waitProjected(ctx, r, base, time.Minute); err != nil {
		return paced{}, err
	}
	n := max(int(rate*d.Seconds()), 1)
	end := base + uint64(n)
	sched, acked, seen := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watched := make(chan error, 1)
	go func() {
		at := base
		for at < end {
			if err := r.WaitFor(wctx, projName, at+1); err != nil {
				watched <- err
				return
			}
			cp := r.Status(projName).Seq
			now := time.Now() // after reading cp: never early
			for s := at + 1; s <= min(cp, end); s++ {
				seen[s-base-1] = now
			}
			at = max(at, cp)
		}
		watched <- nil
	}()

	// The log is this process's alone and appends queued by one caller
	// commit in order, so append i lands at base+i+1; the acks confirm it.
	type queued struct {
		i int
		p *eventlog.Pending
	}
	acks := make(chan queued, n)
	ackErr := make(chan error, 1)
	go func() {
		var first error
		for q := range acks {
			res, err := q.p.Wait()
			acked[q.i] = time.Now()
			if err == nil && res.LastSeq != base+uint64(q.i)+1 {
				err = fmt.Errorf("append %d landed at seq %d, want %d: another writer?", q.i, res.LastSeq, base+uint64(q.i)+1)
			}
			if err != nil && first == nil {
				first = err
			}
		}
		ackErr <- first
	}()
	t0 := time.Now().Add(time.Millisecond)
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		sched[i] = at
		p, err := l.AppendAsync(ctx, []eventlog.Event{hit(i)})
		if err != nil {
			close(acks)
			<-ackErr
			return paced{}, err
		}
		acks <- queued{i, p}
	}
	close(acks)
	if err := <-ackErr; err != nil {
		return paced{}, err
	}
	select {
	case err := <-watched:
		if err != nil {
			return paced{}, err
		}
	case <-time.After(time.Minute):
		return paced{}, fmt.Errorf("the projection did not reach seq %d within a minute of the last append", end)
	}
	lat, ack := make([]time.Duration, n), make([]time.Duration, n)
	for i := range lat {
		lat[i], ack[i] = seen[i].Sub(sched[i]), acked[i].Sub(sched[i])
	}
	slices.Sort(lat)
	slices.Sort(ack)
	return paced{sample{ops: n, elapsed: seen[n-1].Sub(t0), lat: lat}, ack}, nil
}

// paced is an open-loop run: lat is to visible, ack to acknowledged.
type paced struct {
	sample
	ack []time.Duration
}

// queries is scenario 5: read-only queries through the runner (Query:
// a read transaction that also reads the checkpoint, rows as values)
// against plain SELECTs of the same rows from a SQLite file opened the
// same way.
func (b *bench) queries(ctx context.Context, dir string) ([]Row, error) {
	n := min(b.cfg.RebuildEvents, 20000)
	l, err := openLog(ctx, filepath.Join(dir, "log"), eventlog.Relaxed)
	if err != nil {
		return nil, err
	}
	defer closeLog(l)
	r, _, err := b.fillAndProject(ctx, l, filepath.Join(dir, "proj"), n)
	if err != nil {
		return nil, err
	}
	defer closeRunner(r)

	// The same rows, written plainly.
	counts := map[string]int64{}
	for i := range n {
		k, _ := keyOf(hit(i).Data)
		counts[k]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	db := sqlitedb.New(filepath.Join(dir, "raw.db"))
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	defer db.Close()
	if err := sqlitedb.Migrate(ctx, db, countsTable); err != nil {
		return nil, err
	}
	tx, err := db.Writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `INSERT INTO counts (key, n) VALUES (?, ?)`, k, counts[k]); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	res, err := r.Query(ctx, projName, `SELECT count(*), sum(n) FROM counts`, nil, projections.QueryOptions{})
	if err != nil {
		return nil, err
	}
	if got := fmt.Sprint(res.Rows[0]...); got != fmt.Sprint(len(keys), n) {
		return nil, fmt.Errorf("the projection holds %s rows and events, the raw file %d %d", got, len(keys), n)
	}

	const callers = sqlitedb.DefaultReaders
	var rows []Row
	for _, c := range []struct {
		name, sql string
		key       func(i int) string
	}{
		{"point lookup by key", `SELECT key, n FROM counts WHERE key = ?`,
			func(i int) string { return keys[(i*7919)%len(keys)] }},
		{"range of 100 rows", `SELECT key, n FROM counts WHERE key >= ? ORDER BY key LIMIT 100`,
			func(i int) string { return keys[(i*7919)%max(len(keys)-100, 1)] }},
	} {
		rawRound := func() (sample, error) {
			return closedLoop(ctx, callers, b.cfg.Duration, func(i int) error {
				rs, err := db.Reader.QueryContext(ctx, c.sql, c.key(i))
				if err != nil {
					return err
				}
				defer rs.Close()
				got := 0
				for rs.Next() {
					var k string
					var v int64
					if err := rs.Scan(&k, &v); err != nil {
						return err
					}
					got++
				}
				if err := rs.Err(); err != nil {
					return err
				}
				if got == 0 {
					return fmt.Errorf("no rows")
				}
				return nil
			})
		}
		kernelRound := func() (sample, error) {
			return closedLoop(ctx, callers, b.cfg.Duration, func(i int) error {
				res, err := r.Query(ctx, projName, c.sql, []any{c.key(i)}, projections.QueryOptions{})
				if err == nil && len(res.Rows) == 0 {
					err = fmt.Errorf("no rows")
				}
				return err
			})
		}
		name := fmt.Sprintf("%s, %d readers", c.name, callers)
		raws, kernels, err := b.alternate(name, rawRound, kernelRound)
		if err != nil {
			return rows, err
		}
		row := rateRow(name, "q/s", "SELECT on SQLite, same rows", raws, kernels)
		row.Latency = "one query"
		row.Note = fmt.Sprintf("%d rows folded from %d events", len(keys), n)
		rows = append(rows, row)
	}
	return rows, nil
}
