package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
)

// gen is one generation of a projection: one SQLite file and, unless it
// is frozen, the goroutine that folds the log into it.
type gen struct {
	pr      *proj
	file    string // base name in the projection's directory, e.g. "000002.db"
	path    string
	db      *sqlitedb.DB
	version int  // the projection version that built the file
	follow  bool // false: frozen, serving an old version while a rebuild runs
	resume  chan struct{}
	cancel  context.CancelFunc
	ahead   *readAhead       // owned by the loop
	cursor  *eventlog.Cursor // owned by the loop: the catch-up read

	// For Status while the generation is built from scratch.
	reason   string
	started  time.Time
	startSeq uint64

	// Guarded by pr.mu.
	building bool // until it has caught up (or been swapped in)
	cp       checkpoint
	live     bool // caught up once: reads are unfiltered from here on (see step)
	behind   bool // the last read was a full batch
	halt     *Halt
	lastErr  string
	refs     int  // readers, the loop, and the runner until retired
	retired  bool // no longer current or next; closed at refs 0
}

func (g *gen) checkpoint() checkpoint {
	g.pr.mu.Lock()
	defer g.pr.mu.Unlock()
	return g.cp
}

// run folds the log into g until ctx ends: catch-up and live are the
// same loop, read a page after the checkpoint and commit it with the
// checkpoint in one transaction.
func (g *gen) run(ctx context.Context) {
	pr, r := g.pr, g.pr.r
	defer pr.unref(g)
	defer g.dropAhead()
	for ctx.Err() == nil {
		pr.mu.Lock()
		halted, cp, live, idle := g.halt != nil, g.cp, g.live, g.live && !g.behind
		pr.mu.Unlock()
		if halted {
			select {
			case <-ctx.Done():
			case <-g.resume:
			}
			continue
		}
		if idle && pr.isNext(g) {
			if err := pr.trySwap(g); err != nil {
				g.setErr(err)
				sleep(ctx, r.RetryInterval)
				continue
			}
		}
		wake := r.tailWake()
		if idle && r.tailSeq() <= cp.Seq {
			select {
			case <-ctx.Done():
			case <-wake:
			case <-g.resume:
			}
			continue
		}
		done, err := g.step(ctx, 0)
		if ctx.Err() != nil {
			return
		}
		var he *HaltedError
		switch {
		case errors.As(err, &he):
			g.setHalt(&he.Halt)
		case err != nil:
			g.setErr(err)
			sleep(ctx, r.RetryInterval)
		default:
			g.setErr(nil)
			if live && done && g.checkpoint().Seq == cp.Seq && r.tailSeq() > cp.Seq {
				// The log says there is more but our read did not see it
				// yet (a replica behind): look again shortly.
				select {
				case <-ctx.Done():
				case <-wake:
				case <-time.After(r.PollInterval):
				}
			}
		}
	}
}

// step reads the next page after the checkpoint and folds it. done is
// true when the read examined everything the log held (up to upto, when
// it is not 0).
//
// Until g has caught up once, reads use the projection's filter, so the
// log narrows a category server-side. Page.LastSeq then only counts that
// category's messages, so once caught up g reads everything and filters
// here: the checkpoint then moves past every sequence examined, events of
// other categories included, which is what WaitFor and Lag measure.
func (g *gen) step(ctx context.Context, upto uint64) (done bool, err error) {
	pr, r := g.pr, g.pr.r
	f := pr.p.Filter
	pr.mu.Lock()
	cp, live := g.cp, g.live
	pr.mu.Unlock()
	readFilter := f
	if live {
		readFilter = eventlog.Filter{}
	}
	page, rerr := g.read(ctx, cp.Seq, live, readFilter)
	if rerr != nil {
		return false, rerr
	}
	// Measured before the filter below edits the page in place.
	full := len(page.Events) >= r.BatchSize || page.DataBytes() >= r.BatchBytes
	events := page.Events
	if live {
		events = slices.DeleteFunc(events, func(e eventlog.Event) bool { return !f.Match(&e) })
	}
	// The fold stops at a malformed entry the filter lets through: what
	// comes after it is read again once it is skipped.
	var de *eventlog.DecodeError
	if i := slices.IndexFunc(events, func(e eventlog.Event) bool { return e.Malformed != nil }); i >= 0 {
		errors.As(events[i].Err(), &de)
		events = events[:i]
	}
	full = full && de == nil
	if full && (upto == 0 || page.LastSeq < upto) {
		g.readAhead(ctx, page.LastSeq, live, readFilter)
	}
	examined := page.LastSeq
	if de != nil {
		examined = de.Seq - 1 // everything before it was read
	}
	done = de == nil && !full
	if upto > 0 {
		events = slices.DeleteFunc(events, func(e eventlog.Event) bool { return e.Seq > upto })
		if de != nil && de.Seq > upto {
			de = nil
		}
		if de == nil && (examined >= upto || !full) {
			examined, done = upto, true
		}
	}
	examined = max(examined, cp.Seq)
	if stopped, err := g.fold(ctx, cp, events, examined, done); err != nil || stopped {
		return false, err
	}
	if de != nil {
		return false, g.malformed(ctx, de)
	}
	return done, nil
}

// read returns the page after after, from the read started ahead if it
// is the one wanted: catching up then reads the next batch while the
// current one is applied. Catching up, it reads through a cursor (one
// ordered consumer streaming the log, far cheaper per event than direct
// gets); live, it reads small pages with direct gets.
func (g *gen) read(ctx context.Context, after uint64, live bool, f eventlog.Filter) (eventlog.Page, error) {
	if p := g.ahead; p != nil {
		g.ahead = nil
		res := <-p.done
		if p.after == after && p.live == live {
			return res.page, res.err
		}
	}
	return g.readNow(ctx, after, live, f)
}

func (g *gen) readNow(ctx context.Context, after uint64, live bool, f eventlog.Filter) (eventlog.Page, error) {
	log, size, bytes := g.pr.r.log, g.pr.r.BatchSize, g.pr.r.BatchBytes
	if live {
		g.closeCursor()
		return log.ReadUpTo(ctx, after, size, bytes, f)
	}
	if g.cursor != nil && g.cursor.Pos() != after {
		g.closeCursor()
	}
	if g.cursor == nil {
		c, err := log.OpenCursor(ctx, after, f)
		if err != nil {
			return eventlog.Page{}, err
		}
		g.cursor = c
	}
	p, err := g.cursor.NextUpTo(ctx, size, bytes)
	if err != nil {
		g.closeCursor() // a retry starts afresh from the checkpoint
	}
	return p, err
}

func (g *gen) closeCursor() {
	if g.cursor != nil {
		g.cursor.Close()
		g.cursor = nil
	}
}

func (g *gen) readAhead(ctx context.Context, after uint64, live bool, f eventlog.Filter) {
	p := &readAhead{after: after, live: live, done: make(chan readResult, 1)}
	g.ahead = p
	// The loop waits for this read before touching the cursor again.
	go func() {
		page, err := g.readNow(ctx, after, live, f)
		p.done <- readResult{page, err}
	}()
}

// dropAhead waits for a read started ahead, so none outlives its loop,
// and closes the cursor.
func (g *gen) dropAhead() {
	if g.ahead != nil {
		<-g.ahead.done
		g.ahead = nil
	}
	g.closeCursor()
}

type readAhead struct {
	after uint64
	live  bool
	done  chan readResult
}

type readResult struct {
	page eventlog.Page
	err  error
}

// fold commits events and the checkpoint examined in one transaction.
// When an event fails, nothing of the batch is kept: the events before
// it are committed in a transaction of their own, then the failing one
// is tried alone, and only if it fails again the projection halts there.
// stopped reports that the batch did not go through whole.
func (g *gen) fold(ctx context.Context, cp checkpoint, events []eventlog.Event, examined uint64, done bool) (stopped bool, err error) {
	if len(events) == 0 && examined == cp.Seq {
		g.pr.mu.Lock()
		g.settle(done)
		g.pr.mu.Unlock()
		return false, nil
	}
	next := cp
	next.Seq = examined
	if n := len(events); n > 0 {
		next.EventSeq, next.EventID = events[n-1].Seq, events[n-1].ID
	}
	i, err := g.commit(ctx, events, next, nil, done)
	if err == nil {
		return false, nil
	}
	if i < 0 {
		return true, err
	}
	bad := events[i]
	before := cp
	before.Seq = bad.Seq - 1
	if i > 0 {
		before.EventSeq, before.EventID = events[i-1].Seq, events[i-1].ID
	}
	if j, err := g.commit(ctx, events[:i], before, nil, false); err != nil {
		if j >= 0 {
			return true, fmt.Errorf("projection %s: event %d failed in a batch, then event %d before it failed on its own (%w): Apply is not deterministic", g.pr.p.Name, bad.Seq, events[j].Seq, err)
		}
		return true, err
	}
	alone := before
	alone.Seq, alone.EventSeq, alone.EventID = bad.Seq, bad.Seq, bad.ID
	j, err2 := g.commit(ctx, events[i:i+1], alone, nil, false)
	switch {
	case err2 == nil:
		g.pr.r.Logger.Warn("projection event failed in a batch but applied on its own; Apply may depend on something besides its event",
			"projection", g.pr.p.Name, "seq", bad.Seq, "type", bad.Type, "err", err)
		return true, nil
	case j < 0:
		return true, err2
	}
	return true, g.failed(ctx, bad.Seq, bad.ID, bad.Type, err2)
}

// malformed handles a message in the log that is not a valid event. One
// on another category's subject cannot match a filter by category, so it
// is examined like any event of that category; any other halts.
func (g *gen) malformed(ctx context.Context, de *eventlog.DecodeError) error {
	if cats := g.pr.p.Filter.Categories; len(cats) > 0 {
		stream, _ := eventlog.StreamOf(de.Subject)
		cat := eventlog.Category(stream)
		if !slices.Contains(cats, cat) {
			next := g.checkpoint()
			next.Seq = de.Seq
			_, err := g.commit(ctx, nil, next, nil, false)
			return err
		}
	}
	return g.failed(ctx, de.Seq, "", "", de)
}

// failed decides what happens at an event that failed, with the
// checkpoint just before it: skipped, if the log holds a skip decision
// for it, otherwise a halt.
func (g *gen) failed(ctx context.Context, seq uint64, id, typ string, cause error) error {
	pr := g.pr
	rec, found, err := pr.r.findSkip(ctx, pr.p.Name, seq, id, g.version)
	if err != nil {
		// %v: this is the skip read's failure, retried; the event's own
		// (cause) is only context, and must not classify it.
		return fmt.Errorf("projection %s: event %d failed (%v) and the skip decisions could not be read: %w", pr.p.Name, seq, cause, err)
	}
	if !found {
		return &HaltedError{Projection: pr.p.Name, Halt: Halt{Seq: seq, EventID: id, Type: typ, Error: cause.Error(), Since: time.Now().UTC()}}
	}
	next := g.checkpoint()
	next.Seq = seq
	if _, err := g.commit(ctx, nil, next, &skipRow{seq: seq, id: id, typ: typ, err: cause.Error(), record: rec}, false); err != nil {
		return err
	}
	pr.r.Logger.Warn("projection skipped an event, as recorded in the log", "projection", pr.p.Name, "seq", seq,
		"type", typ, "event_id", id, "err", cause.Error(), "record_seq", rec, "file", g.path)
	return nil
}

type skipRow struct {
	seq     uint64
	id, typ string
	err     string
	record  uint64
}

// The checkpoint moves only from where this runner last left it: if
// another process folds the same file, the update finds another seq and
// the transaction is abandoned instead of applying events twice.
const (
	updateCheckpoint = `UPDATE fazt_checkpoint SET projection = ?, projection_version = ?, seq = ?, event_seq = ?, event_id = ?
WHERE id = 1 AND seq = ?`
	insertCheckpoint = `INSERT INTO fazt_checkpoint (id, projection, projection_version, seq, event_seq, event_id)
VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
)

// commit applies events and writes next as the checkpoint in one
// transaction. done says that next is the end of the log as last read.
// When Apply fails it returns the index of the event; otherwise the
// index is -1.
func (g *gen) commit(ctx context.Context, events []eventlog.Event, next checkpoint, skip *skipRow, done bool) (int, error) {
	pr := g.pr
	tx, err := g.db.Writer.BeginTx(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("projection %s: begin: %w", pr.p.Name, err)
	}
	defer tx.Rollback()
	actx := ctx
	if len(events) > 1 {
		actx = context.WithValue(ctx, stmtsKey{}, &txStmts{tx: tx})
	}
	actx, batch := withBatch(actx, tx)
	for i := range events {
		if err := g.apply(actx, tx, events[i]); err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return i, err
		}
	}
	if err := g.flush(actx, tx, batch); err != nil { // not an event's fault: retried (see Batch)
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, err
	}
	if skip != nil {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO fazt_skipped (seq, event_id, event_type, error, record_seq) VALUES (?, ?, ?, ?, ?)`,
			skip.seq, nullable(skip.id), nullable(skip.typ), skip.err, skip.record); err != nil {
			return -1, fmt.Errorf("projection %s: record skip: %w", pr.p.Name, sqlitedb.WrapErr("INSERT", err))
		}
	}
	if err := g.writeCheckpoint(ctx, tx, next); err != nil {
		return -1, err
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("projection %s: commit: %w", pr.p.Name, err)
	}
	pr.mu.Lock()
	next.Version = g.version
	g.cp = next
	g.settle(done) // with the checkpoint, so a WaitFor sees both
	pr.mu.Unlock()
	pr.broadcast()
	return -1, nil
}

// settle records whether g has caught up with the log. pr.mu is held.
func (g *gen) settle(done bool) {
	g.behind = !done
	if !done || g.live {
		return
	}
	g.live = true
	if g.building && g.pr.cur == g {
		g.building = false
		g.pr.r.Logger.Info("projection caught up", "projection", g.pr.p.Name, "seq", g.cp.Seq, "file", g.path,
			"took", time.Since(g.started).Round(time.Millisecond))
	}
}

// writeCheckpoint moves the file's checkpoint to next, from g.cp.
func (g *gen) writeCheckpoint(ctx context.Context, tx *sql.Tx, next checkpoint) error {
	pr := g.pr
	prev := g.checkpoint()
	args := []any{pr.p.Name, g.version, next.Seq, next.EventSeq, nullable(next.EventID)}
	res, err := tx.ExecContext(ctx, updateCheckpoint, append(args, prev.Seq)...)
	var n int64
	if err == nil {
		if n, err = res.RowsAffected(); err == nil && n == 0 { // a new file has no row yet
			if res, err = tx.ExecContext(ctx, insertCheckpoint, args...); err == nil {
				n, err = res.RowsAffected()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("projection %s: write checkpoint: %w", pr.p.Name, sqlitedb.WrapErr("UPDATE", err))
	}
	if n == 1 {
		return nil
	}
	var file checkpoint
	var id sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT projection_version, seq, event_seq, event_id FROM fazt_checkpoint WHERE id = 1`).
		Scan(&file.Version, &file.Seq, &file.EventSeq, &id); err != nil {
		return fmt.Errorf("projection %s: read checkpoint: %w", pr.p.Name, err)
	}
	file.EventID = id.String
	pr.mu.Lock()
	g.cp = file
	pr.mu.Unlock()
	return fmt.Errorf("projection %s: the checkpoint of %s moved from seq %d to %d behind this runner's back; is another process folding the same directory? Continuing from the file's checkpoint",
		pr.p.Name, g.path, prev.Seq, file.Seq)
}

// apply calls Apply, turning a panic into an error: a bad event must
// halt its projection, not the process. The stack goes to the log only.
func (g *gen) apply(ctx context.Context, tx *sql.Tx, e eventlog.Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in Apply: %v", p)
			g.pr.r.Logger.Error("projection Apply panicked", "projection", g.pr.p.Name, "seq", e.Seq, "type", e.Type, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	return g.pr.p.Apply(ctx, tx, e)
}

// txStmts are the statements prepared in one fold transaction, by SQL.
type txStmts struct {
	tx *sql.Tx
	m  map[string]*sql.Stmt
}

type stmtsKey struct{}

// maxTxStmts bounds the cache: SQL built per event (with literal values)
// would otherwise grow it for nothing.
const maxTxStmts = 64

// stmt returns query prepared in tx, when ctx carries tx's cache.
func stmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	c, ok := ctx.Value(stmtsKey{}).(*txStmts)
	if !ok || c.tx != tx {
		return nil, nil
	}
	if st := c.m[query]; st != nil {
		return st, nil
	}
	if len(c.m) >= maxTxStmts {
		return nil, nil
	}
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, sqlitedb.WrapErr(query, err)
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st, nil
}

// Exec runs a statement in Apply's transaction, like tx.ExecContext, but
// prepares each distinct query once per batch of events: SQLite
// otherwise compiles the statement for every event, which is most of
// the cost of a small insert while catching up or rebuilding. Pass
// Apply's ctx and tx, and build queries with ? arguments rather than
// literal values so that they repeat.
func Exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	st, err := stmt(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

// QueryRow runs a query in Apply's transaction with Exec's statement
// cache, like tx.QueryRowContext.
func QueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st, err := stmt(ctx, tx, query); err == nil && st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (g *gen) setHalt(h *Halt) {
	pr := g.pr
	// Logged before Status shows it, so whoever sees the halt finds it
	// in the log too.
	if h != nil {
		pr.r.Logger.Error("projection halted", "projection", pr.p.Name, "seq", h.Seq, "type", h.Type, "event_id", h.EventID,
			"err", h.Error, "file", g.path, "next", "fix the cause and retry, or skip the event (the skip is recorded in the log)")
	}
	pr.mu.Lock()
	g.halt = h
	pr.mu.Unlock()
	pr.broadcast()
}

// setErr records a transient problem for Status, logging each new one once.
func (g *gen) setErr(err error) {
	pr := g.pr
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	pr.mu.Lock()
	changed := g.lastErr != msg
	g.lastErr = msg
	pr.mu.Unlock()
	if changed && err != nil {
		pr.r.Logger.Warn("projection cannot make progress; retrying", "projection", pr.p.Name, "file", g.path, "err", err, "retry_in", pr.r.RetryInterval)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
