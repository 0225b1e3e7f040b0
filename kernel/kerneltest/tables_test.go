package kerneltest

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"
)

// HashTables writes the same bytes for the same rows whatever order they
// were inserted in, other bytes for other rows, and refuses a database
// without tables.
func TestHashTables(t *testing.T) {
	create := `CREATE TABLE a (k TEXT, n INTEGER)`
	x, err := hashOf(t, create, `INSERT INTO a VALUES ('p', 1), ('q', 2)`)
	if err != nil {
		t.Fatal(err)
	}
	y, err := hashOf(t, create, `INSERT INTO a VALUES ('q', 2), ('p', 1)`)
	if err != nil || x != y {
		t.Fatalf("same rows, other insert order: %q vs %q, %v", x, y, err)
	}
	if z, err := hashOf(t, create, `INSERT INTO a VALUES ('p', 1), ('q', 3)`); err != nil || z == x {
		t.Fatalf("another row hashes the same: %q, %v", z, err)
	}
	if _, err := hashOf(t); err == nil {
		t.Fatal("a database without tables: no error")
	}
}

// hashOf runs qs on a new database and returns what HashTables writes
// for it.
func hashOf(t *testing.T, qs ...string) (string, error) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range qs {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var b bytes.Buffer
	err = HashTables(ctx, tx, &b)
	return b.String(), err
}
