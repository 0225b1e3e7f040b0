package kerneltest

import (
	"testing"
)

// A replicated read model holds Litestream's bookkeeping tables beside
// its own; HashTables leaves them out, so it equals a rebuilt one, and
// still sees a table whose name merely starts alike.
func TestHashTablesSkipsLitestream(t *testing.T) {
	hash := func(qs ...string) string {
		h, err := hashOf(t, qs...)
		if err != nil {
			t.Fatal(err)
		}
		return h
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
