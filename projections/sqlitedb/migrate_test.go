package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/schemas"
)

func pageviewsV1() schemas.Table {
	return schemas.Table{
		Name: "pageviews",
		Columns: []schemas.Column{
			{Name: "id", Type: "TEXT", PrimaryKey: true},
			{Name: "path", Type: "TEXT", NotNull: true},
			{Name: "hits", Type: "INTEGER", NotNull: true, Default: "0"},
		},
		Indexes: []schemas.Index{{Name: "pageviews_path", Columns: []string{"path"}}},
	}
}

// pageviewsV2 appends a nullable column and an index on it.
func pageviewsV2() schemas.Table {
	t := pageviewsV1()
	t.Columns = append(t.Columns, schemas.Column{Name: "referrer", Type: "TEXT"})
	t.Indexes = append(t.Indexes, schemas.Index{Name: "pageviews_referrer", Columns: []string{"referrer", "path"}})
	return t
}

// sessions has a column called like an SQL keyword and a composite key.
func sessions() schemas.Table {
	return schemas.Table{
		Name: "sessions",
		Columns: []schemas.Column{
			{Name: "app", Type: "TEXT", PrimaryKey: true},
			{Name: "order", Type: "INTEGER", PrimaryKey: true},
			{Name: "score", Type: "REAL", Default: "-1.5"},
			{Name: "raw", Type: "BLOB", Default: "X'00ff'"},
			{Name: "amount", Type: "NUMERIC", NotNull: true, Default: "'0'"},
		},
		Indexes: []schemas.Index{{Name: "sessions_score", Columns: []string{"score"}, Unique: true}},
	}
}

func TestMigrateCreatesExtendsAndIsIdempotent(t *testing.T) {
	db := openTest(t)

	mustMigrate(t, db, pageviewsV1(), sessions())
	wantCols := []string{"id TEXT 0 1", "path TEXT 1 0", "hits INTEGER 1 0 0"}
	if got := columnsOf(t, db, "pageviews"); !slices.Equal(got, wantCols) {
		t.Fatalf("v1 columns = %q, want %q", got, wantCols)
	}
	if got, want := indexesOf(t, db, "pageviews"), []string{"pageviews_path 0 (path)"}; !slices.Equal(got, want) {
		t.Fatalf("v1 indexes = %q, want %q", got, want)
	}
	wantSessions := []string{"app TEXT 0 1", "order INTEGER 0 2", "score REAL 0 -1.5 0", "raw BLOB 0 X'00ff' 0", "amount NUMERIC 1 '0' 0"}
	if got := columnsOf(t, db, "sessions"); !slices.Equal(got, wantSessions) {
		t.Fatalf("sessions columns = %q, want %q", got, wantSessions)
	}
	if got, want := indexesOf(t, db, "sessions"), []string{"sessions_score 1 (score)"}; !slices.Equal(got, want) {
		t.Fatalf("sessions indexes = %q, want %q", got, want)
	}
	var fks int
	if err := db.Reader.QueryRow("SELECT count(*) FROM pragma_foreign_key_list('pageviews')").Scan(&fks); err != nil || fks != 0 {
		t.Fatalf("foreign keys = %d (%v), want none", fks, err)
	}

	mustExec(t, db, InsertSQL(pageviewsV1()), "a", "/", 1)
	v1 := snapshot(t, db)
	mustMigrate(t, db, pageviewsV1(), sessions())
	if got := snapshot(t, db); got != v1 {
		t.Fatalf("re-running v1 changed the database:\n%s\nwant:\n%s", got, v1)
	}

	mustMigrate(t, db, pageviewsV2(), sessions())
	wantCols = append(wantCols, "referrer TEXT 0 0")
	if got := columnsOf(t, db, "pageviews"); !slices.Equal(got, wantCols) {
		t.Fatalf("v2 columns = %q, want %q", got, wantCols)
	}
	wantIdx := []string{"pageviews_path 0 (path)", "pageviews_referrer 0 (referrer,path)"}
	if got := indexesOf(t, db, "pageviews"); !slices.Equal(got, wantIdx) {
		t.Fatalf("v2 indexes = %q, want %q", got, wantIdx)
	}
	v2 := snapshot(t, db)
	mustMigrate(t, db, pageviewsV2(), sessions())
	if got := snapshot(t, db); got != v2 {
		t.Fatalf("re-running v2 changed the database:\n%s\nwant:\n%s", got, v2)
	}

	// An older binary migrating with v1: the live column and index it
	// does not know are fine and stay.
	mustMigrate(t, db, pageviewsV1())
	if got := snapshot(t, db); got != v2 {
		t.Fatalf("migrating with v1 after v2 changed the database:\n%s\nwant:\n%s", got, v2)
	}

	// The migrator's policy is gone afterwards.
	_, err := db.Exec(context.Background(), "ALTER TABLE pageviews ADD COLUMN sneaky TEXT")
	wantEDD(t, err, "ALTER TABLE pageviews ADD COLUMN sneaky is not allowed")
	_, err = db.Exec(context.Background(), "CREATE TABLE sneaky (a)")
	wantEDD(t, err, "CREATE TABLE sneaky is not allowed")
}

func TestMigrateAddsDefaultedNotNullColumn(t *testing.T) {
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	mustExec(t, db, InsertSQL(pageviewsV1()), "a", "/", 1)
	v := pageviewsV1()
	v.Columns = append(v.Columns, schemas.Column{Name: "bot", Type: "INTEGER", NotNull: true, Default: "0"})
	mustMigrate(t, db, v)
	var bot int
	if err := db.Reader.QueryRow(`SELECT bot FROM pageviews WHERE id = 'a'`).Scan(&bot); err != nil || bot != 0 {
		t.Fatalf("old row's bot = %d (%v), want the default 0", bot, err)
	}
}

// TestMigrateRefuses: each declaration disagrees with the live v1 table
// in a way storage cannot follow; the error names table, column and
// change, and nothing changes.
func TestMigrateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*schemas.Table)
		want   []string
	}{
		{"retyped column", func(t *schemas.Table) { t.Columns[1].Type = "BLOB" },
			[]string{"table pageviews: column path: type changed from TEXT to BLOB"}},
		{"NOT NULL dropped", func(t *schemas.Table) { t.Columns[1].NotNull = false },
			[]string{"table pageviews: column path: NOT NULL changed from true to false"}},
		{"default changed", func(t *schemas.Table) { t.Columns[2].Default = "1" },
			[]string{"table pageviews: column hits: default changed from 0 to 1"}},
		{"primary key changed", func(t *schemas.Table) { t.Columns[1].PrimaryKey = true },
			[]string{"table pageviews: column path: PRIMARY KEY changed from false to true"}},
		{"new NOT NULL column without default", func(t *schemas.Table) {
			t.Columns = append(t.Columns, schemas.Column{Name: "session", Type: "TEXT", NotNull: true})
		}, []string{"table pageviews: new column session is NOT NULL without a default"}},
		{"new primary key column", func(t *schemas.Table) {
			t.Columns = append(t.Columns, schemas.Column{Name: "day", Type: "TEXT", Default: "''", PrimaryKey: true})
		}, []string{"table pageviews: new column day is part of the primary key"}},
		{"index changed", func(t *schemas.Table) { t.Indexes[0].Columns = []string{"path", "hits"} },
			[]string{"table pageviews: index pageviews_path changed from (path) to (path, hits)"}},
		{"index made unique", func(t *schemas.Table) { t.Indexes[0].Unique = true },
			[]string{"table pageviews: index pageviews_path changed from (path) to UNIQUE (path)"}},
		{"several at once, with a fine column added", func(t *schemas.Table) {
			t.Columns[1].Type = "INTEGER"
			t.Columns[2].NotNull = false
			t.Columns = append(t.Columns, schemas.Column{Name: "referrer", Type: "TEXT"})
		}, []string{"column path: type changed", "column hits: NOT NULL changed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openTest(t)
			mustMigrate(t, db, pageviewsV1())
			mustExec(t, db, InsertSQL(pageviewsV1()), "a", "/", 1)
			before := snapshot(t, db)

			decl := pageviewsV1()
			decl.Indexes = append([]schemas.Index(nil), decl.Indexes...)
			decl.Indexes[0].Columns = append([]string(nil), decl.Indexes[0].Columns...)
			tt.change(&decl)
			// A table that would be created fine is refused with it:
			// nothing runs unless everything may.
			err := Migrate(context.Background(), db, sessions(), decl)
			wantEDD(t, err, append(tt.want, "nothing changed")...)
			if after := snapshot(t, db); after != before {
				t.Fatalf("refused migration changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestMigrateLiveSchemaFromElsewhere: tables made by another tool are
// compared the same way; a FOREIGN KEY is reported.
func TestMigrateLiveSchemaFromElsewhere(t *testing.T) {
	tests := []struct {
		name string
		ddl  string
		want []string // nil = allowed
	}{
		{"foreign key", `CREATE TABLE pageviews (id TEXT PRIMARY KEY, path TEXT NOT NULL REFERENCES paths(path), hits INTEGER NOT NULL DEFAULT 0);
			CREATE INDEX pageviews_path ON pageviews(path)`,
			[]string{"table pageviews: live FOREIGN KEY (path) REFERENCES paths(path)"}},
		{"foreign key to a primary key", `CREATE TABLE pageviews (id TEXT PRIMARY KEY, path TEXT NOT NULL, hits INTEGER NOT NULL DEFAULT 0, app TEXT REFERENCES apps);
			CREATE INDEX pageviews_path ON pageviews(path)`,
			[]string{"table pageviews: live FOREIGN KEY (app) REFERENCES apps"}},
		{"other type name", `CREATE TABLE pageviews (id TEXT PRIMARY KEY, path VARCHAR(200) NOT NULL, hits INTEGER NOT NULL DEFAULT 0)`,
			[]string{"table pageviews: column path: type changed from VARCHAR(200) to TEXT"}},
		{"lower case and quoted names are the same", `CREATE TABLE "PageViews" ("ID" text PRIMARY KEY, Path text NOT NULL, hits integer NOT NULL DEFAULT 0, extra blob);
			CREATE INDEX pageviews_path ON pageviews(PATH)`, nil},
		{"partial index", `CREATE TABLE pageviews (id TEXT PRIMARY KEY, path TEXT NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
			CREATE INDEX pageviews_path ON pageviews(path) WHERE hits > 0`,
			[]string{"index pageviews_path changed from (path, <WHERE clause>) to (path)"}},
		{"expression index", `CREATE TABLE pageviews (id TEXT PRIMARY KEY, path TEXT NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
			CREATE INDEX pageviews_path ON pageviews(lower(path))`,
			[]string{"index pageviews_path changed from (<expression>) to (path)"}},
		{"index name taken by another table", `CREATE TABLE pageviews (id TEXT PRIMARY KEY, path TEXT NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
			CREATE TABLE other (path TEXT); CREATE INDEX pageviews_path ON other(path)`,
			[]string{"index name pageviews_path is taken by index other"}},
		{"name taken by a view", `CREATE VIEW pageviews AS SELECT 1`, []string{"the name pageviews is taken by a view"}},
		{"no shared column", `CREATE TABLE pageviews (x TEXT)`, []string{"table pageviews: shares no column with its declaration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openTest(t)
			raw := rawOpen(t, db.Path)
			if _, err := raw.Exec(tt.ddl); err != nil {
				t.Fatal(err)
			}
			raw.Close()
			before := snapshot(t, db)
			err := Migrate(context.Background(), db, pageviewsV1())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Migrate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Migrate succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("refused migration changed the database")
			}
		})
	}
}

func TestMigrateForeignKeyIsEDDViolation(t *testing.T) {
	db := openTest(t)
	raw := rawOpen(t, db.Path)
	if _, err := raw.Exec(`CREATE TABLE pageviews (id TEXT PRIMARY KEY, path TEXT NOT NULL REFERENCES paths(path), hits INTEGER NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	wantEDD(t, Migrate(context.Background(), db, pageviewsV1()), "FOREIGN KEY (path) REFERENCES paths(path)", "fazt keeps relations soft")
}

func TestMigrateCompositeKeyOrder(t *testing.T) {
	db := openTest(t)
	raw := rawOpen(t, db.Path)
	if _, err := raw.Exec(`CREATE TABLE sessions (app TEXT, "order" INTEGER, score REAL DEFAULT -1.5, raw BLOB DEFAULT X'00ff', amount NUMERIC NOT NULL DEFAULT '0', PRIMARY KEY ("order", app))`); err != nil {
		t.Fatal(err)
	}
	wantEDD(t, Migrate(context.Background(), db, sessions()), "table sessions: PRIMARY KEY is (order, app) live but declared as (app, order)")
}

func TestMigrateRejectsBadDeclarations(t *testing.T) {
	db := openTest(t)
	bad := pageviewsV1()
	bad.Columns[0].Type = "STRING"
	err := Migrate(context.Background(), db, bad)
	if err == nil || errors.Is(err, schemas.ErrEDDViolation) || !strings.Contains(err.Error(), `unknown type "STRING"`) {
		t.Fatalf("Migrate(bad) = %v, want a declaration error", err)
	}
	err = Migrate(context.Background(), db, pageviewsV1(), pageviewsV2())
	if err == nil || !strings.Contains(err.Error(), "table pageviews is declared twice") {
		t.Fatalf("Migrate(twice) = %v", err)
	}
	clash := sessions()
	clash.Indexes[0].Name = "pageviews_path"
	err = Migrate(context.Background(), db, pageviewsV1(), clash)
	if err == nil || !strings.Contains(err.Error(), "index pageviews_path of table sessions: the name is already used by table pageviews") {
		t.Fatalf("Migrate(index name clash) = %v", err)
	}
	if got := snapshot(t, db); got != "" {
		t.Fatalf("a rejected declaration changed the database:\n%s", got)
	}
}

// TestMigrateNotNullWithoutDefaultAtCreation: fine when the column
// exists from the table's first version.
func TestMigrateNotNullWithoutDefaultAtCreation(t *testing.T) {
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	_, err := db.Exec(context.Background(), "INSERT INTO pageviews (id) VALUES ('x')")
	if err == nil || !strings.Contains(err.Error(), "NOT NULL") {
		t.Fatalf("insert without path = %v, want a NOT NULL constraint error", err)
	}
}

// TestTwoDeclarationVersions: after v2 extended the table, a v1 binary
// still reads and writes through its own declaration, and v2 reads v1's
// rows with NULL in the column v1 does not know.
func TestTwoDeclarationVersions(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	v1, v2 := pageviewsV1(), pageviewsV2()

	mustMigrate(t, db, v2)
	mustExec(t, db, InsertSQL(v2), "v2-row", "/pricing", 5, "https://example.com/")

	// The v1 binary: migrate is a no-op, then write and read.
	mustMigrate(t, db, v1)
	mustExec(t, db, InsertSQL(v1), "v1-row", "/about", 2)
	rows, err := db.Query(ctx, SelectSQL(v1)+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got1 []string
	for rows.Next() {
		var id, path string
		var hits int
		if err := rows.Scan(&id, &path, &hits); err != nil {
			t.Fatal(err)
		}
		got1 = append(got1, id+" "+path+" "+string(rune('0'+hits)))
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1-row /about 2", "v2-row /pricing 5"}; !slices.Equal(got1, want) {
		t.Fatalf("v1 reads %q, want %q", got1, want)
	}

	// The v2 binary reads both rows, NULL for the row v1 wrote.
	rows, err = db.Query(ctx, SelectSQL(v2)+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got2 []string
	for rows.Next() {
		var id, path string
		var hits int
		var ref sql.NullString
		if err := rows.Scan(&id, &path, &hits, &ref); err != nil {
			t.Fatal(err)
		}
		r := "NULL"
		if ref.Valid {
			r = ref.String
		}
		got2 = append(got2, id+" "+r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1-row NULL", "v2-row https://example.com/"}; !slices.Equal(got2, want) {
		t.Fatalf("v2 reads %q, want %q", got2, want)
	}
}

func TestInsertSelectSQL(t *testing.T) {
	if got, want := InsertSQL(pageviewsV1()), `INSERT INTO "pageviews" ("id", "path", "hits") VALUES (?, ?, ?)`; got != want {
		t.Errorf("InsertSQL = %s, want %s", got, want)
	}
	if got, want := SelectSQL(pageviewsV1()), `SELECT "id", "path", "hits" FROM "pageviews"`; got != want {
		t.Errorf("SelectSQL = %s, want %s", got, want)
	}
	if got, want := SelectSQL(sessions()), `SELECT "app", "order", "score", "raw", "amount" FROM "sessions"`; got != want {
		t.Errorf("SelectSQL = %s, want %s", got, want)
	}
}

func TestCreateTableSQLHasNoForeignKeys(t *testing.T) {
	got := createTableSQL(sessions())
	want := "CREATE TABLE \"sessions\" (\n  \"app\" TEXT,\n  \"order\" INTEGER,\n  \"score\" REAL DEFAULT -1.5,\n  \"raw\" BLOB DEFAULT X'00ff',\n  \"amount\" NUMERIC NOT NULL DEFAULT '0',\n  PRIMARY KEY (\"app\", \"order\")\n)"
	if got != want {
		t.Fatalf("createTableSQL =\n%s\nwant\n%s", got, want)
	}
}

// TestMigratorPolicyAllowsOnlyAddColumn: even with the migrator's policy
// on, for the very table being extended, the authorizer lets through
// ADD COLUMN but not RENAME, RENAME COLUMN, DROP COLUMN or DROP.
func TestMigratorPolicyAllowsOnlyAddColumn(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	before := snapshot(t, db)

	conn, err := db.Writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mp := policy{role: roleMigrator, alter: map[string]bool{"pageviews": true}}
	if err := conn.Raw(mp.install); err != nil {
		t.Fatal(err)
	}
	defer conn.Raw(policy{role: roleWriter}.install)

	for _, q := range []string{
		"ALTER TABLE pageviews RENAME TO views",
		"ALTER TABLE pageviews RENAME COLUMN path TO url",
		"ALTER TABLE pageviews DROP COLUMN hits",
		"DROP INDEX pageviews_path",
		"DROP TABLE pageviews",
	} {
		_, err := conn.ExecContext(ctx, q)
		wantEDD(t, WrapErr(q, err), "is not allowed")
	}
	if after := snapshot(t, db); after != before {
		t.Fatalf("refused statements changed the database:\n%s", after)
	}
	if _, err := conn.ExecContext(ctx, `ALTER TABLE pageviews ADD COLUMN referrer TEXT`); err != nil {
		t.Fatalf("ADD COLUMN under the migrator policy: %v", err)
	}
	// Only for the tables the migrator extends.
	mustMigrateRaw(t, conn, "CREATE TABLE other (a TEXT)")
	_, err = conn.ExecContext(ctx, "ALTER TABLE other ADD COLUMN b TEXT")
	wantEDD(t, WrapErr("ALTER TABLE other ADD COLUMN b TEXT", err))
}

func mustMigrateRaw(tb testing.TB, conn *sql.Conn, q string) {
	tb.Helper()
	if _, err := conn.ExecContext(context.Background(), q); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// TestMigrateFailedStep: a step SQLite rejects (a UNIQUE index existing
// rows violate) fails with SQLite's error, earlier steps stay, the
// failing step leaves nothing behind, and the writer's policy is back.
func TestMigrateFailedStep(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	mustExec(t, db, InsertSQL(pageviewsV1()), "a", "/same", 1)
	mustExec(t, db, InsertSQL(pageviewsV1()), "b", "/same", 1)

	v := pageviewsV2()
	v.Indexes = append(v.Indexes, schemas.Index{Name: "pageviews_unique_path", Columns: []string{"path"}, Unique: true})
	err := Migrate(ctx, db, v)
	if err == nil || errors.Is(err, schemas.ErrEDDViolation) || !strings.Contains(err.Error(), "create index pageviews_unique_path on pageviews") {
		t.Fatalf("Migrate = %v, want the UNIQUE constraint failure naming the step", err)
	}
	if got := columnsOf(t, db, "pageviews"); len(got) != 4 {
		t.Fatalf("columns = %q, want referrer added by the earlier step", got)
	}
	for _, ix := range indexesOf(t, db, "pageviews") {
		if strings.HasPrefix(ix, "pageviews_unique_path") {
			t.Fatal("the failed step left its index behind")
		}
	}
	_, err = db.Exec(ctx, "ALTER TABLE pageviews ADD COLUMN sneaky TEXT")
	wantEDD(t, err, "ALTER TABLE pageviews ADD COLUMN sneaky")
}

// TestConcurrentReadersAndWriter exercises the pools under -race.
func TestConcurrentReadersAndWriter(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	const writes = 200
	done := make(chan error, DefaultReaders+1)
	go func() {
		for i := 0; i < writes; i++ {
			if _, err := db.Exec(ctx, InsertSQL(pageviewsV1()), "id"+strconv.Itoa(i), "/", i); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for r := 0; r < DefaultReaders; r++ {
		go func() {
			last := 0
			for last < writes {
				var n int
				if err := db.Reader.QueryRowContext(ctx, "SELECT count(*) FROM pageviews").Scan(&n); err != nil {
					done <- err
					return
				}
				if n < last {
					done <- errors.New("a reader went back in time")
					return
				}
				last = n
			}
			done <- nil
		}()
	}
	for i := 0; i < DefaultReaders+1; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
