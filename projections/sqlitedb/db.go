package sqlitedb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
)

// Defaults of a DB's tunables.
const (
	// DefaultReaders is the size of the read-only connection pool.
	DefaultReaders = 4
	// DefaultBusyTimeout is how long a connection waits for a lock.
	DefaultBusyTimeout = 10 * time.Second
	// DefaultCheckpointInterval is how often the WAL is checkpointed.
	DefaultCheckpointInterval = 250 * time.Millisecond
)

// MinSQLiteVersion is the oldest SQLite Open accepts.
const MinSQLiteVersion = "3.51.3"

// DB is one SQLite file with a one-connection writer pool and a pool of
// read-only connections. Every connection carries the EDD authorizer.
//
// Create one with New, adjust the exported tunables, then call Open;
// Close closes it. A DB opens once.
type DB struct {
	// Path is the database file.
	Path string
	// Readers is the size of the read-only connection pool
	// (DefaultReaders); at least 1.
	Readers int
	// CheckpointInterval is how often the WAL is checkpointed in the
	// background (DefaultCheckpointInterval).
	CheckpointInterval time.Duration
	// BusyTimeout is how long a connection waits for a lock
	// (DefaultBusyTimeout).
	BusyTimeout time.Duration

	// SQLiteVersion is the library version found at Open.
	SQLiteVersion string
	// Writer has exactly one connection: SQLite has one writer at a
	// time anyway, and one connection turns lock contention into
	// queueing in database/sql instead of SQLITE_BUSY. Set by Open.
	Writer *sql.DB
	// Reader is a pool of read-only connections (mode=ro, query_only
	// and an authorizer that refuses every write). Set by Open.
	Reader *sql.DB

	// ckpt is one connection that checkpoints the WAL in the background,
	// so that no commit pays for the fsyncs of a checkpoint.
	ckpt     *sql.DB
	stopCkpt chan struct{}
	ckptDone chan struct{}
	opened   bool
}

// New returns a DB for the file at path, with every tunable at its
// default. Nothing is opened until Open.
func New(path string) *DB {
	return &DB{
		Path:               path,
		Readers:            DefaultReaders,
		CheckpointInterval: DefaultCheckpointInterval,
		BusyTimeout:        DefaultBusyTimeout,
	}
}

// Open opens (creating if needed) the database file, switches it to WAL,
// and checks the SQLite version. It fails if the version is older than
// MinSQLiteVersion or the file cannot use WAL; on failure nothing stays
// open.
func (db *DB) Open(ctx context.Context) error {
	path := db.Path
	if db.opened {
		return fmt.Errorf("sqlitedb: open %s: a DB opens once", path)
	}
	if db.Readers < 1 {
		return fmt.Errorf("sqlitedb: open %s: need at least one reader, got %d", path, db.Readers)
	}
	if db.CheckpointInterval <= 0 {
		return fmt.Errorf("sqlitedb: open %s: CheckpointInterval %v: want a positive interval", path, db.CheckpointInterval)
	}
	if path == "" {
		return errors.New("sqlitedb: open: empty path")
	}
	db.opened = true
	var err error
	if db.Writer, err = openPool(writerDSN(path, db.BusyTimeout), policy{role: roleWriter}); err != nil {
		return fmt.Errorf("sqlitedb: open %s: %w", path, err)
	}
	db.Writer.SetMaxOpenConns(1)
	db.Writer.SetMaxIdleConns(1)
	if err := db.start(ctx); err != nil {
		db.Close()
		return fmt.Errorf("sqlitedb: open %s: %w", path, err)
	}
	// Readers open after the writer has created the file and made it
	// WAL: a mode=ro connection can do neither.
	if db.Reader, err = openPool(readerDSN(path, db.BusyTimeout), policy{role: roleReader}); err != nil {
		db.Close()
		return fmt.Errorf("sqlitedb: open %s: %w", path, err)
	}
	db.Reader.SetMaxOpenConns(db.Readers)
	db.Reader.SetMaxIdleConns(db.Readers)
	if err := db.Reader.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("sqlitedb: open %s: reader: %w", path, err)
	}
	// The writer never checkpoints (wal_autocheckpoint 0): a checkpoint
	// fsyncs the database, which would stall the commit that triggers it.
	if db.ckpt, err = openPool(checkpointDSN(path, db.BusyTimeout), policy{role: roleWriter}); err != nil {
		db.Close()
		return fmt.Errorf("sqlitedb: open %s: checkpointer: %w", path, err)
	}
	db.ckpt.SetMaxOpenConns(1)
	db.ckpt.SetMaxIdleConns(1)
	db.stopCkpt, db.ckptDone = make(chan struct{}), make(chan struct{})
	go db.checkpoints(db.CheckpointInterval)
	return nil
}

// checkpoints copies the WAL into the database every interval, passively:
// it never waits for the writer or readers, and the writer goes on
// appending to the WAL meanwhile.
func (db *DB) checkpoints(interval time.Duration) {
	defer close(db.ckptDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-db.stopCkpt:
			return
		case <-t.C:
			// A failure (a busy lock) is retried at the next tick.
			_, _ = db.ckpt.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// start checks the version and the journal mode on the writer.
func (db *DB) start(ctx context.Context) error {
	if err := db.Writer.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&db.SQLiteVersion); err != nil {
		return err
	}
	if err := checkVersion(db.SQLiteVersion); err != nil {
		return err
	}
	var mode string
	if err := db.Writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not wal: put the database on a local file system that supports WAL", mode)
	}
	return nil
}

// Close stops the checkpointer and closes the pools; it is safe after a
// failed Open.
func (db *DB) Close() error {
	var errs []error
	if db.stopCkpt != nil {
		close(db.stopCkpt)
		<-db.ckptDone
		db.stopCkpt = nil
	}
	if db.ckpt != nil {
		errs = append(errs, db.ckpt.Close())
	}
	if db.Reader != nil {
		errs = append(errs, db.Reader.Close())
	}
	if db.Writer != nil {
		errs = append(errs, db.Writer.Close())
	}
	return errors.Join(errs...)
}

// Exec runs a statement on the writer. A statement the authorizer refuses
// returns an error wrapping schemas.ErrEDDViolation (see WrapErr).
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := db.Writer.ExecContext(ctx, query, args...)
	return res, WrapErr(query, err)
}

// Query runs a query on a reader. A statement the authorizer refuses
// (any write) returns an error wrapping schemas.ErrEDDViolation.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := db.Reader.QueryContext(ctx, query, args...)
	return rows, WrapErr(query, err)
}

// Pragmas go in the DSN so every connection, including ones database/sql
// opens later, gets them before its first statement; busy_timeout comes
// first so the others already wait for locks (the PocketBase way).
func pragmas(busyTimeout time.Duration) string {
	return "_pragma=busy_timeout(" + strconv.FormatInt(busyTimeout.Milliseconds(), 10) + ")"
}

func writerDSN(path string, busyTimeout time.Duration) string {
	// _txlock=immediate takes the write lock at BEGIN, so a transaction
	// never fails halfway when upgrading a read lock.
	return fileURI(path) + "?" + pragmas(busyTimeout) +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(0)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
}

func checkpointDSN(path string, busyTimeout time.Duration) string {
	return fileURI(path) + "?" + pragmas(busyTimeout) + "&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)"
}

func readerDSN(path string, busyTimeout time.Duration) string {
	// journal_mode is a property of the file (set by the writer); a
	// read-only connection could not change it anyway.
	return fileURI(path) + "?" + pragmas(busyTimeout) +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(0)&_pragma=query_only(1)&mode=ro"
}

// fileURI escapes the characters that would end the path part of a
// SQLite URI, so a path cannot smuggle in parameters.
func fileURI(path string) string {
	return "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// openPool opens a pool whose every connection carries p.
func openPool(dsn string, p policy) (*sql.DB, error) {
	base, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(&connector{base: base, policy: p}), nil
}

// connector installs the authorizer on each new physical connection and
// hands back the driver's own connection, unwrapped, so database/sql
// keeps every optional interface it implements. Unlike
// sqlite.RegisterConnectionHook it affects no other sqlite user in the
// process.
type connector struct {
	base   driver.Connector
	policy policy
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.policy.install(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c *connector) Driver() driver.Driver { return c.base.Driver() }

// checkVersion reports an error if have is older than MinSQLiteVersion.
func checkVersion(have string) error {
	h, err := parseVersion(have)
	if err != nil {
		return fmt.Errorf("cannot read SQLite version %q: %w", have, err)
	}
	m, _ := parseVersion(MinSQLiteVersion)
	for i := range h {
		if h[i] != m[i] {
			if h[i] < m[i] {
				return fmt.Errorf("SQLite %s is too old: fazt needs %s or newer; rebuild with a newer modernc.org/sqlite", have, MinSQLiteVersion)
			}
			return nil
		}
	}
	return nil
}

// parseVersion reads "3.51.3" (a missing patch level counts as 0).
func parseVersion(v string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return out, errors.New("want MAJOR.MINOR.PATCH")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, errors.New("want MAJOR.MINOR.PATCH")
		}
		out[i] = n
	}
	return out, nil
}
