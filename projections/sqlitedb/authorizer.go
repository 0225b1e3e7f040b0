package sqlitedb

import (
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fazt-sh/fazt/schemas"
)

// The authorizer is how EDD is enforced by the engine rather than by
// convention. SQLite calls it while compiling every statement (nested
// ones it runs for DDL included) with an action code and up to four
// names; a denial fails the statement with SQLITE_AUTH before anything
// runs. Each connection gets one of three policies:
//
//   - writer: reads, row writes, transactions, ANALYZE, PRAGMA optimize
//     and VACUUM; no DROP, no ALTER, no CREATE (SQLite's own statistics
//     tables and VACUUM's scratch copy aside), no PRAGMA
//     writable_schema=.., no ATTACH.
//   - migrator: the writer's connection while Migrate runs its steps:
//     additionally CREATE TABLE, CREATE INDEX and ALTER TABLE ADD COLUMN
//     on the tables being extended.
//   - reader: SELECT, reads, functions, transactions and read-only
//     pragmas; everything else is denied.
//
// Every policy denies the functions that reach outside the database
// file (outsideFunctions: load_extension, readfile, writefile, ...).
//
// What the authorizer can and cannot tell apart for ALTER TABLE: SQLite
// reports ADD COLUMN, RENAME TO, RENAME COLUMN and DROP COLUMN all as
// SQLITE_ALTER_TABLE(database, table). Only DROP COLUMN passes a third
// name (the column). RENAME and DROP COLUMN then rewrite the schema with
// nested SQL calling SQLite's internal sqlite_rename_* and
// sqlite_drop_column functions, which the authorizer sees as
// SQLITE_FUNCTION; ADD COLUMN only calls printf/substr/length. So the
// migrator policy allows ALTER only with no third name and every policy
// denies those internal functions. That second signal is an SQLite
// implementation detail, not an API, hence two more layers: the migrator
// generates nothing but ADD COLUMN from a validated declaration, and it
// holds the single writer connection while the permissive policy is on,
// so no other statement can run under it. The column ADD COLUMN adds
// (name, type, constraints) is never shown to the authorizer.

type role uint8

const (
	roleWriter role = iota
	roleReader
	roleMigrator
)

type policy struct {
	role role
	// alter holds the tables (lower case) the migrator may ADD COLUMN to.
	alter map[string]bool
}

// install sets p as the authorizer of a driver connection.
func (p policy) install(driverConn any) error {
	r, ok := driverConn.(sqlite.AuthorizerRegisterer)
	if !ok {
		return fmt.Errorf("sqlitedb: driver connection %T cannot carry an authorizer", driverConn)
	}
	return r.RegisterAuthorizer(p.authorize)
}

const (
	allow = sqlite.AuthorizerOK
	deny  = sqlite.AuthorizerDeny
)

// authorize is the SQLite authorizer callback. arg3 is the database name
// for most actions but the column for ALTER TABLE DROP COLUMN.
func (p policy) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, arg3, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthSelect, sqlite.AuthRead, sqlite.AuthRecursive,
		sqlite.AuthTransaction, sqlite.AuthSavepoint:
		return allow
	case sqlite.AuthFunction:
		// The internal ones are called only by the nested SQL of ALTER
		// TABLE RENAME and DROP COLUMN.
		name := strings.ToLower(arg2)
		if strings.HasPrefix(name, "sqlite_rename_") || name == "sqlite_drop_column" || outsideFunctions[name] {
			return deny
		}
		return allow
	case sqlite.AuthPragma:
		return p.pragma(strings.ToLower(arg1), arg2)
	}
	if p.role == roleReader {
		return deny
	}
	switch action {
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete:
		// Row writes. DDL also writes sqlite_schema rows, but its own
		// CREATE/DROP/ALTER action decides; a direct write to
		// sqlite_schema SQLite refuses unless writable_schema is on,
		// which pragma denies.
		return allow
	case sqlite.AuthReindex, sqlite.AuthAnalyze:
		return allow
	case sqlite.AuthAttach:
		// VACUUM attaches a nameless scratch database; nothing else may
		// (so VACUUM INTO 'file' is refused too).
		if arg1 == "" {
			return allow
		}
		return deny
	case sqlite.AuthCreateTable, sqlite.AuthCreateIndex:
		// arg3 is the database the object goes into.
		switch {
		case p.role == roleMigrator:
			return allow
		case strings.HasPrefix(strings.ToLower(arg1), "sqlite_stat"):
			return allow // ANALYZE and PRAGMA optimize create their statistics table
		case strings.HasPrefix(arg3, "vacuum_"):
			return allow // VACUUM copies the schema into its scratch database
		}
		return deny
	case sqlite.AuthAlterTable:
		if p.role == roleMigrator && arg3 == "" && p.alter[strings.ToLower(arg2)] {
			return allow
		}
		return deny
	}
	// Every DROP, CREATE VIEW/TRIGGER/TEMP/VIRTUAL, ATTACH, DETACH and
	// any action SQLite adds in the future.
	return deny
}

// outsideFunctions reach outside the database file: loading code,
// reading or writing files, running an editor, or (fts3_tokenizer)
// handing SQLite a pointer. This build of SQLite has only
// load_extension (and keeps extension loading off); the others come
// with SQLite's shell and extensions, and are denied should a build
// ever link them.
var outsideFunctions = map[string]bool{
	"load_extension": true, "writefile": true, "readfile": true, "edit": true,
	"fts3_tokenizer": true, "lsdir": true,
}

// readPragmas take an argument but only report.
var readPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_list": true, "index_info": true, "index_xinfo": true,
	"foreign_key_list": true, "foreign_key_check": true,
	"integrity_check": true, "quick_check": true,
}

// pragma allows on readers only queries (no argument) and the
// introspection pragmas; on the writer everything but turning on
// writable_schema, which would let plain UPDATEs rewrite the schema.
func (p policy) pragma(name, arg string) sqlite.AuthorizerReturnCode {
	if p.role != roleReader {
		if name == "writable_schema" && arg != "" {
			return deny
		}
		return allow
	}
	switch {
	case name == "optimize" || name == "wal_checkpoint" || name == "incremental_vacuum":
		return deny // act even without an argument
	case arg == "" || readPragmas[name]:
		return allow
	}
	return deny
}

func isSchemaTable(name string) bool {
	switch strings.ToLower(name) {
	case "sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema":
		return true
	}
	return false
}

// WrapErr returns err unchanged unless it is SQLite refusing query
// because the authorizer denied it. Then it returns an error that wraps
// both schemas.ErrEDDViolation and err, with a message naming the
// statement, e.g. "DROP TABLE pageviews is not allowed: storage only
// grows (EDD)". Use it on errors from Writer, Reader, their transactions
// and connections; DB.Exec and DB.Query already do.
func WrapErr(query string, err error) error {
	if !notAuthorized(err) {
		return err
	}
	if fn := deniedFunction(err); outsideFunctions[fn] {
		return &eddError{msg: "function " + fn + " is not allowed: " + reasonOutside, err: err}
	}
	stmt, reason := describe(query)
	return &eddError{msg: stmt + " is not allowed: " + reason, err: err}
}

// deniedFunction is the function SQLite names when the authorizer
// denied it ("not authorized to use function: NAME"), lower case.
func deniedFunction(err error) string {
	const prefix = "not authorized to use function: "
	msg := err.Error()
	i := strings.Index(msg, prefix)
	if i < 0 {
		return ""
	}
	name := msg[i+len(prefix):]
	if j := strings.IndexAny(name, " ()"); j >= 0 {
		name = name[:j]
	}
	return strings.ToLower(name)
}

// CheckRead refuses, before it runs, a statement that a reader's
// authorizer cannot refuse when SQLite compiles it: VACUUM, which SQLite
// does not show the authorizer. Outside a transaction a reader refuses
// it when it runs (VACUUM attaches a database, which readers deny);
// inside one it would fail only as a plain SQL error. Call it on SQL
// from callers before running it in a read transaction. The error wraps
// schemas.ErrEDDViolation and names the statement, like WrapErr's.
func CheckRead(query string) error {
	w := sqlWords(query, 2)
	if len(w) == 0 || !strings.EqualFold(w[0], "VACUUM") {
		return nil
	}
	stmt, reason := describe(query)
	return &eddError{msg: stmt + " is not allowed: " + reason}
}

// notAuthorized reports an authorizer denial: SQLITE_AUTH, or for a
// denied function SQLITE_ERROR "not authorized to use function: ...".
func notAuthorized(err error) bool {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_AUTH:
		return true
	case sqlite3.SQLITE_ERROR:
		return strings.Contains(se.Error(), "not authorized")
	}
	return false
}

type eddError struct {
	msg string
	err error
}

func (e *eddError) Error() string { return e.msg }
func (e *eddError) Unwrap() []error {
	if e.err == nil {
		return []error{schemas.ErrEDDViolation}
	}
	return []error{schemas.ErrEDDViolation, e.err}
}

const (
	reasonShrink   = "storage only grows (EDD)"
	reasonMigrator = "tables, columns and indexes are created only by the migrator; declare them in a schemas.Table and call sqlitedb.Migrate (EDD)"
	reasonSchema   = "the schema table is written only by the migrator (EDD)"
	reasonReadOnly = "reader connections only read; write through DB.Writer (EDD)"
	reasonOneFile  = "a read model is one database file (EDD)"
	reasonOutside  = "SQL on a read model stays inside its database file (EDD)"
	reasonOther    = "the kernel's SQLite authorizer refuses it on this connection (EDD)"
)

// describe names the statement in query ("DROP TABLE pageviews") and
// says why that kind is refused. The authorizer cannot attach a message
// to SQLITE_AUTH, so the name comes from the SQL text.
func describe(query string) (stmt, reason string) {
	w := sqlWords(query, 16)
	i := 0
	next := func() string {
		if i >= len(w) {
			return ""
		}
		i++
		return w[i-1]
	}
	up := func(s string) string { return strings.ToUpper(s) }
	skip := func(words ...string) {
		for i < len(w) {
			found := false
			for _, s := range words {
				if up(w[i]) == s {
					found = true
				}
			}
			if !found {
				return
			}
			i++
		}
	}
	// name reads a possibly schema-qualified name.
	name := func() string {
		n := next()
		if i+1 < len(w) && w[i] == "." {
			i++
			n += "." + next()
		}
		return n
	}
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, " ")
	}

	switch kw := up(next()); kw {
	case "DROP":
		skip("TEMP", "TEMPORARY")
		obj := up(next())
		skip("IF", "EXISTS")
		return join("DROP", obj, name()), reasonShrink
	case "ALTER":
		skip("TABLE")
		table := name()
		switch act := up(next()); act {
		case "ADD":
			skip("COLUMN")
			return join("ALTER TABLE", table, "ADD COLUMN", name()), reasonMigrator
		case "DROP":
			skip("COLUMN")
			return join("ALTER TABLE", table, "DROP COLUMN", name()), reasonShrink
		case "RENAME":
			if up(next()) == "TO" {
				return join("ALTER TABLE", table, "RENAME TO", name()), reasonShrink
			}
			return join("ALTER TABLE", table, "RENAME COLUMN"), reasonShrink
		default:
			return join("ALTER TABLE", table, act), reasonShrink
		}
	case "CREATE":
		var mods []string
		for i < len(w) {
			m := up(w[i])
			if m != "TEMP" && m != "TEMPORARY" && m != "UNIQUE" && m != "VIRTUAL" {
				break
			}
			mods = append(mods, m)
			i++
		}
		obj := up(next())
		skip("IF", "NOT", "EXISTS")
		return join("CREATE", strings.Join(mods, " "), obj, name()), reasonMigrator
	case "INSERT", "REPLACE", "UPDATE", "DELETE":
		skip("OR", "ROLLBACK", "ABORT", "REPLACE", "FAIL", "IGNORE", "INTO", "FROM")
		target := name()
		verb := map[string]string{"INSERT": "INSERT INTO", "REPLACE": "REPLACE INTO", "UPDATE": "UPDATE", "DELETE": "DELETE FROM"}[kw]
		if isSchemaTable(target[strings.LastIndex(target, ".")+1:]) {
			return join(verb, target), reasonSchema
		}
		return join(verb, target), reasonReadOnly
	case "PRAGMA":
		n := name()
		if arg := next(); arg == "=" || arg == "(" {
			if strings.EqualFold(n[strings.LastIndex(n, ".")+1:], "writable_schema") {
				return join("PRAGMA", n, "with an argument"), "it would let plain writes rewrite the schema (EDD)"
			}
			return join("PRAGMA", n, "with an argument"), reasonReadOnly
		}
		return join("PRAGMA", n), reasonReadOnly
	case "ATTACH", "DETACH":
		return kw, reasonOneFile
	case "VACUUM":
		// VACUUM [schema] [INTO file]
		if a := up(next()); a == "INTO" || up(next()) == "INTO" {
			return "VACUUM INTO", reasonOneFile
		}
		return "VACUUM", reasonReadOnly
	case "ANALYZE", "REINDEX":
		return kw, reasonReadOnly
	case "":
		return "the statement", reasonOther
	default:
		return kw + " statement", reasonOther
	}
}

// sqlWords splits the start of a SQL text into at most n words:
// keywords and identifiers (quotes removed) and single punctuation
// characters. Comments and string literals are skipped.
func sqlWords(q string, n int) []string {
	var out []string
	for i := 0; i < len(q) && len(out) < n; {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(q[i:], "--"):
			if j := strings.IndexByte(q[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(q)
			}
		case strings.HasPrefix(q[i:], "/*"):
			if j := strings.Index(q[i+2:], "*/"); j >= 0 {
				i += j + 4
			} else {
				i = len(q)
			}
		case c == '"' || c == '`' || c == '[' || c == '\'':
			end := c
			if c == '[' {
				end = ']'
			}
			j := i + 1
			var b strings.Builder
			for j < len(q) {
				if q[j] == end {
					if end != ']' && j+1 < len(q) && q[j+1] == end {
						b.WriteByte(end)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(q[j])
				j++
			}
			if c != '\'' {
				out = append(out, b.String())
			}
			i = j + 1
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80:
			j := i
			for j < len(q) {
				d := q[j]
				if d == '_' || d == '$' || d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' || d >= '0' && d <= '9' || d >= 0x80 {
					j++
					continue
				}
				break
			}
			out = append(out, q[i:j])
			i = j
		default:
			out = append(out, string(c))
			i++
		}
	}
	return out
}
