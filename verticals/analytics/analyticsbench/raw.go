package analyticsbench

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/verticals/analytics"
)

// Fill appends the sample's events to l, 500 per append with up to 16
// appends in flight, from one caller, so they land in order right after
// the log's last event. It returns the last sequence. progress, when
// not nil, is called now and then with the events appended so far.
//
// The log must hold nothing but this sample (Insert numbers the page
// views from sequence Sites()+1), and is read back for the sites'
// creation times, which the log sets.
func (s *Sample) Fill(ctx context.Context, l *eventlog.Log, progress func(done int)) (uint64, error) {
	base, err := l.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	if base != 0 {
		return 0, fmt.Errorf("the log holds %d events already; fill an empty one", base)
	}
	type pending struct {
		p    *eventlog.Pending
		last uint64
	}
	window := make(chan pending, 16)
	failed := make(chan error, 1)
	go func() {
		var first error
		for p := range window {
			res, err := p.p.Wait()
			if err == nil && res.LastSeq != p.last {
				err = fmt.Errorf("an append landed at seq %d, not %d: another writer?", res.LastSeq, p.last)
			}
			if err != nil && first == nil {
				first = err
			}
		}
		failed <- first
	}()
	n := s.Events()
	chunk := make([]eventlog.Event, 0, eventlog.MaxAppendEvents)
	last := time.Now()
	for i := 0; i < n; {
		chunk = chunk[:0]
		for ; i < n && len(chunk) < eventlog.MaxAppendEvents; i++ {
			chunk = append(chunk, s.Event(i))
		}
		p, err := l.AppendAsync(ctx, chunk)
		if err != nil {
			close(window)
			<-failed
			return 0, err
		}
		window <- pending{p, uint64(i)}
		if progress != nil && time.Since(last) > 200*time.Millisecond {
			progress(i)
			last = time.Now()
		}
	}
	close(window)
	if err := <-failed; err != nil {
		return 0, err
	}
	page, err := l.Read(ctx, 0, len(s.sites), eventlog.Filter{})
	if err != nil {
		return 0, err
	}
	if len(page.Events) != len(s.sites) {
		return 0, fmt.Errorf("read back %d site creations, want %d", len(page.Events), len(s.sites))
	}
	for i, e := range page.Events {
		s.sites[i].created = e.Time
	}
	return uint64(n), nil
}

// Replay reads the first n events of the analytics category from l with
// a JetStream ordered consumer, as the runner's catch-up reads them,
// without decoding them (that is the runner's work): the raw ingredient
// of a replay.
func Replay(ctx context.Context, l *eventlog.Log, n int) error {
	js, err := jetstream.New(l.Conn())
	if err != nil {
		return err
	}
	cons, err := js.OrderedConsumer(ctx, l.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{eventlog.CategorySubject(analytics.Category)}})
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	var got, size int
	done := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		size += len(m.Data()) // the handler runs on one goroutine
		if got++; got == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(projections.DefaultBatchSize))
	if err != nil {
		return err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("ordered replay after %d of %d messages: %w", got, n, ctx.Err())
	}
	if size == 0 {
		return fmt.Errorf("ordered replay read no data")
	}
	return nil
}

// RowsPerTx is how many rows Insert writes per transaction, as many as
// the events the runner folds per transaction while catching up.
const RowsPerTx = projections.DefaultBatchSize

// Insert writes the rows the analytics projection holds once it has
// folded the sample (every table, the same values) into a new SQLite
// file at path, opened and migrated as the runner does it: plain
// INSERTs, RowsPerTx rows per transaction, each statement prepared once.
// The aggregates are counted in memory first. It is the raw ingredient
// of a fold, the best a hand-written loader of the same rows does, and
// returns the time the file took: open, migrate and the transactions,
// not making the rows. Fill the log with the sample first.
func (s *Sample) Insert(ctx context.Context, path string) (time.Duration, error) {
	start := time.Now()
	db := sqlitedb.New(path)
	db.Readers = 1
	if err := db.Open(ctx); err != nil {
		return 0, err
	}
	defer db.Close()
	if err := sqlitedb.Migrate(ctx, db, analytics.Projection().Tables...); err != nil {
		return 0, err
	}
	w := &writer{ctx: ctx, db: db, stmts: map[string]*sql.Stmt{}}
	defer w.close()
	// Before any transaction: the writer pool's one connection is
	// taken while one is open.
	for _, q := range []string{insertSite, insertDaily, insertVisitor, insertPath, insertReferrer, insertSource, insertPageview} {
		st, err := db.Writer.PrepareContext(ctx, q)
		if err != nil {
			return 0, err
		}
		w.stmts[q] = st
	}
	took := time.Since(start)

	rows := make([]row, 0, 4*RowsPerTx)
	for i, st := range s.sites {
		domains, err := json.Marshal(st.Domains)
		if err != nil {
			return 0, err
		}
		rows = append(rows, row{insertSite, []any{st.Site, st.Name, string(domains), st.created.UTC().Format(time.RFC3339), i + 1}})
	}
	// The views are in time order: a day at a time.
	for lo := 0; lo < len(s.views); {
		day := s.day(lo)
		hi := lo
		for hi < len(s.views) && s.day(hi) == day {
			hi++
		}
		rows = s.dayRows(rows, lo, hi)
		lo = hi
		for len(rows) >= RowsPerTx {
			if err := w.write(rows[:RowsPerTx]); err != nil {
				return 0, err
			}
			rows = append(rows[:0], rows[RowsPerTx:]...)
		}
	}
	if err := w.write(rows); err != nil {
		return 0, err
	}
	return took + w.took, nil
}

const (
	insertSite     = `INSERT INTO sites (id, name, domains, created, seq) VALUES (?, ?, ?, ?, ?)`
	insertDaily    = `INSERT INTO daily (site, day, views, visitors) VALUES (?, ?, ?, ?)`
	insertVisitor  = `INSERT INTO daily_visitors (site, day, visitor) VALUES (?, ?, ?)`
	insertPath     = `INSERT INTO daily_paths (site, day, path, views) VALUES (?, ?, ?, ?)`
	insertReferrer = `INSERT INTO daily_referrers (site, day, referrer, views) VALUES (?, ?, ?, ?)`
	insertSource   = `INSERT INTO daily_sources (site, day, source, views) VALUES (?, ?, ?, ?)`
	insertPageview = `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor, utm_source)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

type row struct {
	sql  string
	args []any
}

// day is the UTC day of view i, as days since the sample's start.
func (s *Sample) day(i int) int64 {
	return (s.views[i].at - sampleStart.UnixNano()) / int64(24*time.Hour)
}

// dayRows appends the rows of the views lo to hi, all of one day: their
// pageviews rows, and the day's aggregates, each table in key order.
func (s *Sample) dayRows(rows []row, lo, hi int) []row {
	day := sampleStart.AddDate(0, 0, int(s.day(lo))).Format(time.DateOnly)
	type key struct {
		site uint8
		k    uint16
	}
	type visitor struct {
		site uint8
		id   [16]byte
	}
	views := map[uint8]int64{}
	visitors := map[visitor]bool{}
	paths, refs, sources := map[key]int64{}, map[key]int64{}, map[key]int64{}
	for i := lo; i < hi; i++ {
		v := &s.views[i]
		pv := s.Pageview(i)
		var source any // NULL: no source
		if pv.UTMSource != "" {
			source = pv.UTMSource
			sources[key{v.site, uint16(v.utm)}]++
		}
		rows = append(rows, row{insertPageview, []any{len(s.sites) + i + 1, pv.Site, day, pv.At, pv.Path, pv.Referrer, pv.UAClass, pv.Visitor, source}})
		views[v.site]++
		visitors[visitor{v.site, v.visitor}] = true
		paths[key{v.site, v.path}]++
		if v.ref != 0 {
			refs[key{v.site, v.ref}]++
		}
	}
	siteID := func(i uint8) string { return s.sites[i].Site }
	var daily []row
	perSite := map[uint8]int64{}
	for vis := range visitors {
		perSite[vis.site]++
		rows = append(rows, row{insertVisitor, []any{siteID(vis.site), day, hex.EncodeToString(vis.id[:])}})
	}
	for site, n := range views {
		daily = append(daily, row{insertDaily, []any{siteID(site), day, n, perSite[site]}})
	}
	rows = append(rows, daily...)
	for k, n := range paths {
		rows = append(rows, row{insertPath, []any{siteID(k.site), day, s.sites[k.site].paths[k.k], n}})
	}
	for k, n := range refs {
		rows = append(rows, row{insertReferrer, []any{siteID(k.site), day, s.sites[k.site].referrers[k.k], n}})
	}
	for k, n := range sources {
		rows = append(rows, row{insertSource, []any{siteID(k.site), day, s.sites[k.site].utm[k.k-1].source, n}})
	}
	// Key order within each table, as a careful loader writes them.
	agg := rows[len(rows)-(len(visitors)+len(daily)+len(paths)+len(refs)+len(sources)):]
	slices.SortStableFunc(agg, func(a, b row) int {
		c := cmp.Or(cmp.Compare(a.sql, b.sql), cmp.Compare(a.args[0].(string), b.args[0].(string)))
		if c == 0 && a.sql != insertDaily { // one daily row per site and day
			c = cmp.Compare(a.args[2].(string), b.args[2].(string))
		}
		return c
	})
	return rows
}

// writer writes rows in transactions, each statement prepared once, and
// counts the time spent in SQLite.
type writer struct {
	ctx   context.Context
	db    *sqlitedb.DB
	stmts map[string]*sql.Stmt
	took  time.Duration
}

func (w *writer) write(rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	start := time.Now()
	tx, err := w.db.Writer.BeginTx(w.ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	txStmts := map[string]*sql.Stmt{}
	for _, r := range rows {
		st := txStmts[r.sql]
		if st == nil {
			// The writer has one connection: the prepared statement is reused.
			st = tx.StmtContext(w.ctx, w.stmts[r.sql])
			txStmts[r.sql] = st
		}
		if _, err := st.ExecContext(w.ctx, r.args...); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(r.sql)[2], err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.took += time.Since(start)
	return nil
}

func (w *writer) close() {
	for _, st := range w.stmts {
		st.Close()
	}
}

// Digest describes the analytics tables of the SQLite file at path: per
// table, its row count and a hash of every row in key order. Two files
// with equal digests hold the same read model.
func Digest(ctx context.Context, path string) (map[string]string, error) {
	db := sqlitedb.New(path)
	db.Readers = 1
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	defer db.Close()
	out := map[string]string{}
	for _, t := range analytics.Projection().Tables {
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = c.Name
		}
		list := strings.Join(cols, ", ")
		rows, err := db.Reader.QueryContext(ctx, `SELECT `+list+` FROM `+t.Name+` ORDER BY `+list)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name, err)
		}
		h, n := sha256.New(), 0
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, err
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Fprintf(h, "%T:%v\x00", v, v)
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		out[t.Name] = fmt.Sprintf("%d rows, %x", n, h.Sum(nil)[:8])
	}
	return out, nil
}
