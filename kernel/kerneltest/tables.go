package kerneltest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strings"
)

// HashTables writes every row of every table a read transaction sees to
// w, tables by name and rows by all their columns, each value with its
// type: two read models with the same content write the same bytes.
// Litestream's bookkeeping tables (_litestream_*, in a file that was
// replicated) are not the read model's and are left out. A
// database without tables is an error, so that two empty ones never
// compare equal by accident.
// Hash the output to compare read models (a rebuild, a restore, another
// node).
func HashTables(ctx context.Context, tx *sql.Tx, w io.Writer) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\_litestream\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(tables) == 0 {
		return fmt.Errorf("no tables: not a read model (yet)")
	}
	for _, tb := range tables {
		if err := hashTable(ctx, tx, tb, w); err != nil {
			return fmt.Errorf("table %s: %w", tb, err)
		}
	}
	return nil
}

func hashTable(ctx context.Context, tx *sql.Tx, tb string, w io.Writer) error {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM "`+tb+`" LIMIT 0`)
	if err != nil {
		return err
	}
	cols, _ := rows.Columns()
	rows.Close()
	order := make([]string, len(cols))
	for i := range cols {
		order[i] = fmt.Sprint(i + 1)
	}
	rows, err = tx.QueryContext(ctx, `SELECT * FROM "`+tb+`" ORDER BY `+strings.Join(order, ", "))
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintf(w, "table %s %v\n", tb, cols)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for _, v := range vals {
			fmt.Fprintf(w, "%T:%v|", v, v)
		}
		w.Write([]byte{'\n'})
	}
	return rows.Err()
}
