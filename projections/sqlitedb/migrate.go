package sqlitedb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fazt-sh/fazt/schemas"
)

// Migrate makes the database hold every declared table, column and
// index. It compares each declaration with the live table, treating the
// live table as the old version and the declaration as the new one, and
// only ever creates missing tables (with their indexes), adds missing
// nullable or defaulted columns, and creates missing indexes, each step
// in its own transaction.
//
// Live columns and indexes a declaration does not list are fine: an
// older binary declares less than a newer one wrote (version mapping).
// Anything else, a live column whose type, NOT NULL, default or primary
// key differs from its declaration, a declared NOT NULL column without a
// default that is missing live, a changed index, or a live FOREIGN KEY,
// is reported as an error wrapping schemas.ErrEDDViolation that names
// the table, the column or index, and the change. Every table is checked
// before the first step runs, so a refused migration changes nothing.
// A malformed declaration is reported as a plain error.
func Migrate(ctx context.Context, db *DB, tables ...schemas.Table) error {
	// Tables and indexes share one namespace in SQLite.
	owner := map[string]string{}
	for _, t := range tables {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("sqlitedb: migrate: %w", err)
		}
		if o, ok := owner[t.Name]; ok {
			return fmt.Errorf("sqlitedb: migrate: table %s is declared twice", o)
		}
		owner[t.Name] = t.Name
	}
	for _, t := range tables {
		for _, ix := range t.Indexes {
			if o, ok := owner[ix.Name]; ok {
				return fmt.Errorf("sqlitedb: migrate: index %s of table %s: the name is already used by table %s or its index", ix.Name, t.Name, o)
			}
			owner[ix.Name] = t.Name
		}
	}

	// Holding the only writer connection keeps this process from
	// changing the schema between the check and the steps.
	conn, err := db.Writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlitedb: migrate: %w", err)
	}
	defer conn.Close()

	var steps []step
	var refused []error
	for _, t := range tables {
		s, err := plan(ctx, conn, t)
		if err != nil {
			if !errors.Is(err, schemas.ErrEDDViolation) {
				return fmt.Errorf("sqlitedb: migrate %s: %w", t.Name, err)
			}
			refused = append(refused, err)
			continue
		}
		steps = append(steps, s...)
	}
	if len(refused) > 0 {
		return fmt.Errorf("sqlitedb: migrate refused, nothing changed (storage only grows; declare a new column or table instead):\n%w", errors.Join(refused...))
	}
	if len(steps) == 0 {
		return nil
	}

	mp := policy{role: roleMigrator, alter: map[string]bool{}}
	for _, s := range steps {
		if s.alter != "" {
			mp.alter[s.alter] = true
		}
	}
	if err := conn.Raw(mp.install); err != nil {
		return fmt.Errorf("sqlitedb: migrate: %w", err)
	}
	defer func() {
		// A connection that kept the migrator's policy must not go back
		// to the pool: ErrBadConn makes database/sql close it.
		_ = conn.Raw(func(dc any) error {
			if err := (policy{role: roleWriter}).install(dc); err != nil {
				return driver.ErrBadConn
			}
			return nil
		})
	}()

	for _, s := range steps {
		if err := s.run(ctx, conn); err != nil {
			return fmt.Errorf("sqlitedb: migrate: %s: %w", s.desc, err)
		}
	}
	return nil
}

// step is one transaction of a migration.
type step struct {
	desc  string
	stmts []string
	alter string // the table an ADD COLUMN step extends
}

func (s step) run(ctx context.Context, conn *sql.Conn) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range s.stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return WrapErr(q, err)
		}
	}
	return tx.Commit()
}

// plan returns the steps that bring the live table up to t, or the
// violations that forbid it.
func plan(ctx context.Context, conn *sql.Conn, t schemas.Table) ([]step, error) {
	typ, _, err := nameOwner(ctx, conn, t.Name)
	if err != nil {
		return nil, err
	}
	if typ != "" && typ != "table" {
		return nil, fmt.Errorf("the name %s is taken by a %s", t.Name, typ)
	}
	if typ == "" {
		stmts := []string{createTableSQL(t)}
		for _, ix := range t.Indexes {
			if err := indexNameFree(ctx, conn, t.Name, ix.Name); err != nil {
				return nil, err
			}
			stmts = append(stmts, createIndexSQL(t.Name, ix))
		}
		return []step{{desc: "create table " + t.Name, stmts: stmts}}, nil
	}

	live, livePK, err := liveTable(ctx, conn, t.Name)
	if err != nil {
		return nil, err
	}
	var errs []error
	fks, err := foreignKeys(ctx, conn, t.Name)
	if err != nil {
		return nil, err
	}
	for _, fk := range fks {
		errs = append(errs, violationf("table %s: live %s; fazt keeps relations soft (IDs checked in Go): rebuild this read model without it", t.Name, fk))
	}

	// Compare only what both sides know: live columns the declaration
	// lacks belong to a newer binary. New columns go last, as ADD
	// COLUMN will put them.
	old := schemas.Table{Name: t.Name}
	next := schemas.Table{Name: t.Name, Indexes: t.Indexes}
	liveCols := map[string]bool{}
	for _, lc := range live.Columns {
		liveCols[lc.Name] = true
		if dc, ok := t.Column(lc.Name); ok {
			old.Columns = append(old.Columns, lc)
			next.Columns = append(next.Columns, dc)
		}
	}
	var added []schemas.Column
	for _, dc := range t.Columns {
		if !liveCols[dc.Name] {
			added = append(added, dc)
			next.Columns = append(next.Columns, dc)
		}
	}
	for _, li := range live.Indexes {
		if _, ok := t.Index(li.Name); ok {
			old.Indexes = append(old.Indexes, li)
		}
	}
	if len(old.Columns) == 0 {
		errs = append(errs, violationf("table %s: shares no column with its declaration; declare a new table instead", t.Name))
	} else if err := schemas.CheckTableEvolution(old, next); err != nil {
		errs = append(errs, err)
	}
	if err := primaryKeyOrder(t, livePK); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	var steps []step
	for _, c := range added {
		steps = append(steps, step{
			desc: fmt.Sprintf("add column %s.%s", t.Name, c.Name),
			// The only ALTER the kernel ever generates.
			stmts: []string{"ALTER TABLE " + quoteIdent(t.Name) + " ADD COLUMN " + columnSQL(c)},
			alter: strings.ToLower(t.Name),
		})
	}
	for _, ix := range t.Indexes {
		if _, ok := live.Index(ix.Name); ok {
			continue
		}
		if err := indexNameFree(ctx, conn, t.Name, ix.Name); err != nil {
			return nil, err
		}
		steps = append(steps, step{
			desc:  fmt.Sprintf("create index %s on %s", ix.Name, t.Name),
			stmts: []string{createIndexSQL(t.Name, ix)},
		})
	}
	return steps, nil
}

// primaryKeyOrder reports a composite primary key whose live column
// order (livePK) differs from the declaration order.
func primaryKeyOrder(t schemas.Table, livePK []string) error {
	var dk []string
	for _, c := range t.Columns {
		if c.PrimaryKey {
			dk = append(dk, c.Name)
		}
	}
	if len(livePK) > 1 && len(livePK) == len(dk) && !slices.Equal(livePK, dk) {
		return violationf("table %s: PRIMARY KEY is (%s) live but declared as (%s); the primary key is fixed at creation",
			t.Name, strings.Join(livePK, ", "), strings.Join(dk, ", "))
	}
	return nil
}

// nameOwner returns the type and table of the schema object called name.
func nameOwner(ctx context.Context, conn *sql.Conn, name string) (typ, table string, err error) {
	err = conn.QueryRowContext(ctx,
		"SELECT type, tbl_name FROM sqlite_schema WHERE name = ? COLLATE NOCASE", name).Scan(&typ, &table)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	return typ, table, err
}

func indexNameFree(ctx context.Context, conn *sql.Conn, table, index string) error {
	typ, owner, err := nameOwner(ctx, conn, index)
	if err != nil || typ == "" {
		return err
	}
	if typ == "index" && strings.EqualFold(owner, table) {
		return nil
	}
	return fmt.Errorf("table %s: index name %s is taken by %s %s", table, index, typ, owner)
}

// liveTable reads a live table as a declaration, and its primary key
// columns in key order. Names are lower-cased (SQLite's are
// case-insensitive) and types upper-cased; indexes are the ones made by
// CREATE INDEX, not by constraints.
func liveTable(ctx context.Context, conn *sql.Conn, name string) (schemas.Table, []string, error) {
	t := schemas.Table{Name: name}
	rows, err := conn.QueryContext(ctx,
		`SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid`, name)
	if err != nil {
		return t, nil, err
	}
	var pk []string
	for rows.Next() {
		var c schemas.Column
		var dflt sql.NullString
		var pos int
		if err := rows.Scan(&c.Name, &c.Type, &c.NotNull, &dflt, &pos); err != nil {
			rows.Close()
			return t, nil, err
		}
		c.Name = strings.ToLower(c.Name)
		c.Type = strings.ToUpper(c.Type)
		c.Default = dflt.String
		c.PrimaryKey = pos > 0
		if pos > 0 {
			// pos is the column's 1-based place in the key.
			pk = append(pk, make([]string, max(0, pos-len(pk)))...)
			pk[pos-1] = c.Name
		}
		t.Columns = append(t.Columns, c)
	}
	if err := closeRows(rows); err != nil {
		return t, nil, err
	}

	rows, err = conn.QueryContext(ctx,
		`SELECT name, "unique", partial FROM pragma_index_list(?) WHERE origin = 'c' ORDER BY name`, name)
	if err != nil {
		return t, nil, err
	}
	var partial []bool
	for rows.Next() {
		var ix schemas.Index
		var p bool
		if err := rows.Scan(&ix.Name, &ix.Unique, &p); err != nil {
			rows.Close()
			return t, nil, err
		}
		ix.Name = strings.ToLower(ix.Name)
		t.Indexes = append(t.Indexes, ix)
		partial = append(partial, p)
	}
	if err := closeRows(rows); err != nil {
		return t, nil, err
	}
	for i := range t.Indexes {
		cols, err := indexColumns(ctx, conn, t.Indexes[i].Name)
		if err != nil {
			return t, nil, err
		}
		if partial[i] {
			cols = append(cols, "<WHERE clause>")
		}
		t.Indexes[i].Columns = cols
	}
	return t, pk, nil
}

func indexColumns(ctx context.Context, conn *sql.Conn, index string) ([]string, error) {
	rows, err := conn.QueryContext(ctx, `SELECT name FROM pragma_index_info(?) ORDER BY seqno`, index)
	if err != nil {
		return nil, err
	}
	var cols []string
	for rows.Next() {
		var n sql.NullString
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		if !n.Valid {
			n.String = "<expression>"
		}
		cols = append(cols, strings.ToLower(n.String))
	}
	return cols, closeRows(rows)
}

// foreignKeys describes the live FOREIGN KEY constraints of a table.
func foreignKeys(ctx context.Context, conn *sql.Conn, table string) ([]string, error) {
	rows, err := conn.QueryContext(ctx,
		`SELECT "from", "table", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq`, table)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var from, other string
		var to sql.NullString
		if err := rows.Scan(&from, &other, &to); err != nil {
			rows.Close()
			return nil, err
		}
		ref := other
		if to.Valid {
			ref += "(" + to.String + ")"
		}
		out = append(out, fmt.Sprintf("FOREIGN KEY (%s) REFERENCES %s", from, ref))
	}
	return out, closeRows(rows)
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	return errors.Join(err, rows.Close())
}

// createTableSQL never emits FOREIGN KEY, CHECK or WITHOUT ROWID: only
// what the declaration says.
func createTableSQL(t schemas.Table) string {
	var defs, pk []string
	for _, c := range t.Columns {
		defs = append(defs, columnSQL(c))
		if c.PrimaryKey {
			pk = append(pk, quoteIdent(c.Name))
		}
	}
	if len(pk) > 0 {
		defs = append(defs, "PRIMARY KEY ("+strings.Join(pk, ", ")+")")
	}
	return "CREATE TABLE " + quoteIdent(t.Name) + " (\n  " + strings.Join(defs, ",\n  ") + "\n)"
}

func columnSQL(c schemas.Column) string {
	s := quoteIdent(c.Name) + " " + c.Type
	if c.NotNull {
		s += " NOT NULL"
	}
	if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	return s
}

func createIndexSQL(table string, ix schemas.Index) string {
	kind := "INDEX "
	if ix.Unique {
		kind = "UNIQUE INDEX "
	}
	return "CREATE " + kind + quoteIdent(ix.Name) + " ON " + quoteIdent(table) + " (" + quoteList(ix.Columns) + ")"
}

// InsertSQL returns an INSERT of exactly the declared columns, with one
// ? per column in declaration order. Columns a newer binary added are
// left to their NULL or default, so an older binary can keep writing.
//
//	INSERT INTO "pageviews" ("id", "app", "path") VALUES (?, ?, ?)
func InsertSQL(t schemas.Table) string {
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(t.Columns)), ", ")
	return "INSERT INTO " + quoteIdent(t.Name) + " (" + quoteList(columnNames(t)) + ") VALUES (" + marks + ")"
}

// SelectSQL returns a SELECT of exactly the declared columns, in
// declaration order; append WHERE, ORDER BY and so on. Columns a newer
// binary added are not read, so an older binary can keep reading.
//
//	SELECT "id", "app", "path" FROM "pageviews"
func SelectSQL(t schemas.Table) string {
	return "SELECT " + quoteList(columnNames(t)) + " FROM " + quoteIdent(t.Name)
}

func columnNames(t schemas.Table) []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// quoteIdent quotes every name, so a column may be called "order".
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// violationf returns an error wrapping schemas.ErrEDDViolation.
func violationf(format string, args ...any) error {
	return &eddError{msg: fmt.Sprintf(format, args...)}
}
