package projections_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

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

// Read is how a vertical reads its read model: at or after the sequence
// of its own append, in one transaction, with the sequence the reads saw.
func ExampleRunner_Read() {
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
		Name:    "orders",
		Version: 1,
		Tables: []schemas.Table{{Name: "totals", Columns: []schemas.Column{
			{Name: "customer", Type: "TEXT", PrimaryKey: true},
			{Name: "cents", Type: "INTEGER", NotNull: true},
		}}},
		Filter: eventlog.Filter{Types: []string{"shop.order_placed"}},
		Apply: func(ctx context.Context, tx *sql.Tx, e eventlog.Event) error {
			var d struct {
				Customer string `json:"customer"`
				Cents    int64  `json:"cents"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return err
			}
			_, err := projections.Exec(ctx, tx, `INSERT INTO totals (customer, cents) VALUES (?, ?)
				ON CONFLICT (customer) DO UPDATE SET cents = cents + excluded.cents`, d.Customer, d.Cents)
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

	res, err := log.Append(ctx, []eventlog.Event{
		{Stream: "shop.ada", Type: "shop.order_placed", Data: json.RawMessage(`{"customer":"ada","cents":1250}`)},
		{Stream: "shop.ada", Type: "shop.order_placed", Data: json.RawMessage(`{"customer":"ada","cents":300}`)},
	})
	if err != nil {
		panic(err)
	}
	// Read your own writes: wait (at most MaxWait) until the append is
	// folded, then read in one transaction.
	var cents int64
	seq, err := r.Read(ctx, "orders", projections.ReadOptions{MinSeq: res.LastSeq, MaxWait: 2 * time.Second},
		func(ctx context.Context, tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, `SELECT cents FROM totals WHERE customer = ?`, "ada").Scan(&cents)
		})
	if err != nil {
		panic(err) // eventlog.ErrUnavailable when the projection is behind or halted
	}
	fmt.Println("ada:", cents, "cents, read at seq", seq)
	// Output:
	// ada: 1550 cents, read at seq 2
}
