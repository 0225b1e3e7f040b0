package analytics

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	segjson "github.com/segmentio/encoding/json"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// projectionName is the read model's name: one SQLite file with every
// table below.
const projectionName = "analytics"

// tablesV1 are the tables of projection version 1. Shipped declarations
// never change; a later version appends nullable columns and new tables.
func tablesV1() []schemas.Table {
	text := func(name string) schemas.Column { return schemas.Column{Name: name, Type: "TEXT", NotNull: true} }
	key := func(name string) schemas.Column {
		return schemas.Column{Name: name, Type: "TEXT", NotNull: true, PrimaryKey: true}
	}
	views := schemas.Column{Name: "views", Type: "INTEGER", NotNull: true, Default: "0"}
	return []schemas.Table{
		{Name: "sites", Columns: []schemas.Column{
			key("id"),
			text("name"),
			text("domains"), // a JSON array
			text("created"), // RFC 3339, the time the log stored the event
			{Name: "seq", Type: "INTEGER", NotNull: true},
		}},
		// Views and unique visitors per site and day.
		{Name: "daily", Columns: []schemas.Column{
			key("site"), key("day"), views,
			{Name: "visitors", Type: "INTEGER", NotNull: true, Default: "0"},
		}},
		// The visitors seen per site and day, to count each once.
		{Name: "daily_visitors", Columns: []schemas.Column{key("site"), key("day"), key("visitor")}},
		{Name: "daily_paths", Columns: []schemas.Column{key("site"), key("day"), key("path"), views}},
		// Direct visits (referrer "") are not counted here.
		{Name: "daily_referrers", Columns: []schemas.Column{key("site"), key("day"), key("referrer"), views}},
		// One row per page view, for ad-hoc queries (POST /v1/query).
		{Name: "pageviews", Columns: []schemas.Column{
			{Name: "seq", Type: "INTEGER", PrimaryKey: true},
			text("site"), text("day"), text("at"), text("path"), text("referrer"), text("ua_class"), text("visitor"),
		}, Indexes: []schemas.Index{{Name: "pageviews_site_day", Columns: []string{"site", "day"}}}},
	}
}

// tablesV2 extends version 1: pageviews gains utm_source (nullable, so
// rows of v1 events, which have none, stay valid) and daily_sources
// counts the sources. Version 2 of the projection rebuilds from the log,
// which back-fills both.
func tablesV2() []schemas.Table {
	ts := tablesV1()
	for i := range ts {
		if ts[i].Name == "pageviews" {
			ts[i].Columns = append(ts[i].Columns, schemas.Column{Name: "utm_source", Type: "TEXT"})
		}
	}
	return append(ts, schemas.Table{Name: "daily_sources", Columns: []schemas.Column{
		{Name: "site", Type: "TEXT", NotNull: true, PrimaryKey: true},
		{Name: "day", Type: "TEXT", NotNull: true, PrimaryKey: true},
		{Name: "source", Type: "TEXT", NotNull: true, PrimaryKey: true},
		{Name: "views", Type: "INTEGER", NotNull: true, Default: "0"},
	}})
}

// Projection is the read model of this release, as Register declares
// it on a kernel: for folding the log without one, as benchmarks and
// offline rebuilds do (projections.Runner.BuildAsOf).
func Projection() projections.Projection { return projection(current) }

// projection returns the read model as of a release: version, tables and
// fold go together.
func projection(release int) projections.Projection {
	tables := tablesV1()
	if release >= 2 {
		tables = tablesV2()
	}
	return projections.Projection{
		Name:    projectionName,
		Version: release,
		Tables:  tables,
		Filter:  eventlog.Filter{Categories: []string{category}, Types: []string{TypeSiteCreated, TypePageviewRecorded}},
		Apply:   applier(release),
	}
}

// applier returns the fold of a release. It depends on the event alone:
// days come from the event's "at", never from the clock, so a rebuild
// gives the same rows.
func applier(release int) func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
	return func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
		switch e.Type {
		case TypeSiteCreated:
			return applySite(ctx, tx, e)
		case TypePageviewRecorded:
			return applyPageview(ctx, tx, e, release)
		}
		return nil
	}
}

func applySite(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
	var d SiteCreated
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("decode %s: %w", e.Type, err)
	}
	domains, err := json.Marshal(d.Domains)
	if err != nil {
		return err
	}
	// The first creation wins; the log refuses a second one, but a fold
	// must not fail on what an admin appended around the route.
	_, err = projections.Exec(ctx, tx, `INSERT INTO sites (id, name, domains, created, seq) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`, d.Site, d.Name, string(domains), e.Time.UTC().Format(time.RFC3339), e.Seq)
	return err
}

func applyPageview(ctx context.Context, tx *sql.Tx, e eventlog.Event, release int) (err error) {
	var d PageviewRecorded
	if err := segjson.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("decode %s: %w", e.Type, err)
	}
	at, err := time.Parse(time.RFC3339Nano, d.At)
	if err != nil {
		return fmt.Errorf("%s: at: %w", e.Type, err)
	}
	day := at.UTC().Format(time.DateOnly)

	// The daily counts of a batch of events are written once per key,
	// by Flush; outside a fold transaction, before returning.
	b := projections.Batch[dailyBatch](ctx, tx)
	if b == nil {
		b = new(dailyBatch)
		defer func() {
			if err == nil {
				err = b.Flush(ctx, tx)
			}
		}()
	}
	sd := siteDay{d.Site, day}
	newVisitor, err := b.visit(ctx, tx, sd, d.Visitor)
	if err != nil {
		return err
	}
	b.add(sd, newVisitor, d.Path, d.Referrer, d.UTMSource, release)
	if release < 2 {
		_, err = projections.Exec(ctx, tx, `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, d.Site, day, d.At, d.Path, d.Referrer, d.UAClass, d.Visitor)
		return err
	}
	var source sql.NullString // NULL: the event has none (all v1 events)
	if d.UTMSource != "" {
		source = sql.NullString{String: d.UTMSource, Valid: true}
	}
	_, err = projections.Exec(ctx, tx, `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor, utm_source)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, d.Site, day, d.At, d.Path, d.Referrer, d.UAClass, d.Visitor, source)
	return err
}

// dailyBatch is what the page views of one fold transaction add to the
// daily tables: views and new visitors per site and day, views per path,
// referrer and source. Flush writes each key once, rather than an upsert
// per table and event.
type dailyBatch struct {
	days      map[siteDay]*dayCount
	paths     map[dayKey]int64
	referrers map[dayKey]int64
	sources   map[dayKey]int64
	// seen are the visitors this batch has recorded already: not new.
	seen map[visitorKey]struct{}
}

type siteDay struct{ site, day string }

type dayKey struct {
	siteDay
	key string
}

type visitorKey struct {
	siteDay
	visitor string
}

type dayCount struct{ views, visitors int64 }

// visit records a visitor on a site's day and reports whether it is the
// day's first visit: daily_visitors is written at once, so the answer
// holds across batches.
func (b *dailyBatch) visit(ctx context.Context, tx *sql.Tx, sd siteDay, visitor string) (bool, error) {
	k := visitorKey{sd, visitor}
	if _, ok := b.seen[k]; ok {
		return false, nil
	}
	res, err := projections.Exec(ctx, tx, `INSERT INTO daily_visitors (site, day, visitor) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, sd.site, sd.day, visitor)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if b.seen == nil {
		b.seen = map[visitorKey]struct{}{}
	}
	b.seen[k] = struct{}{}
	return n > 0, nil
}

// add counts one view. Direct visits (referrer "") are in no referrer
// count; sources are counted from release 2.
func (b *dailyBatch) add(sd siteDay, newVisitor bool, path, referrer, source string, release int) {
	if b.days == nil {
		b.days, b.paths, b.referrers, b.sources = map[siteDay]*dayCount{}, map[dayKey]int64{}, map[dayKey]int64{}, map[dayKey]int64{}
	}
	c := b.days[sd]
	if c == nil {
		c = new(dayCount)
		b.days[sd] = c
	}
	c.views++
	if newVisitor {
		c.visitors++
	}
	b.paths[dayKey{sd, path}]++
	if referrer != "" {
		b.referrers[dayKey{sd, referrer}]++
	}
	if source != "" && release >= 2 {
		b.sources[dayKey{sd, source}]++
	}
}

// Flush writes the batch's counts, in key order: what is written never
// depends on map order.
func (b *dailyBatch) Flush(ctx context.Context, tx *sql.Tx) error {
	days := slices.SortedFunc(maps.Keys(b.days), func(x, y siteDay) int {
		return cmp.Or(cmp.Compare(x.site, y.site), cmp.Compare(x.day, y.day))
	})
	for _, sd := range days {
		c := b.days[sd]
		if _, err := projections.Exec(ctx, tx, `INSERT INTO daily (site, day, views, visitors) VALUES (?, ?, ?, ?)
			ON CONFLICT (site, day) DO UPDATE SET views = views + excluded.views, visitors = visitors + excluded.visitors`,
			sd.site, sd.day, c.views, c.visitors); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		counts map[dayKey]int64
		upsert string
	}{
		{b.paths, `INSERT INTO daily_paths (site, day, path, views) VALUES (?, ?, ?, ?)
			ON CONFLICT (site, day, path) DO UPDATE SET views = views + excluded.views`},
		{b.referrers, `INSERT INTO daily_referrers (site, day, referrer, views) VALUES (?, ?, ?, ?)
			ON CONFLICT (site, day, referrer) DO UPDATE SET views = views + excluded.views`},
		{b.sources, `INSERT INTO daily_sources (site, day, source, views) VALUES (?, ?, ?, ?)
			ON CONFLICT (site, day, source) DO UPDATE SET views = views + excluded.views`},
	} {
		keys := slices.SortedFunc(maps.Keys(t.counts), func(x, y dayKey) int {
			return cmp.Or(cmp.Compare(x.site, y.site), cmp.Compare(x.day, y.day), cmp.Compare(x.key, y.key))
		})
		for _, k := range keys {
			if _, err := projections.Exec(ctx, tx, t.upsert, k.site, k.day, k.key, t.counts[k]); err != nil {
				return err
			}
		}
	}
	return nil
}
