package sqlitedb

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/fazt-sh/fazt/schemas"
)

// seeded opens a database holding pageviews v1 (with its index) and a
// row.
func seeded(t *testing.T) *DB {
	t.Helper()
	db := openTest(t)
	mustMigrate(t, db, pageviewsV1())
	mustExec(t, db, InsertSQL(pageviewsV1()), "a", "/", 3)
	return db
}

// TestWriterRefuses: each statement fails on the writer with an
// ErrEDDViolation naming it, and nothing changes.
func TestWriterRefuses(t *testing.T) {
	tests := []struct {
		query string
		want  string
	}{
		{"DROP TABLE pageviews", "DROP TABLE pageviews is not allowed: storage only grows (EDD)"},
		{"drop table if exists main.pageviews", "DROP TABLE main.pageviews is not allowed: storage only grows"},
		{"DROP INDEX pageviews_path", "DROP INDEX pageviews_path is not allowed: storage only grows"},
		{"ALTER TABLE pageviews RENAME TO views", "ALTER TABLE pageviews RENAME TO views is not allowed: storage only grows"},
		{"ALTER TABLE pageviews RENAME COLUMN path TO url", "ALTER TABLE pageviews RENAME COLUMN is not allowed: storage only grows"},
		{"ALTER TABLE pageviews RENAME path TO url", "ALTER TABLE pageviews RENAME COLUMN is not allowed"},
		{"ALTER TABLE pageviews DROP COLUMN hits", "ALTER TABLE pageviews DROP COLUMN hits is not allowed: storage only grows"},
		{"ALTER TABLE pageviews ADD COLUMN referrer TEXT", "ALTER TABLE pageviews ADD COLUMN referrer is not allowed: tables, columns and indexes are created only by the migrator"},
		{"CREATE TABLE other (id INTEGER)", "CREATE TABLE other is not allowed: tables, columns and indexes are created only by the migrator"},
		{"CREATE TABLE IF NOT EXISTS other (id INTEGER REFERENCES pageviews(id))", "CREATE TABLE other is not allowed"},
		{"CREATE INDEX pageviews_hits ON pageviews (hits)", "CREATE INDEX pageviews_hits is not allowed"},
		{"CREATE UNIQUE INDEX pageviews_hits ON pageviews (hits)", "CREATE UNIQUE INDEX pageviews_hits is not allowed"},
		{"CREATE TEMP TABLE scratch (x)", "CREATE TEMP TABLE scratch is not allowed"},
		{"CREATE VIEW v AS SELECT * FROM pageviews", "CREATE VIEW v is not allowed"},
		{"CREATE TRIGGER tr AFTER INSERT ON pageviews BEGIN DELETE FROM pageviews; END", "CREATE TRIGGER tr is not allowed"},
		{"PRAGMA writable_schema = ON", "PRAGMA writable_schema with an argument is not allowed: it would let plain writes rewrite the schema"},
		{"ATTACH DATABASE 'other.db' AS other", "ATTACH is not allowed"},
		{"VACUUM INTO 'copy.db'", "VACUUM INTO is not allowed: a read model is one database file"},
		{"/* comment */ -- another\n DROP TABLE pageviews", "DROP TABLE pageviews is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			db := seeded(t)
			before := snapshot(t, db)
			_, err := db.Exec(context.Background(), tt.query)
			wantEDD(t, err, tt.want)
			if after := snapshot(t, db); after != before {
				t.Fatalf("refused statement changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestWriterRefusesInTransaction: WrapErr gives the same error for
// statements run in a transaction on the writer.
func TestWriterRefusesInTransaction(t *testing.T) {
	ctx := context.Background()
	db := seeded(t)
	before := snapshot(t, db)
	tx, err := db.Writer.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = "DROP TABLE pageviews"
	_, err = tx.ExecContext(ctx, q)
	wantEDD(t, WrapErr(q, err), "DROP TABLE pageviews is not allowed")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, db); after != before {
		t.Fatal("refused statement changed the database")
	}
}

// TestReaderRefuses: reader connections refuse every write, through
// WrapErr on the raw pool and through DB.Query.
func TestReaderRefuses(t *testing.T) {
	tests := []struct {
		query string
		want  string
	}{
		{"INSERT INTO pageviews (id, path) VALUES ('b', '/b')", "INSERT INTO pageviews is not allowed: reader connections only read"},
		{"INSERT OR REPLACE INTO pageviews (id, path) VALUES ('a', '/b')", "INSERT INTO pageviews is not allowed"},
		{"REPLACE INTO pageviews (id, path) VALUES ('a', '/b')", "REPLACE INTO pageviews is not allowed"},
		{"UPDATE pageviews SET hits = hits + 1", "UPDATE pageviews is not allowed: reader connections only read"},
		{"DELETE FROM pageviews", "DELETE FROM pageviews is not allowed: reader connections only read"},
		{"CREATE TABLE other (id INTEGER)", "CREATE TABLE other is not allowed"},
		{"CREATE INDEX pageviews_hits ON pageviews (hits)", "CREATE INDEX pageviews_hits is not allowed"},
		{"CREATE TEMP TABLE scratch (x)", "CREATE TEMP TABLE scratch is not allowed"},
		{"DROP TABLE pageviews", "DROP TABLE pageviews is not allowed: storage only grows"},
		{"ALTER TABLE pageviews ADD COLUMN referrer TEXT", "ALTER TABLE pageviews ADD COLUMN referrer is not allowed"},
		{"PRAGMA query_only = 0", "PRAGMA query_only with an argument is not allowed"},
		{"PRAGMA journal_mode = DELETE", "PRAGMA journal_mode with an argument is not allowed"},
		{"PRAGMA user_version = 7", "PRAGMA user_version with an argument is not allowed"},
		{"PRAGMA wal_checkpoint", "PRAGMA wal_checkpoint is not allowed"},
		{"ANALYZE", "ANALYZE is not allowed: reader connections only read"},
		{"VACUUM", "VACUUM is not allowed: reader connections only read"},
		{"ATTACH DATABASE ':memory:' AS m", "ATTACH is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := seeded(t)
			before := snapshot(t, db)

			_, err := db.Reader.ExecContext(ctx, tt.query)
			wantEDD(t, WrapErr(tt.query, err), tt.want)

			rows, err := db.Query(ctx, tt.query)
			if err == nil {
				rows.Close()
			}
			wantEDD(t, err, tt.want)

			if after := snapshot(t, db); after != before {
				t.Fatalf("refused statement changed the database:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestAllowed: what projections and queries need keeps working.
func TestAllowed(t *testing.T) {
	ctx := context.Background()
	db := seeded(t)
	for _, q := range []string{
		"INSERT INTO pageviews (id, path) VALUES ('b', '/b')",
		"UPDATE pageviews SET hits = hits + 1 WHERE id = 'b'",
		"DELETE FROM pageviews WHERE id = 'b'",
		"INSERT INTO pageviews (id, path) VALUES ('c', '/c') ON CONFLICT (id) DO UPDATE SET hits = hits + 1",
		"SAVEPOINT s1; RELEASE s1",
		"ANALYZE",
		"PRAGMA optimize",
		"VACUUM",
		"PRAGMA user_version = 3",
		"REINDEX pageviews",
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Errorf("writer: %s: %v", q, err)
		}
	}
	for _, q := range []string{
		"SELECT * FROM pageviews",
		"SELECT count(*), max(path) FROM pageviews WHERE path LIKE '/%'",
		"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) SELECT x FROM n",
		"SELECT name FROM pragma_table_info('pageviews')",
		"PRAGMA table_info(pageviews)",
		"PRAGMA index_list(pageviews)",
		"PRAGMA user_version",
		"PRAGMA journal_mode",
		"PRAGMA quick_check",
		"SELECT name FROM sqlite_schema",
	} {
		rows, err := db.Query(ctx, q)
		if err != nil {
			t.Errorf("reader: %s: %v", q, err)
			continue
		}
		for rows.Next() {
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			t.Errorf("reader: %s: %v", q, err)
		}
	}

	// A read transaction on a reader.
	tx, err := db.Reader.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM pageviews").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestAuthorizerOnEveryConnection: a reader connection opened after a
// pool grew, and the writer after its connection was replaced, still
// refuse.
func TestAuthorizerOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	db := seeded(t)
	conns := make([]interface{ Close() error }, 0, DefaultReaders)
	for i := 0; i < DefaultReaders; i++ {
		c, err := db.Reader.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ExecContext(ctx, "DELETE FROM pageviews")
		wantEDD(t, WrapErr("DELETE FROM pageviews", err))
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	db.Writer.SetMaxIdleConns(0) // the next writer statement opens a new connection
	db.Writer.SetMaxIdleConns(1)
	_, err := db.Exec(ctx, "DROP TABLE pageviews")
	wantEDD(t, err, "DROP TABLE pageviews")
}

func TestWrapErrPassesOtherErrorsThrough(t *testing.T) {
	if err := WrapErr("SELECT 1", nil); err != nil {
		t.Fatalf("WrapErr(nil) = %v", err)
	}
	other := errors.New("boom")
	if err := WrapErr("SELECT 1", other); err != other {
		t.Fatalf("WrapErr(other) = %v", err)
	}
	db := seeded(t)
	_, err := db.Exec(context.Background(), "INSERT INTO pageviews (id, path) VALUES ('a', '/dup')")
	if err == nil || errors.Is(err, schemas.ErrEDDViolation) {
		t.Fatalf("constraint error = %v, want a plain SQLite error", err)
	}
}

func TestWrapErrKeepsSQLiteError(t *testing.T) {
	db := seeded(t)
	_, err := db.Exec(context.Background(), "DROP TABLE pageviews")
	wantEDD(t, err, "DROP TABLE pageviews")
	var target interface{ Code() int }
	if !errors.As(err, &target) || target.Code() != 23 {
		t.Fatalf("error %v does not wrap the SQLite SQLITE_AUTH error", err)
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct{ query, stmt string }{
		{"DROP TABLE pageviews", "DROP TABLE pageviews"},
		{"drop index if exists \"by path\"", "DROP INDEX by path"},
		{"DROP TEMP VIEW v", "DROP VIEW v"},
		{"DROP TRIGGER main.t", "DROP TRIGGER main.t"},
		{"ALTER TABLE [t] ADD c TEXT", "ALTER TABLE t ADD COLUMN c"},
		{"ALTER TABLE t ADD COLUMN `c` TEXT", "ALTER TABLE t ADD COLUMN c"},
		{"ALTER TABLE t DROP c", "ALTER TABLE t DROP COLUMN c"},
		{"ALTER TABLE t RENAME TO u", "ALTER TABLE t RENAME TO u"},
		{"ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE t RENAME COLUMN"},
		{"CREATE UNIQUE INDEX IF NOT EXISTS i ON t(a)", "CREATE UNIQUE INDEX i"},
		{"CREATE TEMPORARY TABLE x(a)", "CREATE TEMPORARY TABLE x"},
		{"CREATE VIRTUAL TABLE f USING fts5(a)", "CREATE VIRTUAL TABLE f"},
		{"INSERT OR IGNORE INTO t VALUES (1)", "INSERT INTO t"},
		{"UPDATE OR FAIL t SET a = 1", "UPDATE t"},
		{"DELETE FROM main.t", "DELETE FROM main.t"},
		{"INSERT INTO sqlite_schema VALUES (1)", "INSERT INTO sqlite_schema"},
		{"PRAGMA query_only(0)", "PRAGMA query_only with an argument"},
		{"PRAGMA main.user_version = 1", "PRAGMA main.user_version with an argument"},
		{"PRAGMA optimize", "PRAGMA optimize"},
		{"-- why\nDROP TABLE t", "DROP TABLE t"},
		{"", "the statement"},
		{"WITH x AS (SELECT 1) DELETE FROM t", "WITH statement"},
	}
	for _, tt := range tests {
		if got, _ := describe(tt.query); got != tt.stmt {
			t.Errorf("describe(%q) = %q, want %q", tt.query, got, tt.stmt)
		}
	}
}

// TestOtherConnectionsUnaffected: the authorizer is installed by our
// connector, not process-wide.
func TestOtherConnectionsUnaffected(t *testing.T) {
	db := seeded(t)
	raw := rawOpen(t, filepath.Join(filepath.Dir(db.Path), "other.db"))
	if _, err := raw.Exec("CREATE TABLE t (a); DROP TABLE t"); err != nil {
		t.Fatalf("a plain sqlite connection was restricted: %v", err)
	}
}
