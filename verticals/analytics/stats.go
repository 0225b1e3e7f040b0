package analytics

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
)

// Stats is the answer of GET /v1/analytics/{site}/stats.
type Stats struct {
	Site string `json:"site"`
	From string `json:"from"`
	To   string `json:"to"`
	// Views and Visitors over the range; Visitors is the sum of the daily
	// uniques (a visitor is unique per day, by design).
	Views        int64        `json:"views"`
	Visitors     int64        `json:"visitors"`
	Days         []Day        `json:"days"`
	TopPaths     []PathViews  `json:"top_paths"`
	TopReferrers []RefViews   `json:"top_referrers"`
	TopSources   []SourceView `json:"top_sources"`
	// Seq is the log sequence the figures reflect: the projection's
	// checkpoint they were read at.
	Seq uint64 `json:"seq"`
}

// Day is one day of Stats.Days.
type Day struct {
	Day      string `json:"day"`
	Views    int64  `json:"views"`
	Visitors int64  `json:"visitors"`
}

// PathViews is one row of Stats.TopPaths.
type PathViews struct {
	Path  string `json:"path"`
	Views int64  `json:"views"`
}

// RefViews is one row of Stats.TopReferrers.
type RefViews struct {
	Referrer string `json:"referrer"`
	Views    int64  `json:"views"`
}

// SourceView is one row of Stats.TopSources.
type SourceView struct {
	Source string `json:"source"`
	Views  int64  `json:"views"`
}

// stats is GET /v1/analytics/{site}/stats?from=&to=&limit=.
func (v *vertical) stats(w http.ResponseWriter, r *http.Request) {
	q, err := kernel.CheckQuery(r, "from", "to", "limit")
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	from, to, err := v.dayRange(q)
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	limit, err := limitParam(q, v.cfg.TopLimit)
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	site := r.PathValue("site")
	if _, err := v.site(r.Context(), site); err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	var st Stats
	seq, err := v.read(r.Context(), func(ctx context.Context, tx *sql.Tx) error {
		var err error
		st, err = readStats(ctx, tx, v.release, site, from, to, limit)
		return err
	})
	if err != nil {
		v.k.WriteError(w, r, err)
		return
	}
	st.Seq = seq
	kernel.WriteJSON(w, http.StatusOK, st)
}

// dayRange reads from and to (YYYY-MM-DD, inclusive); by default the
// DefaultRangeDays days ending today, UTC.
func (v *vertical) dayRange(q map[string][]string) (from, to time.Time, err error) {
	to = v.cfg.Now().UTC().Truncate(24 * time.Hour)
	if to, err = dayParam(q, "to", to); err != nil {
		return
	}
	if from, err = dayParam(q, "from", to.AddDate(0, 0, 1-DefaultRangeDays)); err != nil {
		return
	}
	switch days := int(to.Sub(from).Hours()/24) + 1; {
	case from.After(to):
		err = kernel.Invalidf("from=%s is after to=%s", from.Format(time.DateOnly), to.Format(time.DateOnly))
	case days > MaxRangeDays:
		err = kernel.Invalidf("from=%s to=%s spans %d days; the most is %d", from.Format(time.DateOnly), to.Format(time.DateOnly), days, MaxRangeDays)
	}
	return
}

func dayParam(q map[string][]string, name string, def time.Time) (time.Time, error) {
	vs, ok := q[name]
	if !ok {
		return def, nil
	}
	if len(vs) > 1 {
		return def, kernel.Invalidf("query parameter %s is given %d times; give it once", name, len(vs))
	}
	d, err := time.Parse(time.DateOnly, vs[0])
	if err != nil {
		return def, kernel.Invalidf("query parameter %s=%q is not a day: use YYYY-MM-DD", name, vs[0])
	}
	return d, nil
}

func limitParam(q map[string][]string, def int) (int, error) {
	vs, ok := q["limit"]
	if !ok {
		return def, nil
	}
	if len(vs) > 1 {
		return 0, kernel.Invalidf("query parameter limit is given %d times; give it once", len(vs))
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil || n < 1 || n > MaxTopLimit {
		return 0, kernel.Invalidf("query parameter limit=%q is out of range: want 1 to %d", vs[0], MaxTopLimit)
	}
	return n, nil
}

// readStats reads a site's figures in tx, as a release of the vertical
// reads them: release 1 knows no sources.
func readStats(ctx context.Context, tx *sql.Tx, release int, site string, from, to time.Time, limit int) (Stats, error) {
	f, t := from.Format(time.DateOnly), to.Format(time.DateOnly)
	st := Stats{Site: site, From: f, To: t, Days: []Day{}, TopPaths: []PathViews{}, TopReferrers: []RefViews{}, TopSources: []SourceView{}}

	byDay := map[string]Day{}
	err := scanRows(ctx, tx, `SELECT day, views, visitors FROM daily WHERE site = ? AND day BETWEEN ? AND ?`,
		[]any{site, f, t}, func(rows *sql.Rows) error {
			var d Day
			if err := rows.Scan(&d.Day, &d.Views, &d.Visitors); err != nil {
				return err
			}
			byDay[d.Day] = d
			return nil
		})
	if err != nil {
		return st, err
	}
	for day := from; !day.After(to); day = day.AddDate(0, 0, 1) {
		d := byDay[day.Format(time.DateOnly)]
		d.Day = day.Format(time.DateOnly)
		st.Days = append(st.Days, d)
		st.Views += d.Views
		st.Visitors += d.Visitors
	}

	top := func(table, column string, add func(key string, views int64)) error {
		return scanRows(ctx, tx, `SELECT `+column+`, SUM(views) AS n FROM `+table+`
			WHERE site = ? AND day BETWEEN ? AND ? GROUP BY `+column+` ORDER BY n DESC, `+column+` LIMIT ?`,
			[]any{site, f, t, limit}, func(rows *sql.Rows) error {
				var key string
				var n int64
				if err := rows.Scan(&key, &n); err != nil {
					return err
				}
				add(key, n)
				return nil
			})
	}
	if err := top("daily_paths", "path", func(k string, n int64) { st.TopPaths = append(st.TopPaths, PathViews{k, n}) }); err != nil {
		return st, err
	}
	if err := top("daily_referrers", "referrer", func(k string, n int64) { st.TopReferrers = append(st.TopReferrers, RefViews{k, n}) }); err != nil {
		return st, err
	}
	if release >= 2 {
		if err := top("daily_sources", "source", func(k string, n int64) { st.TopSources = append(st.TopSources, SourceView{k, n}) }); err != nil {
			return st, err
		}
	}
	return st, nil
}

func scanRows(ctx context.Context, tx *sql.Tx, query string, args []any, row func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// read runs fn in one read transaction on the projection, once it
// serves this release's version and has folded every event the log held
// when read was called (read your writes), and returns the sequence
// fn's reads reflect. It waits at most Config.MaxWait; a projection
// still behind then (a rebuild under way) or halted is
// eventlog.ErrUnavailable (503).
func (v *vertical) read(ctx context.Context, fn func(context.Context, *sql.Tx) error) (uint64, error) {
	tail, err := v.k.Log().LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	// This release's queries need its own tables, not a frozen older
	// version's file serving while a version bump rebuilds.
	opts := projections.ReadOptions{MinSeq: tail, MaxWait: v.cfg.MaxWait, CurrentVersion: true}
	return v.k.Projections().Read(ctx, projectionName, opts, func(ctx context.Context, tx *sql.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return fmt.Errorf("analytics projection: %w", err)
		}
		return nil
	})
}
