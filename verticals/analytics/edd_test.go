package analytics

import (
	"context"
	"database/sql"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

// Release 2 is a compatible extension of release 1: the event's new
// version only adds an optional property, the tables only grow.
func TestReleaseDeclarationsEvolve(t *testing.T) {
	if err := schemas.CheckCompatible(TypePageviewRecorded, []byte(pageviewRecordedV1), []byte(pageviewRecordedV2)); err != nil {
		t.Fatal(err)
	}
	v1 := map[string]schemas.Table{}
	for _, tb := range tablesV1() {
		v1[tb.Name] = tb
	}
	for _, tb := range tablesV2() {
		if old, ok := v1[tb.Name]; ok {
			if err := schemas.CheckTableEvolution(old, tb); err != nil {
				t.Error(err)
			}
			delete(v1, tb.Name)
		}
	}
	if len(v1) > 0 {
		t.Errorf("release 2 drops tables %v", v1)
	}
}

// EDD in action. Release 1 records page views without utm_source;
// release 2 adds it to the event (schema 2), adds a nullable column and
// a table, and bumps the projection version, so the runner rebuilds the
// read model from the log, blue/green: v1 and v2 events all land, the
// new column filled for v2 events. Then release 1's declarations, fold
// and queries run against the new file, and release 1 runs again on the
// data release 2 wrote: a rollback.
func TestEDD(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const day = "?from=2025-03-10&to=2025-03-10"

	// Release 1.
	e := start(t, dir, 1, trustClients, Config{})
	e.createSite(t, "blog", "blog.example.com")
	e.hit(t, "198.51.100.1", chromeUA, "blog", "https://blog.example.com/a?utm_source=early", "")
	e.hit(t, "198.51.100.2", chromeUA, "blog", "https://blog.example.com/b", "https://news.example.net/")
	for _, ev := range e.newEvents(t) {
		if ev.Schema != 1 || strings.Contains(string(ev.Data), "utm_source") {
			t.Errorf("release 1 wrote schema %d: %s", ev.Schema, ev.Data)
		}
	}
	if st := e.stats(t, "blog", day); st.Views != 2 || len(st.TopSources) != 0 {
		t.Errorf("release 1 stats: %+v", st)
	}
	e.close(t)

	// Release 2 on the same data: version 2 rebuilds from the log before
	// the kernel reports ready.
	e = start(t, dir, 2, trustClients, Config{})
	e.hit(t, "198.51.100.3", iphoneUA, "blog", "https://blog.example.com/c?utm_source=Later", "")
	if pv := pageviewOf(t, e.newEvents(t)[0]); pv.UTMSource != "later" {
		t.Errorf("release 2 page view %+v; want utm_source later", pv)
	}
	st := e.stats(t, "blog", day)
	if st.Views != 3 || st.Visitors != 3 || !reflect.DeepEqual(st.TopSources, []SourceView{{"later", 1}}) {
		t.Errorf("release 2 stats: %+v", st)
	}
	res, err := e.k.Query(ctx, projectionName, `SELECT path, utm_source FROM pageviews ORDER BY seq`, nil, projections.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(res.Rows); string(got) != `[["/a",null],["/b",null],["/c","later"]]` {
		t.Errorf("pageviews (path, utm_source) %s; want NULL for the v1 events, the source for the v2 one", got)
	}
	if st := e.k.Projections().Status(projectionName); st.ServingVersion != 2 {
		t.Fatalf("serving version %d after the bump; want 2", st.ServingVersion)
	}
	file := e.k.Projections().Status(projectionName).File
	e.close(t)

	// Release 1's declarations, queries and fold on release 2's file.
	db := sqlitedb.New(file)
	if err := db.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before := schemaOf(t, db)
	if err := sqlitedb.Migrate(ctx, db, tablesV1()...); err != nil {
		t.Fatalf("migrate with the v1 tables: %v", err)
	}
	if after := schemaOf(t, db); after != before {
		t.Errorf("migrating with the v1 tables changed the schema:\n%s\nto\n%s", before, after)
	}
	from, _ := time.Parse(time.DateOnly, "2025-03-10")
	rtx, err := db.Reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	old, err := readStats(ctx, rtx, 1, "blog", from, from, 10)
	rtx.Rollback()
	if err != nil || old.Views != 3 || old.Visitors != 3 || len(old.TopPaths) != 3 ||
		!reflect.DeepEqual(old.TopReferrers, []RefViews{{"news.example.net", 1}}) || len(old.TopSources) != 0 {
		t.Errorf("v1 stats on the v2 file: %+v, %v", old, err)
	}

	// The v1 fold still inserts (utm_source stays NULL), and the v2
	// queries see its row. Rolled back: the file must stay the log's.
	wtx, err := db.Writer.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wtx.Rollback()
	v1event := eventlog.Event{Seq: 1 << 40, Stream: "analytics.blog", Type: TypePageviewRecorded, Schema: 1,
		Data: json.RawMessage(`{"site":"blog","path":"/d","referrer":"","ua_class":"desktop","visitor":"0123456789abcdef0123456789abcdef","at":"2025-03-10T12:00:00Z"}`)}
	if err := applier(1)(ctx, wtx, v1event); err != nil {
		t.Fatalf("v1 apply on the v2 file: %v", err)
	}
	var source sql.NullString
	if err := wtx.QueryRowContext(ctx, `SELECT utm_source FROM pageviews WHERE seq = ?`, v1event.Seq).Scan(&source); err != nil || source.Valid {
		t.Errorf("utm_source of the v1 fold's row: %v, %v; want NULL", source, err)
	}
	if now, err := readStats(ctx, wtx, 2, "blog", from, from, 10); err != nil || now.Views != 4 || now.Visitors != 4 || len(now.TopSources) != 1 {
		t.Errorf("v2 stats after the v1 fold: %+v, %v", now, err)
	}
	wtx.Rollback()
	db.Close()

	// Rollback: release 1 runs on the data release 2 wrote. Its previous
	// file serves again and folds the v2 event, ignoring utm_source.
	e = start(t, dir, 1, trustClients, Config{})
	if st := e.stats(t, "blog", day); st.Views != 3 || len(st.TopSources) != 0 {
		t.Errorf("release 1 after the rollback: %+v", st)
	}
	e.hit(t, "198.51.100.4", chromeUA, "blog", "https://blog.example.com/e?utm_source=x", "")
	if st := e.stats(t, "blog", day); st.Views != 4 {
		t.Errorf("release 1 after the rollback, one more view: %+v", st)
	}
}

// schemaOf is the file's schema: every table's and index's SQL.
func schemaOf(t *testing.T, db *sqlitedb.DB) string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var typ, name, q string
		if err := rows.Scan(&typ, &name, &q); err != nil {
			t.Fatal(err)
		}
		b.WriteString(typ + " " + name + ": " + q + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
