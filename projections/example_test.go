package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

func ExampleRunner() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fazt-example")
	defer os.RemoveAll(dir)
	log := eventlog.New(filepath.Join(dir, "log"))
	if err := log.Open(ctx); err != nil {
		panic(err)
	}
	defer log.Close(ctx)

	r := projections.New(filepath.Join(dir, "projections"), log)
	r.Logger = slog.New(slog.DiscardHandler)
	err := r.Register(projections.Projection{
		Name:    "pageviews",
		Version: 1,
		Tables: []schemas.Table{{Name: "counts", Columns: []schemas.Column{
			{Name: "path", Type: "TEXT", PrimaryKey: true},
			{Name: "n", Type: "INTEGER", NotNull: true},
		}}},
		Filter: eventlog.Filter{Types: []string{"analytics.pageview_recorded"}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			var d struct {
				Path string `json:"path"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err
			}
			_, err := projections.Exec(ctx, tx, `INSERT INTO counts (path, n) VALUES (?, 1)
				ON CONFLICT (path) DO UPDATE SET n = n + 1`, d.Path)
			return err
		},
	})
	if err != nil {
		panic(err)
	}
	if err := r.Open(ctx); err != nil {
		panic(err)
	}
	defer r.Close(ctx)

	var events []eventlog.Event
	for _, path := range []string{"/", "/about", "/"} {
		events = append(events, eventlog.Event{Stream: "analytics.site1", Type: "analytics.pageview_recorded",
			Data: json.RawMessage(fmt.Sprintf(`{"path":%q}`, path))})
	}
	res, err := log.Append(ctx, events)
	if err != nil {
		panic(err)
	}
	// Read your own writes.
	if err := r.WaitFor(ctx, "pageviews", res.LastSeq); err != nil {
		panic(err)
	}
	db, release, err := r.Acquire("pageviews")
	if err != nil {
		panic(err)
	}
	defer release()
	rows, err := db.Query(ctx, `SELECT path, n FROM counts ORDER BY path`)
	if err != nil {
		panic(err)
	}
	defer rows.Close()
	for rows.Next() {
		var path string
		var n int
		rows.Scan(&path, &n)
		fmt.Println(path, n)
	}
	st := r.Status("pageviews")
	fmt.Println(st.State, st.Seq)
	// Output:
	// / 2
	// /about 1
	// running 3
}
