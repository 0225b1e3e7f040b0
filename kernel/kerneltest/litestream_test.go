package kerneltest

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// A replicated read model holds Litestream's bookkeeping tables beside
// its own; HashTables leaves them out, so it equals a rebuilt one, and
// still sees a table whose name merely starts alike.
func TestHashTablesSkipsLitestream(t *testing.T) {
	ctx := context.Background()
	hash := func(qs ...string) string {
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
		if err := HashTables(ctx, tx, &b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	model := []string{`CREATE TABLE a (k TEXT)`, `INSERT INTO a VALUES ('p')`}
	plain := hash(model...)
	replicated := hash(append(model, `CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)`,
		`INSERT INTO _litestream_seq VALUES (1, 7)`, `CREATE TABLE _litestream_lock (id INTEGER)`)...)
	if plain != replicated {
		t.Errorf("Litestream's tables change the hash:\n%s\nvs\n%s", plain, replicated)
	}
	if other := hash(append(model, `CREATE TABLE _litestreamer (k TEXT)`)...); other == plain {
		t.Error("a table named _litestreamer is left out")
	}
}
