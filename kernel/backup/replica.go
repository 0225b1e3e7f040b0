package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/litestream"
	"github.com/benbjohnson/litestream/file" // file:// replicas, and the staging folder
	_ "github.com/benbjohnson/litestream/s3" // s3:// replicas
	"github.com/superfly/ltx"

	"github.com/fazt-sh/fazt/eventlog"
)

// tuneDB, when set, adjusts each Litestream DB before it opens (tests
// lower the checkpoint thresholds with it).
var tuneDB func(*litestream.DB)

// replicaURL turns a folder path into a file:// URL; URLs stay.
func replicaURL(u string) (string, error) {
	if u == "" {
		return "", fmt.Errorf("%w: an empty replica URL", eventlog.ErrInvalid)
	}
	if !strings.Contains(u, "://") {
		abs, err := filepath.Abs(u)
		if err != nil {
			return "", err
		}
		return "file://" + filepath.ToSlash(abs), nil
	}
	return u, nil
}

// subURL is the replica URL u with elems joined to its path (query kept):
// where a projection file's replica lives under u.
func subURL(u string, elems ...string) (string, error) {
	full, err := replicaURL(u)
	if err != nil {
		return "", err
	}
	p, err := url.Parse(full)
	if err != nil {
		return "", fmt.Errorf("%w: replica %s: %v", eventlog.ErrInvalid, Redact(u), err)
	}
	p.Path = path.Join(append([]string{"/", p.Path}, elems...)...)
	p.RawPath = ""
	return p.String(), nil
}

// newReplicaClient makes the Litestream client of a replica URL.
func newReplicaClient(u string) (litestream.ReplicaClient, error) {
	full, err := replicaURL(u)
	if err != nil {
		return nil, err
	}
	if err := checkCABundle(full); err != nil {
		return nil, err
	}
	c, err := litestream.NewReplicaClientFromURL(full)
	if err != nil {
		return nil, fmt.Errorf("%w: replica %s: %v (want file:///folder, s3://bucket/path or another Litestream replica URL)", eventlog.ErrInvalid, Redact(u), err)
	}
	return c, nil
}

// Redact returns a replica URL without secrets, for status and logs:
// no user information, and query values whose names suggest a secret
// replaced by "redacted".
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" {
		return u
	}
	p.User = nil
	q := p.Query()
	for k := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "secret") || strings.Contains(lk, "key") || strings.Contains(lk, "token") || strings.Contains(lk, "pass") {
			q.Set(k, "redacted")
		}
	}
	p.RawQuery = q.Encode()
	return p.String()
}

// compactionLevels are Litestream's: L0 as synced, then files merged
// every 30 seconds, 5 minutes and hour (its CLI's defaults).
func compactionLevels() litestream.CompactionLevels {
	return litestream.CompactionLevels{
		{Level: 0},
		{Level: 1, Interval: 30 * time.Second},
		{Level: 2, Interval: 5 * time.Minute},
		{Level: 3, Interval: time.Hour},
	}
}

// mirrorLevels are the staging levels a mirror copies, in the order it
// copies them: snapshots and compacted files first, so that a remote
// that was far behind can restore from them before the newest L0 files
// land; L0 last.
var mirrorLevels = []int{litestream.SnapshotLevel, 3, 2, 1, 0}

// warnOnly passes on warnings and errors only.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(as)} }
func (w warnOnly) WithGroup(g string) slog.Handler       { return warnOnly{w.Handler.WithGroup(g)} }

// stager runs the one embedded Litestream of a local SQLite file. It
// replicates into a staging folder on the local disk (a file:// replica),
// where Litestream compacts and enforces retention once; mirrors copy
// that folder's files to each replica URL. One Litestream per file
// matters: each holds a long read transaction on the file that it lets
// go only around its own checkpoints, so two on one file keep each
// other from ever restarting the WAL.
type stager struct {
	path string // the SQLite file
	dir  string // the staging folder
	meta string // Litestream's local state ("": its default, beside the file)
	lg   *slog.Logger

	db     *litestream.DB
	store  *litestream.Store
	client litestream.ReplicaClient // the staging folder

	ver atomic.Uint64 // counts syncs that staged a new transaction

	mu    sync.Mutex
	marks []mark // ascending: staging TXID → the archive sequence it holds
}

// mark says that the staging folder, at txid, holds the archive up to seq.
type mark struct {
	txid ltx.TXID
	seq  uint64
}

func newStager(path, dir string, lg *slog.Logger) *stager {
	return &stager{path: path, dir: dir, lg: lg}
}

// open starts Litestream on the file.
func (st *stager) open(ctx context.Context) error {
	db := litestream.NewDB(st.path)
	db.MonitorInterval = 0 // the service drives the syncs
	if st.meta != "" {
		db.SetMetaPath(st.meta)
	}
	if tuneDB != nil {
		tuneDB(db)
	}
	client := file.NewReplicaClient(st.dir)
	rep := litestream.NewReplicaWithClient(db, client)
	rep.MonitorEnabled = false
	client.Replica = rep
	db.Replica = rep
	store := litestream.NewStore([]*litestream.DB{db}, compactionLevels())
	// Litestream's own progress is debug chatter here; its warnings and
	// errors go to the kernel's log. NewStore sets these on the DB: after.
	store.Logger = st.lg
	db.SetLogger(st.lg)
	client.SetLogger(st.lg)
	store.ShutdownSyncTimeout, db.ShutdownSyncTimeout = 0, 0
	if err := store.Open(ctx); err != nil {
		return fmt.Errorf("start Litestream on %s: %w", st.path, err)
	}
	st.db, st.store, st.client = db, store, client
	return nil
}

// sync copies the file's new transactions into the staging folder, and
// records that the folder then holds the archive up to seq (0: a file
// that is not the archive).
func (st *stager) sync(ctx context.Context, seq uint64) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout)
	defer cancel()
	if err := st.db.Sync(ctx); err != nil {
		return err
	}
	if dpos, err := st.db.Pos(); err != nil || dpos.IsZero() {
		return err // nothing written yet
	}
	before := st.db.Replica.Pos()
	if err := st.db.Replica.Sync(ctx); err != nil {
		return err
	}
	pos := st.db.Replica.Pos()
	if pos != before {
		st.ver.Add(1)
	}
	if seq == 0 || pos.TXID == 0 {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := len(st.marks); n > 0 && st.marks[n-1].txid >= pos.TXID {
		st.marks[n-1].seq = max(st.marks[n-1].seq, seq)
		return nil
	}
	st.marks = append(st.marks, mark{pos.TXID, seq})
	return nil
}

// seqAt is the archive sequence a copy of the staging folder up to txid
// holds: that of the last mark at or before txid (0 when none).
func (st *stager) seqAt(txid ltx.TXID) uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	i := sort.Search(len(st.marks), func(i int) bool { return st.marks[i].txid > txid })
	if i == 0 {
		return 0
	}
	return st.marks[i-1].seq
}

// maxMarks bounds the marks kept while a replica stays behind: beyond
// it every other old one goes (positions then read a little low, never
// high).
const maxMarks = 1 << 15

// prune drops the marks no mirror needs: those before the last one at
// or below txid, the lowest position any mirror holds.
func (st *stager) prune(txid ltx.TXID) {
	st.mu.Lock()
	defer st.mu.Unlock()
	i := sort.Search(len(st.marks), func(i int) bool { return st.marks[i].txid > txid })
	if i > 1 {
		st.marks = append(st.marks[:0], st.marks[i-1:]...)
	}
	if len(st.marks) > maxMarks {
		kept := st.marks[:0]
		for j, m := range st.marks {
			if j%2 == 1 || j == len(st.marks)-1 {
				kept = append(kept, m)
			}
		}
		st.marks = kept
	}
}

// close stops Litestream (a last sync into the staging folder first).
func (st *stager) close(ctx context.Context) error {
	if st.store == nil {
		return nil
	}
	err := st.store.Close(ctx)
	st.store = nil
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// fileKey names an LTX file in a replica.
type fileKey struct {
	level    int
	min, max ltx.TXID
}

// mirror copies a staging folder's files to one replica URL, so that
// the URL is a Litestream replica of the file like the staging folder
// (the stock CLI restores it): new files first, in mirrorLevels order,
// then deletes the files the staging folder no longer has (compacted,
// past retention).
type mirror struct {
	st     *stager
	url    string
	client litestream.ReplicaClient
	known  map[fileKey]int64 // the replica's files and sizes; nil: list it first
	txid   ltx.TXID          // the staging position the replica holds
	ver    uint64            // the stager's ver when the staging folder was last copied
	listed time.Time         // when it was
}

// relistEvery is how often a mirror looks at a staging folder that has
// staged nothing new, for the files Litestream's compaction and
// retention made or removed there.
const relistEvery = 10 * time.Second

func newMirror(st *stager, u string) (*mirror, error) {
	c, err := newReplicaClient(u)
	if err != nil {
		return nil, err
	}
	return &mirror{st: st, url: u, client: c}, nil
}

// copyRate is the slowest upload a copy is given time for, beyond
// DefaultSyncTimeout: a snapshot of a large archive takes a while.
const copyRate = 256 << 10 // bytes per second

// listFiles lists a replica's files of every mirrored level.
func listFiles(ctx context.Context, c litestream.ReplicaClient) ([]*ltx.FileInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout)
	defer cancel()
	var out []*ltx.FileInfo
	for _, lvl := range mirrorLevels {
		itr, err := c.LTXFiles(ctx, lvl, 0, false)
		if err != nil {
			return nil, fmt.Errorf("list level %d: %w", lvl, err)
		}
		for itr.Next() {
			out = append(out, itr.Item())
		}
		if err := itr.Close(); err != nil {
			return nil, fmt.Errorf("list level %d: %w", lvl, err)
		}
	}
	return out, nil
}

// round makes the replica hold what the staging folder holds now, and
// reports whether it wrote or deleted anything.
func (m *mirror) round(ctx context.Context) (bool, error) {
	for try := 0; ; try++ {
		changed, err := m.roundOnce(ctx)
		// Litestream's retention may remove a staging file between the
		// listing and the copy: list again.
		if err != nil && errors.Is(err, fs.ErrNotExist) && try < 3 && ctx.Err() == nil {
			continue
		}
		if err != nil {
			// What the replica holds is uncertain now: list both again.
			m.known, m.listed = nil, time.Time{}
		}
		return changed, err
	}
}

func (m *mirror) roundOnce(ctx context.Context) (bool, error) {

	if m.known == nil {
		ictx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout)
		err := m.client.Init(ictx)
		cancel()
		if err != nil {
			return false, err
		}
		have, err := listFiles(ctx, m.client)
		if err != nil {
			return false, err
		}
		m.known = map[fileKey]int64{}
		for _, f := range have {
			m.known[fileKey{f.Level, f.MinTXID, f.MaxTXID}] = f.Size
		}
	}
	ver := m.st.ver.Load()
	if ver == m.ver && time.Since(m.listed) < relistEvery {
		return false, nil // nothing new staged
	}
	listed := time.Now()
	want, err := listFiles(ctx, m.st.client)
	if err != nil {
		return false, fmt.Errorf("staging folder %s: %w", m.st.dir, err)
	}
	if len(want) == 0 {
		return false, nil // nothing staged yet: a replica is never emptied
	}
	wanted := make(map[fileKey]bool, len(want))
	var top ltx.TXID
	for _, f := range want {
		wanted[fileKey{f.Level, f.MinTXID, f.MaxTXID}] = true
		top = max(top, f.MaxTXID)
	}
	var stale []*ltx.FileInfo
	foreign := false
	for k := range m.known {
		if !wanted[k] {
			stale = append(stale, &ltx.FileInfo{Level: k.level, MinTXID: k.min, MaxTXID: k.max})
			foreign = foreign || k.max > top
		}
	}
	changed := false
	del := func() error {
		if len(stale) == 0 {
			return nil
		}
		dctx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout)
		defer cancel()
		if err := m.client.DeleteLTXFiles(dctx, stale); err != nil {
			return fmt.Errorf("delete %d old files: %w", len(stale), err)
		}
		for _, f := range stale {
			delete(m.known, fileKey{f.Level, f.MinTXID, f.MaxTXID})
		}
		stale, changed = nil, true
		return nil
	}
	// Files beyond the staging folder's last transaction are of another
	// history (the staging folder was started again): they go first, so
	// no restore mixes the two.
	if foreign {
		if err := del(); err != nil {
			return changed, err
		}
	}
	for _, f := range want {
		k := fileKey{f.Level, f.MinTXID, f.MaxTXID}
		if size, ok := m.known[k]; ok && size == f.Size {
			continue
		}
		if err := m.copyFile(ctx, f); err != nil {
			return changed, err
		}
		m.known[k], changed = f.Size, true
	}
	if err := del(); err != nil {
		return changed, err
	}
	m.txid, m.ver, m.listed = top, ver, listed
	return changed, nil
}

func (m *mirror) copyFile(ctx context.Context, f *ltx.FileInfo) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout+time.Duration(f.Size/copyRate)*time.Second)
	defer cancel()
	rc, err := m.st.client.OpenLTXFile(ctx, f.Level, f.MinTXID, f.MaxTXID, 0, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := m.client.WriteLTXFile(ctx, f.Level, f.MinTXID, f.MaxTXID, rc); err != nil {
		return fmt.Errorf("write level %d file %s-%s: %w", f.Level, f.MinTXID, f.MaxTXID, err)
	}
	return nil
}

// replica copies the staging folder to one URL. Its loop is its own: a
// replica that is slow or down holds back no other, nor the archive.
type replica struct {
	s      *Service
	url    string // as configured
	kick   chan struct{}
	cancel context.CancelFunc // stops loop
	done   chan struct{}      // loop ended

	arch  *mirror            // the archive, at the URL's root
	projs map[string]*mirror // projection files, by <name>/<gen>

	mu          sync.Mutex
	retiredDone map[string]bool // retired projection generations copied since
	pos         ltx.TXID        // the staging position the replica holds
	copied      uint64
	copiedAt    time.Time
	lastErr     string
	lastErrAt   time.Time
	errs        uint64
	syncs       uint64
}

func newReplica(s *Service, u string) *replica {
	return &replica{s: s, url: u, kick: make(chan struct{}, 1), projs: map[string]*mirror{}, retiredDone: map[string]bool{}}
}

func (r *replica) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastErr != err.Error() {
		r.s.logger().Warn("backup replica: sync failed; the archive goes on and the replica catches up when it is back",
			"replica", Redact(r.url), "copied_seq", r.copied, "err", err)
	}
	r.lastErr, r.lastErrAt = err.Error(), time.Now()
	r.errs++
}

// sync copies what the staging folders hold now to the replica.
func (r *replica) sync(ctx context.Context) error {
	st := r.s.archiveStager()
	if st == nil {
		return nil
	}
	if r.arch == nil {
		m, err := newMirror(st, r.url)
		if err != nil {
			return err
		}
		r.arch = m
	}
	changed, err := r.arch.round(ctx)
	if err != nil {
		return err
	}
	seq := st.seqAt(r.arch.txid)
	r.mu.Lock()
	r.pos = r.arch.txid
	changed = changed || seq > r.copied || r.syncs == 0
	r.copied, r.copiedAt = max(r.copied, seq), time.Now()
	seq = r.copied
	if changed {
		r.syncs++
	}
	r.mu.Unlock()
	if f := r.s.cfg.OnCopied; f != nil && changed {
		f(Redact(r.url), seq)
	}
	// The projection files after the archive: their errors are the
	// replica's too, but do not hold back its archive position.
	if err := r.syncProjections(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.lastErr = ""
	r.mu.Unlock()
	return nil
}

// syncProjections mirrors the projection files being replicated
// (Config.Projections) to the URL's projections/<name>/<gen>.
func (r *replica) syncProjections(ctx context.Context) error {
	cur := r.s.projectionStagers()
	keep := map[string]bool{}
	var errs []error
	for _, ps := range cur {
		keep[ps.key] = true
		m := r.projs[ps.key]
		if m == nil || m.st != ps.st {
			u, err := subURL(r.url, ProjectionsDir, ps.name, ps.gen)
			if err != nil {
				return err
			}
			if m, err = newMirror(ps.st, u); err != nil {
				return err
			}
			r.projs[ps.key] = m
		}
		if _, err := m.round(ctx); err != nil {
			errs = append(errs, fmt.Errorf("projection %s generation %s: %w", ps.name, ps.gen, err))
			continue
		}
		if ps.retired {
			r.mu.Lock()
			r.retiredDone[ps.key] = true
			r.mu.Unlock()
		}
	}
	for key := range r.projs {
		if !keep[key] {
			delete(r.projs, key)
		}
	}
	return errors.Join(errs...)
}

func (r *replica) copiedSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copied
}

// position is the staging TXID the replica holds (0 before its first
// copy).
func (r *replica) position() ltx.TXID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

// loop copies after the staging folder advances, starting rounds at
// most every SyncInterval (a slow one is followed by the next at once),
// and backs off while the replica fails.
func (r *replica) loop(ctx context.Context) {
	backoff := r.s.cfg.SyncInterval
	paced(ctx, r.kick, r.s.cfg.SyncInterval, func() time.Duration {
		if err := r.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return 0
			}
			r.fail(err)
			backoff = min(2*backoff, 10*time.Second)
			return backoff
		}
		backoff = r.s.cfg.SyncInterval
		return 0
	})
}

// close makes a last copy up to seq, bounded by ctx (a replica that
// is caught up only lists the staging folder).
func (r *replica) close(ctx context.Context, seq uint64) error {
	if err := r.sync(ctx); err != nil {
		r.fail(err)
		return fmt.Errorf("backup replica %s: last sync: %w (copied up to %d of %d; it catches up at the next start)", Redact(r.url), err, r.copiedSeq(), seq)
	}
	if c := r.copiedSeq(); c < seq {
		return fmt.Errorf("backup replica %s: last sync: copied up to %d of %d; it catches up at the next start", Redact(r.url), c, seq)
	}
	return nil
}
