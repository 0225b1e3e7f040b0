package sqlitedb_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlitedb-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	pageviews := schemas.Table{
		Name: "pageviews",
		Columns: []schemas.Column{
			{Name: "id", Type: "TEXT", PrimaryKey: true},
			{Name: "path", Type: "TEXT", NotNull: true},
		},
		Indexes: []schemas.Index{{Name: "pageviews_path", Columns: []string{"path"}}},
	}

	db := sqlitedb.New(filepath.Join(dir, "analytics.db")) // tunables are exported fields
	if err := db.Open(ctx); err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := sqlitedb.Migrate(ctx, db, pageviews); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(ctx, sqlitedb.InsertSQL(pageviews), "01J0000000000000000000000", "/"); err != nil {
		log.Fatal(err)
	}

	// v2 appends a nullable column; Migrate adds it.
	v2 := pageviews
	v2.Columns = append(v2.Columns[:len(v2.Columns):len(v2.Columns)], schemas.Column{Name: "referrer", Type: "TEXT"})
	if err := sqlitedb.Migrate(ctx, db, v2); err != nil {
		log.Fatal(err)
	}

	var path string
	var referrer *string
	if err := db.Reader.QueryRowContext(ctx, sqlitedb.SelectSQL(v2)).Scan(new(string), &path, &referrer); err != nil {
		log.Fatal(err)
	}
	fmt.Println(path, referrer == nil)

	_, err = db.Exec(ctx, "DROP TABLE pageviews")
	fmt.Println(errors.Is(err, schemas.ErrEDDViolation), err)
	// Output:
	// / true
	// true DROP TABLE pageviews is not allowed: storage only grows (EDD)
}
