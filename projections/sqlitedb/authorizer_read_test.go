package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestReaderRefusesInReadTransaction: in a read transaction on a reader,
// the way queries run, every statement that would write or reach outside
// the file is refused with an error naming it, before it runs; VACUUM,
// which SQLite does not show the authorizer, by CheckRead.
func TestReaderRefusesInReadTransaction(t *testing.T) {
	dir := t.TempDir()
	copyFile := filepath.Join(dir, "copy.db")
	otherFile := filepath.Join(dir, "other.db")
	written := filepath.Join(dir, "written")
	tests := []struct {
		query string
		want  string
	}{
		{"VACUUM", "VACUUM is not allowed: reader connections only read"},
		{"VACUUM INTO '" + copyFile + "'", "VACUUM INTO is not allowed: a read model is one database file"},
		{"/* a comment */ vacuum main INTO '" + copyFile + "'", "VACUUM INTO is not allowed"},
		{"ATTACH DATABASE '" + otherFile + "' AS other", "ATTACH is not allowed: a read model is one database file"},
		{"DETACH other", "DETACH is not allowed"},
		{"PRAGMA user_version = 5", "PRAGMA user_version with an argument is not allowed"},
		{"PRAGMA journal_mode = DELETE", "PRAGMA journal_mode with an argument is not allowed"},
		{"PRAGMA query_only = 0", "PRAGMA query_only with an argument is not allowed"},
		{"SELECT load_extension('" + filepath.Join(dir, "x.so") + "')", "function load_extension is not allowed: SQL on a read model stays inside its database file"},
		{"SELECT LOAD_EXTENSION('x')", "function load_extension is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			ctx := context.Background()
			db := seeded(t)
			before := snapshot(t, db)
			err := CheckRead(tt.query)
			if err == nil {
				tx, terr := db.Reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if terr != nil {
					t.Fatal(terr)
				}
				var rows *sql.Rows
				rows, err = tx.QueryContext(ctx, tt.query)
				if err == nil {
					for rows.Next() {
					}
					err = rows.Err()
					rows.Close()
				}
				tx.Rollback()
				err = WrapErr(tt.query, err)
			}
			wantEDD(t, err, tt.want)
			if after := snapshot(t, db); after != before {
				t.Fatalf("refused statement changed the database")
			}
			for _, f := range []string{copyFile, otherFile, written} {
				if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("refused statement created %s", f)
				}
			}
		})
	}
}

func TestCheckReadAllowsReads(t *testing.T) {
	for _, q := range []string{"SELECT 1", "EXPLAIN VACUUM", "WITH v AS (SELECT 1) SELECT * FROM v", "SELECT 'VACUUM'", "", "-- VACUUM\nSELECT 1"} {
		if err := CheckRead(q); err != nil {
			t.Errorf("CheckRead(%q) = %v", q, err)
		}
	}
}
