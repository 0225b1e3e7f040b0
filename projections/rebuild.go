package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/projections/sqlitedb"
)

// pointerFile names a projection's generations. It is replaced whole by
// rename, so it always names complete, durable files.
const pointerFile = "current"

// Reasons a generation is built, shown in Status.Rebuild.
const (
	reasonNew       = "new projection: back-filling from the log"
	reasonRequested = "rebuild requested"
)

type pointer struct {
	Current  string `json:"current"`            // serves reads
	Previous string `json:"previous,omitempty"` // the one it replaced, kept for rollback
	Next     string `json:"next,omitempty"`     // a rebuild under way, resumed at Open
}

var genRE = regexp.MustCompile(`^([0-9]{6,})\.db(-wal|-shm|-journal)?$`)

func genName(n int) string { return fmt.Sprintf("%06d.db", n) }

func isGen(file string) bool {
	m := genRE.FindStringSubmatch(file)
	return m != nil && m[2] == ""
}

// exists reports whether a generation's file is on disk; a pointer to a
// missing file (deleted by hand) is treated as no file at all.
func (pr *proj) exists(file string) bool {
	_, err := os.Stat(filepath.Join(pr.dir, file))
	return err == nil
}

func readPointer(dir string) (pointer, error) {
	var p pointer
	b, err := os.ReadFile(filepath.Join(dir, pointerFile))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil || !isGen(p.Current) || (p.Previous != "" && !isGen(p.Previous)) || (p.Next != "" && !isGen(p.Next)) {
		return p, fmt.Errorf("%s is damaged (%q); remove the directory to rebuild the projection from the log", filepath.Join(dir, pointerFile), b)
	}
	return p, nil
}

// writePointer replaces the pointer file atomically and durably: write a
// temporary file, fsync it, rename it over the old one, fsync the
// directory.
func writePointer(dir string, p pointer) error {
	b, _ := json.Marshal(p)
	tmp := filepath.Join(dir, pointerFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, pointerFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, pointerFile), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeGen deletes a generation's files.
func removeGen(dir, file string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(filepath.Join(dir, file+suffix))
	}
}

// open brings the projection's directory to a state the runner can
// serve: files no pointer names are leftovers of an interrupted
// generation and are removed; the current file is migrated and checked
// against the log; a rebuild is started or resumed where needed. pr.mu
// is not needed: nothing runs yet.
func (pr *proj) open(ctx context.Context, tail uint64) (err error) {
	defer func() {
		if err != nil {
			pr.shut()
		}
	}()
	name := pr.p.Name
	if err := os.MkdirAll(pr.dir, 0o755); err != nil {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	ptr, err := readPointer(pr.dir)
	if err != nil {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	if err := pr.cleanup(ptr); err != nil {
		return fmt.Errorf("projection %s: %w", name, err)
	}
	log := pr.r.Logger
	if ptr.Current != "" && !pr.exists(ptr.Current) {
		log.Warn("projection file is missing: rebuilding it from the log", "projection", name, "file", filepath.Join(pr.dir, ptr.Current))
		ptr = pointer{}
	}
	if ptr.Previous != "" && !pr.exists(ptr.Previous) {
		ptr.Previous = ""
	}
	if ptr.Next != "" && !pr.exists(ptr.Next) {
		ptr.Next = ""
	}
	if ptr.Current == "" {
		g, err := pr.create(ctx, reasonNew)
		if err != nil {
			return err
		}
		if err := writePointer(pr.dir, pointer{Current: g.file}); err != nil {
			g.db.Close()
			return fmt.Errorf("projection %s: %w", name, err)
		}
		pr.cur = g
		log.Info("new projection: building it from the log", "projection", name, "version", pr.p.Version, "file", g.path)
		return nil
	}

	cur, err := pr.openGen(ctx, ptr.Current, tail)
	if err != nil {
		return err
	}
	if cur.reason != "" { // the log does not back it
		log.Warn("projection checkpoint does not match the log: rebuilding it from scratch; the old file is kept as the previous generation",
			"projection", name, "reason", cur.reason, "file", cur.path)
		cur.db.Close()
		g, err := pr.create(ctx, "rebuild: "+cur.reason)
		if err != nil {
			return err
		}
		if err := writePointer(pr.dir, pointer{Current: g.file, Previous: cur.file}); err != nil {
			g.db.Close()
			return fmt.Errorf("projection %s: %w", name, err)
		}
		pr.dropFiles(ptr, g.file, cur.file)
		pr.cur, pr.prev = g, cur.file
		return nil
	}
	pr.cur, pr.prev = cur, ptr.Previous

	if cur.cp.Version != pr.p.Version && ptr.Previous != "" {
		// A rollback (or roll forward) to the version the previous file
		// was built with: serve it again and let it catch up.
		if prev, err := pr.openGen(ctx, ptr.Previous, tail); err == nil && prev.reason == "" && prev.cp.Version == pr.p.Version {
			if err := writePointer(pr.dir, pointer{Current: prev.file, Previous: cur.file}); err != nil {
				prev.db.Close()
				return fmt.Errorf("projection %s: %w", name, err)
			}
			log.Info("projection version changed back: serving the previous generation again", "projection", name,
				"version", pr.p.Version, "file", prev.path, "seq", prev.cp.Seq, "was", cur.path)
			cur.db.Close()
			pr.dropFiles(ptr, prev.file, cur.file)
			pr.cur, pr.prev = prev, cur.file
			return nil
		} else if err == nil {
			prev.db.Close()
		}
	}

	if ptr.Next != "" {
		next, err := pr.openGen(ctx, ptr.Next, tail)
		if err == nil && next.reason == "" && next.cp.Version == pr.p.Version {
			next.building, next.reason = true, reasonRequested+" (resumed)"
			if cur.cp.Version != pr.p.Version {
				next.reason = fmt.Sprintf("version %d → %d (resumed)", cur.cp.Version, pr.p.Version)
				cur.follow = false
			}
			pr.next = next
			log.Info("projection rebuild resumed", "projection", name, "file", next.path, "seq", next.cp.Seq, "reason", next.reason)
			return nil
		}
		if err == nil {
			next.db.Close()
		}
		removeGen(pr.dir, ptr.Next)
		ptr.Next = ""
		if err := writePointer(pr.dir, ptr); err != nil {
			return fmt.Errorf("projection %s: %w", name, err)
		}
	}
	if cur.cp.Version != pr.p.Version {
		cur.follow = false
		log.Info("projection version changed: rebuilding it beside the old file, which serves until the new one has caught up",
			"projection", name, "from", cur.cp.Version, "to", pr.p.Version, "file", cur.path)
		next, err := pr.createNext(ctx, fmt.Sprintf("version %d → %d", cur.cp.Version, pr.p.Version), ptr)
		if err != nil {
			return err
		}
		pr.next = next
	}
	return nil
}

// cleanup removes files no pointer names: the remains of a generation
// that was never completed or was replaced twice.
func (pr *proj) cleanup(ptr pointer) error {
	entries, err := os.ReadDir(pr.dir)
	if err != nil {
		return err
	}
	keep := map[string]bool{ptr.Current: true, ptr.Previous: true, ptr.Next: true}
	for _, e := range entries {
		m := genRE.FindStringSubmatch(e.Name())
		if m == nil {
			if e.Name() == pointerFile+".tmp" {
				os.Remove(filepath.Join(pr.dir, e.Name()))
			}
			continue
		}
		n, _ := strconv.Atoi(m[1])
		pr.maxNum = max(pr.maxNum, n)
		if base := m[1] + ".db"; !keep[base] {
			os.Remove(filepath.Join(pr.dir, e.Name()))
		}
	}
	return nil
}

// dropFiles removes the generations ptr named that are neither of keep.
func (pr *proj) dropFiles(ptr pointer, keep ...string) {
	for _, f := range []string{ptr.Current, ptr.Previous, ptr.Next} {
		if f != "" && f != keep[0] && f != keep[1] {
			removeGen(pr.dir, f)
		}
	}
}

// openGen opens an existing generation, migrates it to the declared
// tables and reads its checkpoint. When the log does not back the
// checkpoint, g.reason says why.
func (pr *proj) openGen(ctx context.Context, file string, tail uint64) (*gen, error) {
	g, err := pr.openFile(ctx, file)
	if err != nil {
		return nil, err
	}
	row := g.db.Writer.QueryRowContext(ctx, `SELECT projection_version, seq, event_seq, event_id FROM fazt_checkpoint WHERE id = 1`)
	var id sql.NullString
	switch err := row.Scan(&g.cp.Version, &g.cp.Seq, &g.cp.EventSeq, &id); {
	case errors.Is(err, sql.ErrNoRows):
		g.cp = checkpoint{Version: pr.p.Version}
	case err != nil:
		g.db.Close()
		return nil, fmt.Errorf("projection %s: read checkpoint of %s: %w", pr.p.Name, g.path, err)
	}
	g.cp.EventID = id.String
	g.version = g.cp.Version
	if g.reason, err = pr.r.verify(ctx, g.cp, tail); err != nil {
		g.db.Close()
		return nil, fmt.Errorf("projection %s: check checkpoint of %s against the log: %w", pr.p.Name, g.path, err)
	}
	g.startSeq = g.cp.Seq
	return g, nil
}

// openFile opens (creating) a generation file and migrates it.
func (pr *proj) openFile(ctx context.Context, file string) (*gen, error) {
	path := filepath.Join(pr.dir, file)
	db := sqlitedb.New(path)
	db.Readers = pr.r.Readers
	if err := db.Open(ctx); err != nil {
		return nil, fmt.Errorf("projection %s: %w", pr.p.Name, err)
	}
	if err := sqlitedb.Migrate(ctx, db, pr.p.tables()...); err != nil {
		db.Close()
		return nil, fmt.Errorf("projection %s: %s: %w", pr.p.Name, path, err)
	}
	return &gen{pr: pr, file: file, path: path, db: db, version: pr.p.Version, follow: true,
		resume: make(chan struct{}, 1), refs: 1, started: time.Now()}, nil
}

// create makes a new, empty generation at seq 0, durable on disk before
// any pointer names it.
func (pr *proj) create(ctx context.Context, reason string) (*gen, error) {
	pr.mu.Lock()
	pr.maxNum++
	file := genName(pr.maxNum)
	pr.mu.Unlock()
	removeGen(pr.dir, file)
	g, err := pr.openFile(ctx, file)
	if err != nil {
		return nil, err
	}
	g.building, g.reason = true, reason
	if _, err = g.commit(ctx, nil, checkpoint{Version: pr.p.Version}, nil, false); err == nil {
		err = g.makeDurable(ctx)
	}
	if err != nil {
		g.db.Close()
		removeGen(pr.dir, file)
		return nil, fmt.Errorf("projection %s: create %s: %w", pr.p.Name, g.path, err)
	}
	return g, nil
}

// makeDurable writes the WAL into the database file and fsyncs it and
// the directory, so a pointer renamed to name the file never outlives it.
func (g *gen) makeDurable(ctx context.Context) error {
	if _, err := g.db.Writer.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return err
	}
	f, err := os.Open(g.path)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(g.path))
}

// verify checks a checkpoint against the log: it must not be ahead of
// the log, and the last event it applied must be in the log at the same
// sequence with the same ID. A non-empty reason says how it fails.
func (r *Runner) verify(ctx context.Context, cp checkpoint, tail uint64) (string, error) {
	if cp.Seq > tail {
		return fmt.Sprintf("checkpoint at seq %d is ahead of the log, which ends at seq %d", cp.Seq, tail), nil
	}
	if cp.EventSeq == 0 {
		return "", nil
	}
	page, err := r.log.Read(ctx, cp.EventSeq-1, 1, eventlog.Filter{})
	switch {
	case err == nil && len(page.Events) > 0 && page.Events[0].Malformed != nil:
		return fmt.Sprintf("checkpoint names event %s at seq %d, but the log holds a malformed message there", cp.EventID, cp.EventSeq), nil
	case err != nil:
		return "", err
	case len(page.Events) == 0 || page.Events[0].Seq != cp.EventSeq:
		return fmt.Sprintf("checkpoint names event %s at seq %d, which the log does not hold", cp.EventID, cp.EventSeq), nil
	case page.Events[0].ID != cp.EventID:
		return fmt.Sprintf("checkpoint names event %s at seq %d, but the log holds event %s there", cp.EventID, cp.EventSeq, page.Events[0].ID), nil
	}
	return "", nil
}

// Rebuild builds name again from seq 0 into a new file, in the
// background, while the current file keeps serving and following the
// log; once the new file has caught up it replaces the current one
// atomically (see Status for progress). A rebuild already under way is
// left alone. Errors: ErrNotFound, ErrClosed, and errors creating the
// file.
func (r *Runner) Rebuild(ctx context.Context, name string) error {
	pr, err := r.lookup(name)
	if err != nil {
		return err
	}
	pr.opMu.Lock()
	defer pr.opMu.Unlock()
	r.mu.Lock()
	open := r.state == runnerOpen
	r.mu.Unlock()
	pr.mu.Lock()
	busy, cur := pr.next != nil, pr.cur
	pr.mu.Unlock()
	if !open || cur == nil {
		return fmt.Errorf("projection %s: %w", name, ErrClosed)
	}
	if busy {
		return nil
	}
	pr.mu.Lock()
	ptr := pointer{Current: cur.file, Previous: pr.prev}
	pr.mu.Unlock()
	g, err := pr.createNext(ctx, reasonRequested, ptr)
	if err != nil {
		return err
	}
	// Under r.mu, so that Close either has not begun (and will retire
	// g) or has (and g stays on disk, resumed at the next Open).
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != runnerOpen {
		g.db.Close()
		return fmt.Errorf("projection %s: %w", name, ErrClosed)
	}
	pr.mu.Lock()
	pr.next = g
	pr.start(r.runCtx, g)
	pr.mu.Unlock()
	r.Logger.Info("projection rebuild started", "projection", name, "serving", cur.path, "file", g.path)
	return nil
}

// createNext creates the next generation and records it in the pointer
// file.
func (pr *proj) createNext(ctx context.Context, reason string, ptr pointer) (*gen, error) {
	g, err := pr.create(ctx, reason)
	if err != nil {
		return nil, err
	}
	ptr.Next = g.file
	if err := writePointer(pr.dir, ptr); err != nil {
		g.db.Close()
		removeGen(pr.dir, g.file)
		return nil, fmt.Errorf("projection %s: %w", pr.p.Name, err)
	}
	return g, nil
}

// trySwap makes g, a rebuilt generation that has caught up, the current
// one, if it is not behind the current one (readers never go back in
// time). The old file is kept as the previous generation; the one before
// it is removed.
func (pr *proj) trySwap(g *gen) error {
	pr.mu.Lock()
	ok := pr.next == g && pr.cur != nil && g.cp.Seq >= pr.cur.cp.Seq
	pr.mu.Unlock()
	if !ok {
		return nil
	}
	// The loop calling this is the file's only writer and no reader has
	// it yet, so the checkpoint of the WAL completes.
	if err := g.makeDurable(context.Background()); err != nil {
		return fmt.Errorf("projection %s: make %s durable before the swap: %w", pr.p.Name, g.path, err)
	}
	pr.mu.Lock()
	old := pr.cur
	if pr.next != g || old == nil || g.cp.Seq < old.cp.Seq {
		pr.mu.Unlock()
		return nil
	}
	if err := writePointer(pr.dir, pointer{Current: g.file, Previous: old.file}); err != nil {
		pr.mu.Unlock()
		return fmt.Errorf("projection %s: swap: %w", pr.p.Name, err)
	}
	oldPrev := pr.prev
	pr.cur, pr.next, pr.prev = g, nil, old.file
	g.building = false
	closeOld := pr.retire(old)
	pr.mu.Unlock()
	pr.broadcast()
	if closeOld {
		old.db.Close()
	}
	if oldPrev != "" && oldPrev != g.file && oldPrev != old.file {
		removeGen(pr.dir, oldPrev)
	}
	pr.r.Logger.Info("projection rebuilt: new file swapped in", "projection", pr.p.Name, "reason", g.reason,
		"file", g.path, "seq", g.cp.Seq, "took", time.Since(g.started).Round(time.Millisecond), "previous", old.path)
	return nil
}

// BuildAsOf builds name from the log's start up to and including seq
// into a new SQLite file out, which sqlitedb can then open and query: the
// read model as it was at seq. Events recorded as skipped are skipped
// as they are in the live file. It works without Open (the log must be
// open).
//
// out is created exclusively, with mode 0600 (SQLite gives its -wal and
// -shm the same): never over an existing file, nor through a symlink.
// Its -wal, -shm and -journal must not exist either (SQLite would read
// a stale WAL into the new file); a failed build removes out and the
// files SQLite made beside it, nothing else. Errors: ErrNotFound,
// ErrInvalid (seq past the log's end), ErrConflict (out or one of its
// sidecars exists), *HaltedError when an event fails.
func (r *Runner) BuildAsOf(ctx context.Context, name string, seq uint64, out string) (err error) {
	pr, err := r.lookup(name)
	if err != nil {
		return err
	}
	tail, err := r.log.LastSeq(ctx)
	if err != nil {
		return err
	}
	if seq > tail {
		return invalidf("seq %d is past the end of the log (seq %d)", seq, tail)
	}
	if err := createExclusive(out); err != nil {
		return err
	}
	// From here every file named out[-wal|-shm|-journal] is this build's.
	db := sqlitedb.New(out)
	db.Readers = 1
	if err := db.Open(ctx); err != nil {
		removeGen(filepath.Dir(out), filepath.Base(out))
		return err
	}
	defer func() {
		db.Close()
		if err != nil {
			removeGen(filepath.Dir(out), filepath.Base(out))
		}
	}()
	if err := sqlitedb.Migrate(ctx, db, pr.p.tables()...); err != nil {
		return err
	}
	g := &gen{pr: pr, file: filepath.Base(out), path: out, db: db, version: pr.p.Version, refs: 1}
	defer g.dropAhead()
	if _, err := g.commit(ctx, nil, checkpoint{Version: pr.p.Version}, nil, false); err != nil {
		return err
	}
	for done := seq == 0; !done; {
		if done, err = g.step(ctx, seq); err != nil {
			return err
		}
	}
	return g.makeDurable(ctx)
}

// createExclusive creates the empty file path, mode 0600, failing with
// ErrConflict if path or one of the files SQLite keeps beside a database
// exists (as anything, a symlink included).
func createExclusive(path string) error {
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Lstat(path + suffix); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s exists: a build writes a new database and its own -wal and -shm; remove the leftover or choose another name",
				eventlog.ErrConflict, path+suffix)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s exists: a build writes a new file; choose another name", eventlog.ErrConflict, path)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// BuildAsOfTime is BuildAsOf at the last event the log stored at or
// before t (the log's own timestamps, which grow with the sequence).
func (r *Runner) BuildAsOfTime(ctx context.Context, name string, t time.Time, out string) error {
	seq, err := r.SeqAt(ctx, t)
	if err != nil {
		return err
	}
	return r.BuildAsOf(ctx, name, seq, out)
}

// SeqAt returns the sequence of the last event stored at or before t,
// 0 if none, by binary search over the log. A malformed message, which
// has no readable time, counts as stored at the time of the next event.
func (r *Runner) SeqAt(ctx context.Context, t time.Time) (uint64, error) {
	last, err := r.log.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := uint64(0), last // time(lo) <= t (seq 0 is before everything), time(hi+1) > t
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		at, err := r.timeAt(ctx, mid, last)
		if err != nil {
			return 0, err
		}
		if at.After(t) {
			hi = mid - 1
		} else {
			lo = mid
		}
	}
	return lo, nil
}

// timeAt is the time of the event at seq, or of the first readable event
// after it when seq is malformed (the far future when there is none).
func (r *Runner) timeAt(ctx context.Context, seq, last uint64) (time.Time, error) {
	for s := seq; s <= last; s++ {
		page, err := r.log.Read(ctx, s-1, 1, eventlog.Filter{})
		var de *eventlog.DecodeError
		if errors.As(err, &de) {
			continue
		}
		if err != nil {
			return time.Time{}, err
		}
		if len(page.Events) > 0 {
			return page.Events[0].Time, nil
		}
	}
	return time.Unix(1<<40, 0), nil
}
