package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
)

// pathCounts is a batch's views per path; Flush writes each path once.
type pathCounts struct{ n map[string]int }

func (c *pathCounts) add(path string) {
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[path]++
}

// Flush writes the counts in path order, never map order.
func (c *pathCounts) Flush(ctx context.Context, tx *sql.Tx) error {
	for _, path := range slices.Sorted(maps.Keys(c.n)) {
		if _, err := projections.Exec(ctx, tx, `INSERT INTO counts (path, n) VALUES (?, ?)
			ON CONFLICT (path) DO UPDATE SET n = n + excluded.n`, path, c.n[path]); err != nil {
			return err
		}
	}
	return nil
}

func ExampleBatch() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fazt-example")
	defer os.RemoveAll(dir)
	log := eventlog.New(filepath.Join(dir, "log"))
	if err := log.Open(ctx); err != nil {
		panic(err)
	}
	defer log.Close(ctx)

	var events []eventlog.Event
	for _, path := range []string{"/", "/about", "/", "/"} {
		events = append(events, eventlog.Event{Stream: "analytics.site1", Type: "analytics.pageview_recorded",
			Data: json.RawMessage(fmt.Sprintf(`{"path":%q}`, path))})
	}
	res, err := log.Append(ctx, events)
	if err != nil {
		panic(err)
	}

	r := projections.New(filepath.Join(dir, "projections"), log)
	r.Logger = slog.New(slog.DiscardHandler)
	err = r.Register(projections.Projection{
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
				return err // halts the projection at e
			}
			// One upsert per path and batch, not per event.
			if c := projections.Batch[pathCounts](ctx, tx); c != nil {
				c.add(d.Path)
				return nil
			}
			var c pathCounts // not in a fold: write at once
			c.add(d.Path)
			return c.Flush(ctx, tx)
		},
	})
	if err != nil {
		panic(err)
	}
	if err := r.Open(ctx); err != nil { // catches up: one batch, two upserts
		panic(err)
	}
	defer r.Close(ctx)
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
	// Output:
	// / 3
	// /about 1
}
