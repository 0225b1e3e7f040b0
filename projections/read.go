package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fazt-sh/fazt/eventlog"
)

// DefaultReadMaxWait bounds Read's wait for ReadOptions.MinSeq when
// ReadOptions.MaxWait is not set.
const DefaultReadMaxWait = 5 * time.Second

// ReadOptions tunes Runner.Read. The zero value reads the serving file
// as it is, without waiting.
type ReadOptions struct {
	// MinSeq makes Read wait until the projection has folded the log up
	// to it: pass an append's LastSeq to read your own writes, or the
	// log's LastSeq to read everything it held.
	MinSeq uint64
	// MaxWait bounds that wait (default DefaultReadMaxWait); the
	// caller's context bounds it too.
	MaxWait time.Duration
	// CurrentVersion also waits until the serving file is the registered
	// version's. After a version bump the previous version's file
	// serves, frozen, until the rebuild replaces it: reads that need the
	// registered version's tables set this (as WaitForVersion).
	CurrentVersion bool
	// Timeout bounds the read itself, from taking a connection to fn's
	// return; a statement still running then is interrupted. Zero: only
	// the caller's context.
	Timeout time.Duration
	// MaxValueBytes, when positive, is the largest string or BLOB SQLite
	// may make during the read (its length limit, lowered on the read's
	// connection and restored after): a larger value fails with
	// SQLITE_TOOBIG instead of being held in memory.
	MaxValueBytes int
}

// Read is the way to read a read model. It runs fn in one read-only
// transaction on the file serving the projection name, once that file
// has folded the log up to opts.MinSeq, and returns seq, the checkpoint
// fn's reads see: the transaction reads it before fn runs, so fn reads
// the state of the log folded up to seq, no more and no less, and seq
// is at least MinSeq. Callers never read the checkpoint table.
//
// The wait lasts at most opts.MaxWait. A projection that has not folded
// MinSeq by then, or cannot because it is halted at or before MinSeq
// (known at once, and wrapping the *HaltedError), is an error wrapping
// eventlog.ErrUnavailable that says how far the projection is. A halted
// projection still serves reads that ask no more than it has. When ctx
// ends first, the error is ctx's.
//
// fn gets a context that ends with ctx or opts.Timeout, and must not
// keep tx, or rows read from it, past its return. An error fn returns
// is returned unchanged, for the caller to phrase. Other errors:
// eventlog.ErrNotFound for an unknown projection, ErrClosed, and the
// read's own failures, which name the projection (and wrap
// context.DeadlineExceeded when opts.Timeout passed before fn ran).
func (r *Runner) Read(ctx context.Context, name string, opts ReadOptions, fn func(ctx context.Context, tx *sql.Tx) error) (seq uint64, err error) {
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultReadMaxWait
	}
	pr, err := r.lookup(name)
	if err != nil {
		return 0, err
	}
	if err := r.waitRead(ctx, pr, opts); err != nil {
		return 0, err
	}
	// The file that passed the wait, or one a rebuild swapped in since,
	// which had caught up with it: either way at least MinSeq.
	db, release, err := pr.acquire()
	if err != nil {
		return 0, err
	}
	defer release()
	rctx := ctx
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	failed := func(step string, err error) error {
		if rctx.Err() != nil && !errors.Is(err, rctx.Err()) {
			// The driver reports an interruption in its own words; say
			// why it was interrupted.
			err = fmt.Errorf("%w (%w)", rctx.Err(), err)
		}
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("projection %s: read timed out after %v: %s: %w", name, opts.Timeout, step, err)
		}
		return fmt.Errorf("projection %s: read: %s: %w", name, step, err)
	}
	conn, err := db.Reader.Conn(rctx)
	if err != nil {
		return 0, failed("take a connection", err)
	}
	defer conn.Close()
	if opts.MaxValueBytes > 0 {
		prev, err := sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, opts.MaxValueBytes)
		if err != nil {
			return 0, failed("set the length limit", err)
		}
		// The connection goes back to the pool, for other readers.
		defer sqlite.Limit(conn, sqlite3.SQLITE_LIMIT_LENGTH, prev)
	}
	tx, err := conn.BeginTx(rctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, failed("begin", err)
	}
	defer tx.Rollback()
	// The first read fixes the transaction's snapshot (WAL), which fn's
	// reads then share.
	if err := tx.QueryRowContext(rctx, `SELECT seq FROM fazt_checkpoint WHERE id = 1`).Scan(&seq); err != nil {
		return 0, failed("read the checkpoint", err)
	}
	if err := fn(rctx, tx); err != nil {
		return 0, err
	}
	return seq, nil
}

// waitRead waits, at most opts.MaxWait, until pr's serving file has
// folded opts.MinSeq (and is the registered version's, when
// opts.CurrentVersion), and says how far it is when it has not.
func (r *Runner) waitRead(ctx context.Context, pr *proj, opts ReadOptions) error {
	if wake, err := pr.reached(opts.MinSeq, opts.CurrentVersion); wake == nil && err == nil {
		return nil // the usual case, without a timer
	}
	wctx, cancel := context.WithTimeout(ctx, opts.MaxWait)
	defer cancel()
	err := pr.waitFor(wctx, opts.MinSeq, opts.CurrentVersion)
	if err == nil {
		return nil
	}
	halted := errors.Is(err, ErrHalted)
	if !halted && (ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded)) {
		return err // the caller's context, ErrClosed
	}
	st := r.Status(pr.p.Name)
	at, want := fmt.Sprintf("at seq %d", st.Seq), fmt.Sprint(opts.MinSeq)
	if opts.CurrentVersion {
		at = fmt.Sprintf("version %d at seq %d (%s)", st.ServingVersion, st.Seq, st.State)
		want = fmt.Sprintf("version %d at seq %d", pr.p.Version, opts.MinSeq)
	}
	if halted {
		return fmt.Errorf("%w: projection %s is behind: %s, want %s: %w", eventlog.ErrUnavailable, pr.p.Name, at, want, err)
	}
	return fmt.Errorf("%w: projection %s is behind: %s after waiting %v for %s", eventlog.ErrUnavailable, pr.p.Name, at, opts.MaxWait, want)
}
