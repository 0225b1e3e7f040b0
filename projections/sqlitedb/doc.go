// Package sqlitedb is the SQLite layer under fazt's read models: it opens
// a database file the way the kernel needs it, enforces Evolutionary
// Database Design (storage only grows) in the engine itself, and migrates
// tables from their Go declarations.
//
// # Overview
//
// [New] returns a [DB] for a file with its tunables (Readers,
// CheckpointInterval, BusyTimeout) preset to the Default* constants;
// change them, then [DB.Open] opens two pools on the file: Writer, a
// single connection (SQLite has one writer at a time; database/sql
// queues the rest), and Reader, a pool of read-only connections, and a
// connection that checkpoints the WAL in the background. [DB.Close]
// closes them. Pragmas are in the DSN, busy_timeout first, so every
// connection gets them: WAL, synchronous=NORMAL, foreign_keys off
// (relations are soft, checked in Go), the busy timeout (10 s). Open
// refuses SQLite older than [MinSQLiteVersion].
//
// Every connection carries an SQLite authorizer. It refuses every DROP,
// every ALTER TABLE and every CREATE, except that [Migrate] may create
// tables and indexes and add columns; reader connections refuse anything
// but reading. A refused statement fails before it runs, with an error
// wrapping [schemas.ErrEDDViolation] that names it:
//
//	DROP TABLE pageviews is not allowed: storage only grows (EDD)
//
// [DB.Exec] and [DB.Query] return such errors; for transactions and
// connections of Writer and Reader, pass the error through [WrapErr].
// Functions that reach outside the file (load_extension, and the shell's
// readfile, writefile and edit should a build link them) are refused on
// every connection. SQLite does not show VACUUM to the authorizer when
// it compiles it: a reader refuses it when it runs, except inside a
// transaction, so run a caller's SQL through [CheckRead] first.
//
// [Migrate] compares each [schemas.Table] with the live table and only
// creates missing tables, adds missing nullable or defaulted columns and
// creates missing indexes. Anything else (a retyped column, a changed
// default, a NOT NULL column without default that old rows would not
// meet, a changed index, a FOREIGN KEY) is refused, naming table, column
// and change, and nothing is changed.
//
// Live columns a declaration does not list are fine: that is how an
// older binary runs on a database a newer one extended (a rollback).
// Code reads and writes only the columns it declares, through
// [InsertSQL] and [SelectSQL]; columns it does not know keep their NULL
// or default.
//
// # Usage
//
// Declare the table, open the file, migrate, then write on Writer and
// read on Reader:
//
//	var pageviews = schemas.Table{
//		Name: "pageviews",
//		Columns: []schemas.Column{
//			{Name: "id", Type: "TEXT", PrimaryKey: true},
//			{Name: "path", Type: "TEXT", NotNull: true},
//			{Name: "referrer", Type: "TEXT"}, // added in v2: nullable
//		},
//		Indexes: []schemas.Index{{Name: "pageviews_path", Columns: []string{"path"}}},
//	}
//
//	db := sqlitedb.New(filepath.Join(dir, "analytics.db"))
//	db.Readers = 2 // tunables are exported fields, preset to the defaults
//	if err := db.Open(ctx); err != nil {
//		return err
//	}
//	defer db.Close()
//	if err := sqlitedb.Migrate(ctx, db, pageviews); err != nil {
//		return err // errors.Is(err, schemas.ErrEDDViolation) for a forbidden change
//	}
//	if _, err := db.Exec(ctx, sqlitedb.InsertSQL(pageviews), "01J...", "/", nil); err != nil {
//		return err
//	}
//	rows, err := db.Query(ctx, sqlitedb.SelectSQL(pageviews)+" WHERE path = ?", "/")
//
// To evolve a table, append a nullable (or defaulted) column or add an
// index to its declaration and call Migrate again at start; never edit
// or remove what has shipped. schemas.CheckTableEvolution checks the same
// rules between two declarations, before a binary ships.
package sqlitedb
