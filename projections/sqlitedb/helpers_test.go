package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/schemas"
)

// openTest opens a fresh database in t.TempDir, with its tunables
// changed by tune, and closes it at cleanup.
func openTest(tb testing.TB, tune ...func(*DB)) *DB {
	tb.Helper()
	db := New(filepath.Join(tb.TempDir(), "test.db"))
	for _, f := range tune {
		f(db)
	}
	if err := db.Open(context.Background()); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// rawOpen opens the file without the authorizer, as another tool would.
func rawOpen(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { raw.Close() })
	return raw
}

func mustMigrate(tb testing.TB, db *DB, tables ...schemas.Table) {
	tb.Helper()
	if err := Migrate(context.Background(), db, tables...); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
}

func mustExec(tb testing.TB, db *DB, query string, args ...any) {
	tb.Helper()
	if _, err := db.Exec(context.Background(), query, args...); err != nil {
		tb.Fatalf("Exec %q: %v", query, err)
	}
}

// snapshot renders the schema and every row of every table, to show
// that a refused statement changed nothing.
func snapshot(tb testing.TB, db *DB) string {
	tb.Helper()
	ctx := context.Background()
	var b strings.Builder
	var tables []string
	rows, err := db.Reader.QueryContext(ctx, "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY name")
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var typ, name, tbl, sqlText string
		if err := rows.Scan(&typ, &name, &tbl, &sqlText); err != nil {
			tb.Fatal(err)
		}
		b.WriteString(typ + " " + name + " " + tbl + " " + sqlText + "\n")
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		tb.Fatal(err)
	}
	for _, t := range tables {
		rows, err := db.Reader.QueryContext(ctx, "SELECT * FROM "+quoteIdent(t)+" ORDER BY rowid")
		if err != nil {
			tb.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				tb.Fatal(err)
			}
			b.WriteString(t + ": ")
			for _, v := range vals {
				b.WriteString(sprint(v) + "|")
			}
			b.WriteString("\n")
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			tb.Fatal(err)
		}
	}
	return b.String()
}

func sprint(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return string(v)
	}
	return fmt.Sprint(v)
}

// columnsOf lists a live table's columns as "name TYPE notnull default pk".
func columnsOf(tb testing.TB, db *DB, table string) []string {
	tb.Helper()
	rows, err := db.Reader.QueryContext(context.Background(),
		`SELECT name, type, "notnull", coalesce(dflt_value, ''), pk FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, typ, dflt string
		var notnull, pk int64
		if err := rows.Scan(&name, &typ, &notnull, &dflt, &pk); err != nil {
			tb.Fatal(err)
		}
		f := []string{name, typ, strconv.FormatInt(notnull, 10), dflt, strconv.FormatInt(pk, 10)}
		out = append(out, strings.Join(slices.DeleteFunc(f, func(s string) bool { return s == "" }), " "))
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// indexesOf lists a table's CREATE INDEX indexes as "name unique (cols)".
func indexesOf(tb testing.TB, db *DB, table string) []string {
	tb.Helper()
	ctx := context.Background()
	rows, err := db.Reader.QueryContext(ctx,
		`SELECT l.name, l."unique", group_concat(i.name, ',')
		   FROM pragma_index_list(?) AS l, pragma_index_info(l.name) AS i
		  WHERE l.origin = 'c' GROUP BY l.name ORDER BY l.name`, table)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, cols string
		var unique int64
		if err := rows.Scan(&name, &unique, &cols); err != nil {
			tb.Fatal(err)
		}
		out = append(out, name+" "+strconv.FormatInt(unique, 10)+" ("+cols+")")
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// wantEDD fails unless err wraps schemas.ErrEDDViolation and its message
// contains every want.
func wantEDD(tb testing.TB, err error, want ...string) {
	tb.Helper()
	if !errors.Is(err, schemas.ErrEDDViolation) {
		tb.Fatalf("error = %v, want an ErrEDDViolation", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			tb.Errorf("error %q does not contain %q", err, w)
		}
	}
}
