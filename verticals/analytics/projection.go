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
		Filter:  eventlog.Filter{Categories: []string{Category}, Types: []string{TypeSiteCreated, TypePageviewRecorded}},
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

func applyPageview(ctx context.Context, tx *sql.Tx, e eventlog.Event, release int) error {
	var d PageviewRecorded
	if err := segjson.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("decode %s: %w", e.Type, err)
	}
	at, err := time.Parse(time.RFC3339Nano, d.At)
	if err != nil {
		return fmt.Errorf("%s: at: %w", e.Type, err)
	}
	day := at.UTC().Format(time.DateOnly)
	if release < 2 {
		_, err = projections.Exec(ctx, tx, `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, d.Site, day, d.At, d.Path, d.Referrer, d.UAClass, d.Visitor)
	} else {
		var source sql.NullString // NULL: the event has none (all v1 events)
		if d.UTMSource != "" {
			source = sql.NullString{String: d.UTMSource, Valid: true}
		}
		_, err = projections.Exec(ctx, tx, `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor, utm_source)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, d.Site, day, d.At, d.Path, d.Referrer, d.UAClass, d.Visitor, source)
	}
	if err != nil {
		return err
	}
	if release < 2 {
		d.UTMSource = "" // release 1 counts no sources
	}
	// The daily tables are written once per key and batch, by Flush.
	if b := projections.Batch[dailyBatch](ctx, tx); b != nil {
		b.add(day, &d)
		return nil
	}
	// Not in a fold transaction (Apply called directly): a batch of one.
	var b dailyBatch
	b.add(day, &d)
	return b.Flush(ctx, tx)
}

// dailyBatch is what the page views of one fold transaction add to the
// daily tables, per site and day. Flush writes each key once, rather
// than five statements per event.
type dailyBatch struct {
	days map[siteDay]*dayBatch
}

type siteDay struct{ site, day string }

// dayBatch is what a batch adds to one site's day.
type dayBatch struct {
	views int64
	// visitors are the day's visitors seen in the batch, each once;
	// daily_visitors says which of them are new.
	visitors map[string]struct{}
	paths    map[string]int64
	// Direct visits (referrer "") are not counted.
	referrers map[string]int64
	sources   map[string]int64
}

func (b *dailyBatch) add(day string, d *PageviewRecorded) {
	if b.days == nil {
		b.days = map[siteDay]*dayBatch{}
	}
	sd := siteDay{d.Site, day}
	db := b.days[sd]
	if db == nil {
		db = &dayBatch{visitors: map[string]struct{}{}, paths: map[string]int64{}, referrers: map[string]int64{}, sources: map[string]int64{}}
		b.days[sd] = db
	}
	db.views++
	db.visitors[d.Visitor] = struct{}{}
	db.paths[d.Path]++
	if d.Referrer != "" {
		db.referrers[d.Referrer]++
	}
	if d.UTMSource != "" {
		db.sources[d.UTMSource]++
	}
}

// Flush writes the batch's counts: sites and days in order, each day's
// keys in order, so what is written never depends on map order. One row
// per statement: SQLite gives a statement that writes many rows its own
// journal, which costs more than it saves.
func (b *dailyBatch) Flush(ctx context.Context, tx *sql.Tx) error {
	days := slices.SortedFunc(maps.Keys(b.days), func(x, y siteDay) int {
		return cmp.Or(cmp.Compare(x.site, y.site), cmp.Compare(x.day, y.day))
	})
	for _, sd := range days {
		db := b.days[sd]
		// The visitors daily_visitors did not hold yet are new.
		var added int64
		for _, v := range slices.Sorted(maps.Keys(db.visitors)) {
			res, err := projections.Exec(ctx, tx, `INSERT INTO daily_visitors (site, day, visitor) VALUES (?, ?, ?)
				ON CONFLICT DO NOTHING`, sd.site, sd.day, v)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			added += n
		}
		if _, err := projections.Exec(ctx, tx, `INSERT INTO daily (site, day, views, visitors) VALUES (?, ?, ?, ?)
			ON CONFLICT (site, day) DO UPDATE SET views = views + excluded.views, visitors = visitors + excluded.visitors`,
			sd.site, sd.day, db.views, added); err != nil {
			return err
		}
		for _, c := range []struct {
			counts map[string]int64
			upsert string
		}{
			{db.paths, `INSERT INTO daily_paths (site, day, path, views) VALUES (?, ?, ?, ?)
				ON CONFLICT (site, day, path) DO UPDATE SET views = views + excluded.views`},
			{db.referrers, `INSERT INTO daily_referrers (site, day, referrer, views) VALUES (?, ?, ?, ?)
				ON CONFLICT (site, day, referrer) DO UPDATE SET views = views + excluded.views`},
			{db.sources, `INSERT INTO daily_sources (site, day, source, views) VALUES (?, ?, ?, ?)
				ON CONFLICT (site, day, source) DO UPDATE SET views = views + excluded.views`},
		} {
			for _, k := range slices.Sorted(maps.Keys(c.counts)) {
				if _, err := projections.Exec(ctx, tx, c.upsert, sd.site, sd.day, k, c.counts[k]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
