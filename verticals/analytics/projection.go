package analytics

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

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

func applyPageview(ctx context.Context, tx *sql.Tx, e eventlog.Event, release int) error {
	var d PageviewRecorded
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return fmt.Errorf("decode %s: %w", e.Type, err)
	}
	at, err := time.Parse(time.RFC3339Nano, d.At)
	if err != nil {
		return fmt.Errorf("%s: at: %w", e.Type, err)
	}
	day := at.UTC().Format(time.DateOnly)

	res, err := projections.Exec(ctx, tx, `INSERT INTO daily_visitors (site, day, visitor) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, d.Site, day, d.Visitor)
	if err != nil {
		return err
	}
	newVisitor, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if _, err := projections.Exec(ctx, tx, `INSERT INTO daily (site, day, views, visitors) VALUES (?, ?, 1, ?)
		ON CONFLICT (site, day) DO UPDATE SET views = views + 1, visitors = visitors + excluded.visitors`,
		d.Site, day, newVisitor); err != nil {
		return err
	}
	if err := bump(ctx, tx, "daily_paths", "path", d.Site, day, d.Path); err != nil {
		return err
	}
	if d.Referrer != "" {
		if err := bump(ctx, tx, "daily_referrers", "referrer", d.Site, day, d.Referrer); err != nil {
			return err
		}
	}
	if release < 2 {
		_, err = projections.Exec(ctx, tx, `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, d.Site, day, d.At, d.Path, d.Referrer, d.UAClass, d.Visitor)
		return err
	}
	var source sql.NullString // NULL: the event has none (all v1 events)
	if d.UTMSource != "" {
		source = sql.NullString{String: d.UTMSource, Valid: true}
		if err := bump(ctx, tx, "daily_sources", "source", d.Site, day, d.UTMSource); err != nil {
			return err
		}
	}
	_, err = projections.Exec(ctx, tx, `INSERT INTO pageviews (seq, site, day, at, path, referrer, ua_class, visitor, utm_source)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Seq, d.Site, day, d.At, d.Path, d.Referrer, d.UAClass, d.Visitor, source)
	return err
}

// bump counts one view of a key (a path, referrer or source) on a day.
// table and column are constants of this file, never input.
func bump(ctx context.Context, tx *sql.Tx, table, column, site, day, key string) error {
	_, err := projections.Exec(ctx, tx, `INSERT INTO `+table+` (site, day, `+column+`, views) VALUES (?, ?, ?, 1)
		ON CONFLICT (site, day, `+column+`) DO UPDATE SET views = views + 1`, site, day, key)
	return err
}
