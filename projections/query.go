package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
	"github.com/fazt-sh/fazt/schemas"
)

// Defaults and limits of Query.
const (
	DefaultQueryMaxWait = DefaultReadMaxWait
	DefaultQueryTimeout = 5 * time.Second
	DefaultQueryMaxRows = 1000
	MaxQueryRows        = 10000
	// DefaultQueryMaxBytes bounds an answer's size, as JSON, and is also
	// the most QueryOptions.MaxBytes may ask for. No single value may be
	// larger either: SQLite itself refuses to make one (its length limit
	// on the query's connection), so it is never held in memory.
	DefaultQueryMaxBytes = 16 << 20
)

// ErrTooLarge: a query's answer is larger than its byte limit
// (QueryOptions.MaxBytes). HTTP 413 with code "too_large".
var ErrTooLarge = errors.New("too large")

// QueryOptions tunes Runner.Query. Zero values mean the defaults.
type QueryOptions struct {
	// MinSeq, when positive, makes Query wait until the projection has
	// folded the log up to it (pass an append's LastSeq to read your own
	// writes).
	MinSeq uint64
	// MaxWait bounds the wait for MinSeq (default DefaultQueryMaxWait).
	MaxWait time.Duration
	// Timeout bounds running the query (default DefaultQueryTimeout); a
	// statement still running then is interrupted.
	Timeout time.Duration
	// MaxRows is the most rows returned (default DefaultQueryMaxRows, at
	// most MaxQueryRows); more set QueryResult.Truncated.
	MaxRows int
	// MaxBytes bounds the answer: the rows and column names as JSON
	// (default and at most DefaultQueryMaxBytes). A larger answer is not
	// truncated but refused with ErrTooLarge, as soon as the rows read so
	// far pass the bound.
	MaxBytes int64
}

// QueryResult is the answer of Runner.Query.
type QueryResult struct {
	Columns []string
	// Rows holds one slice per row, a value per column: int64, float64,
	// string, nil, or []byte for a BLOB that is not valid UTF-8 (and
	// whatever else the driver returns, such as time.Time for columns
	// declared DATE, DATETIME or TIMESTAMP).
	Rows [][]any
	// Truncated reports that the query had more than MaxRows rows.
	Truncated bool
	// Seq is the projection's checkpoint the rows are consistent with:
	// the log has been folded up to it, and no further.
	Seq uint64
}

// Query runs one read-only SQL statement with args on the file serving
// the projection name, through Read: QueryResult.Seq is exactly the
// state the rows show.
//
// With opts.MinSeq it first waits, at most opts.MaxWait, until the
// projection has folded the log up to MinSeq; when it has not by then,
// or cannot because it is halted at or before MinSeq, the error wraps
// eventlog.ErrUnavailable and says how far the projection is (and, for
// a halt, wraps the *HaltedError, returned at once rather than after
// MaxWait). A halted projection still answers queries that do not ask
// for more than it has.
//
// Only one statement is allowed: SQL with a second statement after a
// ';' (outside string literals, quoted identifiers and comments) is
// refused with eventlog.ErrInvalid. Writes of any kind (VACUUM, ATTACH
// and pragmas with an argument included), and functions that reach
// outside the file (load_extension), fail on the read-only connection's
// authorizer with an error wrapping schemas.ErrEDDViolation. SQL that
// SQLite cannot compile (a syntax error, an unknown table, column or
// function) or a wrong number of args wraps eventlog.ErrInvalid; an
// answer larger than opts.MaxBytes, or a value larger than
// DefaultQueryMaxBytes, wraps ErrTooLarge. Other errors:
// eventlog.ErrNotFound for an unknown projection, ErrClosed, and
// context.DeadlineExceeded (wrapped) when the query runs longer than
// opts.Timeout.
func (r *Runner) Query(ctx context.Context, name, query string, args []any, opts QueryOptions) (QueryResult, error) {
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultQueryMaxWait
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultQueryTimeout
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = DefaultQueryMaxRows
	}
	opts.MaxRows = min(opts.MaxRows, MaxQueryRows)
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultQueryMaxBytes
	}
	opts.MaxBytes = min(opts.MaxBytes, DefaultQueryMaxBytes)
	if _, err := r.lookup(name); err != nil {
		return QueryResult{}, err
	}
	if err := singleStatement(query); err != nil {
		return QueryResult{}, err
	}
	if err := sqlitedb.CheckRead(query); err != nil {
		return QueryResult{}, fmt.Errorf("projection %s: query: %w", name, err)
	}
	var res QueryResult
	seq, err := r.Read(ctx, name, ReadOptions{
		MinSeq:        opts.MinSeq,
		MaxWait:       opts.MaxWait,
		Timeout:       opts.Timeout,
		MaxValueBytes: DefaultQueryMaxBytes,
	}, func(qctx context.Context, tx *sql.Tx) error {
		var err error
		if res, err = runQuery(qctx, tx, query, args, opts.MaxRows, opts.MaxBytes); err == nil {
			return nil
		}
		err = sqlitedb.WrapErr(query, err)
		if qctx.Err() != nil && !errors.Is(err, qctx.Err()) {
			// The driver reports an interrupted statement in its own
			// words; say why it was interrupted.
			err = fmt.Errorf("%w (%w)", qctx.Err(), err)
		}
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("projection %s: query timed out after %v: %w", name, opts.Timeout, err)
		}
		return fmt.Errorf("projection %s: query: %w", name, classify(err))
	})
	if err != nil {
		return QueryResult{}, err
	}
	res.Seq = seq
	return res, nil
}

// classify gives SQLite's errors about the caller's SQL a kind from the
// error vocabulary; other errors pass unchanged.
func classify(err error) error {
	if errors.Is(err, schemas.ErrEDDViolation) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_TOOBIG:
			return fmt.Errorf("%w: a value is larger than %d bytes, the most a query may answer: select a part of it (substr) or its length: %w",
				ErrTooLarge, DefaultQueryMaxBytes, err)
		case sqlite3.SQLITE_ERROR, sqlite3.SQLITE_RANGE, sqlite3.SQLITE_MISMATCH:
			return kindError{eventlog.ErrInvalid, err}
		}
	}
	// database/sql and the driver check the args themselves.
	if msg := err.Error(); strings.HasPrefix(msg, "sql: expected ") || strings.HasPrefix(msg, "missing argument") {
		return kindError{eventlog.ErrInvalid, err}
	}
	return err
}

// kindError is err, also of the kind kind, with err's message.
type kindError struct{ kind, err error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }

// runQuery runs query in tx and reads its answer, within maxRows and
// maxBytes.
func runQuery(ctx context.Context, tx *sql.Tx, query string, args []any, maxRows int, maxBytes int64) (QueryResult, error) {
	var res QueryResult
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	if res.Columns, err = rows.Columns(); err != nil {
		return res, err
	}
	// size is the answer's JSON so far: the envelope and column names,
	// then each row as it is read.
	size := int64(64)
	for _, c := range res.Columns {
		size += jsonSize(c) + 1
	}
	res.Rows = [][]any{}
	for rows.Next() {
		if len(res.Rows) == maxRows {
			res.Truncated = true
			break
		}
		vals := make([]any, len(res.Columns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return res, err
		}
		size += 3 // [],
		for i, v := range vals {
			if b, ok := v.([]byte); ok && utf8.Valid(b) {
				vals[i] = string(b)
			}
			size += jsonSize(vals[i]) + 1
		}
		if size > maxBytes {
			return res, fmt.Errorf("%w: the answer is larger than max_bytes=%d after %d rows: select fewer or smaller columns, or fewer rows (LIMIT, or page with WHERE)",
				ErrTooLarge, maxBytes, len(res.Rows)+1)
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	if err := rows.Close(); err != nil {
		return res, err
	}
	return res, nil
}

// jsonSize is the size of v encoded by encoding/json (HTML-safe, as
// its Encoder writes by default), for the values a query row holds.
func jsonSize(v any) int64 {
	switch v := v.(type) {
	case nil:
		return 4
	case string:
		n := int64(2)
		for i := 0; i < len(v); {
			c := v[i]
			if c < utf8.RuneSelf {
				switch {
				case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
					n += 2
				case c < 0x20 || c == '<' || c == '>' || c == '&':
					n += 6 // \u00XX
				default:
					n++
				}
				i++
				continue
			}
			r, w := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && w == 1 || r == '\u2028' || r == '\u2029' {
				n += 6
			} else {
				n += int64(w)
			}
			i += w
		}
		return n
	case []byte:
		return int64(4*((len(v)+2)/3)) + 2 // base64
	case int64:
		return int64(len(strconv.FormatInt(v, 10)))
	case float64:
		return 25
	case bool:
		if v {
			return 4
		}
		return 5
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0 // the encoder fails on it later, with its own error
	}
	return int64(len(b))
}

// singleStatement refuses SQL holding more than one statement: after the
// first ';' found outside string literals ('...'), quoted identifiers
// ("...", `...`, [...]) and comments (-- and /* */), only whitespace,
// comments and more ';' may follow. It is a lexical check, not a parser:
// SQL it misreads fails in SQLite, which compiles only the first
// statement and has the authorizer check it.
func singleStatement(query string) error {
	ended := false // a ';' has been seen
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			continue
		case c == ';':
			ended = true
			continue
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			for i < len(query) && query[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				i = len(query)
			} else {
				i += 2 + end + 1
			}
			continue
		}
		if ended {
			return invalidf("query holds more than one statement; send one at a time")
		}
		var closer byte
		switch c {
		case '\'', '"', '`':
			closer = c
		case '[':
			closer = ']'
		default:
			continue
		}
		// Skip the quoted text; a doubled quote is an escaped one and
		// simply reads as two adjacent quoted runs.
		for i++; i < len(query) && query[i] != closer; i++ {
		}
	}
	return nil
}
