package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/benbjohnson/litestream"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/superfly/ltx"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// Defaults of Config.
const (
	// DefaultBatchSize is the most events one archive transaction holds.
	DefaultBatchSize = 2000
	// DefaultSyncInterval is the shortest time between two syncs of a
	// replica: each sync uploads one small file.
	DefaultSyncInterval = 200 * time.Millisecond
	// DefaultShutdownTimeout bounds how long Close waits for the last
	// events to be archived and synced to the replicas.
	DefaultShutdownTimeout = 5 * time.Second
	// DefaultSyncTimeout bounds one step of a sync: syncing the archive
	// into the staging folder, listing a replica, deleting from it, or
	// copying one file to it (plus a second per 256 KiB of the file).
	DefaultSyncTimeout = 30 * time.Second
	// ArchiveFile is the archive's name in the backup folder of the
	// data directory.
	ArchiveFile = "archive.db"
)

// DefaultBuckets are the object store buckets archived: the vfs
// service's blobs (vfs.Bucket).
var DefaultBuckets = []string{"fazt_vfs_blobs"}

// batchBytes bounds the data of one archive transaction.
const batchBytes = 16 << 20

// Config tunes the service. The zero value archives and replicates
// nothing until Replicas are given.
type Config struct {
	// Replicas are Litestream replica URLs the archive is copied to:
	// file:///path, s3://bucket/path (?endpoint=… for S3-compatible
	// storage; credentials from the AWS environment), and the other
	// schemes Litestream supports. A path without a scheme is a folder.
	Replicas []string
	// Path of the archive file (default DIR/backup/archive.db).
	Path string
	// Buckets are the object store buckets whose objects are archived
	// (DefaultBuckets).
	Buckets []string
	// BatchSize is the most events one archive transaction holds
	// (DefaultBatchSize).
	BatchSize int
	// SyncInterval is the shortest time between two syncs of the
	// archive into the staging folder, and between two copies to a
	// replica (DefaultSyncInterval).
	SyncInterval time.Duration
	// ShutdownTimeout bounds Close's wait for the last sync
	// (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// Projections also replicates each projection's serving file (the
	// --backup-projections flag), for read models too large to rebuild
	// from the log quickly: <URL>/projections/<name>/<generation>.
	Projections bool
	// OnCopied, when set, is called after each sync of a replica that
	// copied something, with the archived sequence it now holds
	// (benchmarks measure lag with it).
	OnCopied func(replica string, seq uint64)
}

// Service is the backup service of one kernel (see the package doc).
type Service struct {
	k   *kernel.Kernel
	cfg Config

	w *eventlog.Writer // the category Category

	mu       sync.Mutex
	arch     *archive
	replicas []*replica
	logURLs  []string // replicas added by events (ReplicaAdded), in order
	rctx     context.Context
	cancel   context.CancelFunc
	runDone  chan struct{} // the archive loop ended
	cfgDone  chan struct{} // the config follower ended
	started  bool
	closed   bool
	lastErr  string
	errAt    time.Time

	archived  atomic.Uint64          // the last sequence the archive holds
	kick      chan struct{}          // the archive advanced
	stg       *stager                // the archive's Litestream and staging folder
	stageDone chan struct{}          // the staging loop ended
	stageErr  string                 // the staging loop's last error
	projs     map[string]*projStager // projection generations replicated, by <name>/<gen>

	streams map[string]jetstream.Stream
	stores  map[string]jetstream.ObjectStore
}

// Register declares the backup service on k, before k.Open: its routes
// (GET /v1/backup, POST /v1/backup/verify) and metrics. Start begins
// archiving once the kernel is open.
func Register(k *kernel.Kernel, cfg Config) (*Service, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Buckets == nil {
		cfg.Buckets = DefaultBuckets
	}
	if cfg.Path == "" {
		cfg.Path = k.Dir("backup/" + ArchiveFile)
	}
	for _, u := range cfg.Replicas {
		if _, err := newReplicaClient(u); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	s := &Service{k: k, cfg: cfg, kick: make(chan struct{}, 1), projs: map[string]*projStager{}, streams: map[string]jetstream.Stream{}, stores: map[string]jetstream.ObjectStore{}}
	for _, typ := range []string{TypeReplicaAdded, TypeReplicaRemoved} {
		if err := k.RegisterEvent(typ, 1, []byte(replicaSchema)); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	w, err := k.Log().Reserve(Category)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	s.w = w
	if err := k.Handle("GET /v1/backup", http.HandlerFunc(s.handleStatus)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := k.Handle("POST /v1/backup/replicas", http.HandlerFunc(s.handleAdd)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := k.Handle("DELETE /v1/backup/replicas", http.HandlerFunc(s.handleRemove)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := k.Handle("POST /v1/backup/verify", http.HandlerFunc(s.handleVerify)); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := k.RegisterCheck(s.doctor); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := k.Metrics().Register(&collector{s: s}); err != nil {
		return nil, fmt.Errorf("backup: metrics: %w", err)
	}
	registry.Store(weak.Make(k), weak.Make(s))
	return s, nil
}

// registry finds the service registered on a kernel (ServiceOf).
var registry sync.Map // weak.Pointer[kernel.Kernel] → weak.Pointer[Service]

// ServiceOf returns the backup service registered on k, or nil: for
// the program that wires a binary's services in one place and tunes
// them in another (fazt serve and its --backup flags).
func ServiceOf(k *kernel.Kernel) *Service {
	v, ok := registry.Load(weak.Make(k))
	if !ok {
		return nil
	}
	return v.(weak.Pointer[Service]).Value()
}

// UseReplicas adds replica URLs to the configuration, before Start (the
// --backup flags). Errors: ErrInvalid for a URL Litestream cannot use.
func (s *Service) UseReplicas(urls []string) error {
	for _, u := range urls {
		if _, err := newReplicaClient(u); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("%w: replicas are given before Start; add one to a running service with AddReplica", eventlog.ErrInvalid)
	}
	for _, u := range urls {
		if !slices.Contains(s.cfg.Replicas, u) {
			s.cfg.Replicas = append(s.cfg.Replicas, u)
		}
	}
	return nil
}

// Enabled reports whether the service has replicas to archive for:
// configured (Config.Replicas, UseReplicas), or, once started, added by
// events.
func (s *Service) Enabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return len(s.replicas) > 0
	}
	return len(s.cfg.Replicas) > 0
}

// ArchivePath is the archive file.
func (s *Service) ArchivePath() string { return s.cfg.Path }

func (s *Service) logger() *slog.Logger {
	if s.k.Logger != nil {
		return s.k.Logger.With("service", "backup")
	}
	return slog.Default().With("service", "backup")
}

// Start begins the service once the kernel is open: it archives and
// replicates to the configured replicas and to those added by events
// (AddReplica), and follows those events, so that a replica added or
// removed later takes effect at once. With no replica it archives
// nothing until one is added. A replica that cannot be reached does not
// stop it: its error shows in Status and it is tried again.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("%w: the backup service starts once", eventlog.ErrInvalid)
	}
	s.started = true
	s.rctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.cfgDone = make(chan struct{})
	s.mu.Unlock()
	fail := func(err error) error {
		s.cancel()
		close(s.cfgDone)
		return err
	}
	for _, u := range s.cfg.Replicas {
		if err := s.startReplica(ctx, u); err != nil {
			return fail(err)
		}
	}
	// The replicas added by events: those in the log now, then as they come.
	tail, err := s.k.Log().LastSeq(ctx)
	if err != nil {
		return fail(err)
	}
	evs, err := s.k.Log().ReadStream(ctx, ConfigStream, 1, maxConfigEvents)
	if err != nil && !errors.Is(err, eventlog.ErrNotFound) {
		return fail(err)
	}
	var applied uint64
	for _, e := range evs {
		if err := s.apply(ctx, e, &applied); err != nil {
			return fail(err)
		}
	}
	go func() {
		defer close(s.cfgDone)
		err := s.k.Log().Subscribe(s.rctx, tail, eventlog.Filter{Categories: []string{Category}}, func(e eventlog.Event) error {
			if err := s.apply(s.rctx, e, &applied); err != nil {
				s.setErr(err)
			}
			return nil
		})
		if err != nil && s.rctx.Err() == nil {
			s.setErr(fmt.Errorf("following the backup configuration stopped: %w", err))
		}
	}()
	return nil
}

// maxConfigEvents bounds the replica changes read at start.
const maxConfigEvents = 10000

// apply applies a configuration event once (applied is the last one).
func (s *Service) apply(ctx context.Context, e eventlog.Event, applied *uint64) error {
	if e.Seq <= *applied || e.Malformed != nil || e.Stream != ConfigStream {
		return nil
	}
	*applied = e.Seq
	var c ReplicaChange
	if err := json.Unmarshal(e.Data, &c); err != nil || c.URL == "" {
		return nil // not one of ours: the schema refuses such data
	}
	s.mu.Lock()
	has := slices.Contains(s.logURLs, c.URL)
	flag := slices.Contains(s.cfg.Replicas, c.URL)
	switch e.Type {
	case TypeReplicaAdded:
		if has {
			s.mu.Unlock()
			return nil
		}
		s.logURLs = append(s.logURLs, c.URL)
		s.mu.Unlock()
		if flag {
			return nil
		}
		return s.startReplica(ctx, c.URL)
	case TypeReplicaRemoved:
		s.logURLs = slices.DeleteFunc(s.logURLs, func(u string) bool { return u == c.URL })
		s.mu.Unlock()
		if flag || !has {
			return nil
		}
		return s.stopReplica(ctx, c.URL)
	}
	s.mu.Unlock()
	return nil
}

// startReplica starts copying to u, and the archive if it is not
// running yet.
func (s *Service) startReplica(ctx context.Context, u string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	for _, r := range s.replicas {
		if r.url == u {
			return nil
		}
	}
	if s.arch == nil {
		a, err := openArchive(ctx, s.cfg.Path, s.k.Log().StreamName)
		if err != nil {
			return err
		}
		pos, err := a.checkpoint(ctx, sourceLog)
		if err != nil {
			a.close()
			return fmt.Errorf("backup archive %s: %w", s.cfg.Path, err)
		}
		s.removeOldLitestreamState()
		stg := newStager(s.cfg.Path, filepath.Join(filepath.Dir(s.cfg.Path), stagingDir, "archive"), s.litestreamLogger())
		if err := stg.open(ctx); err != nil {
			a.close()
			return fmt.Errorf("backup archive %s: %w", s.cfg.Path, err)
		}
		s.arch, s.stg = a, stg
		s.archived.Store(pos)
		s.runDone, s.stageDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(s.runDone)
			s.run(s.rctx)
		}()
		go func() {
			defer close(s.stageDone)
			s.stageLoop(s.rctx)
		}()
		s.logger().Info("backup archiving", "archive", s.cfg.Path, "from_seq", pos)
	}
	r := newReplica(s, u)
	rctx, cancel := context.WithCancel(s.rctx)
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.loop(rctx)
	}()
	s.replicas = append(s.replicas, r)
	s.logger().Info("backup replica started", "replica", Redact(u))
	return nil
}

// stopReplica stops copying to u, after a last sync (bounded).
func (s *Service) stopReplica(ctx context.Context, u string) error {
	s.mu.Lock()
	var r *replica
	s.replicas = slices.DeleteFunc(s.replicas, func(x *replica) bool {
		if x.url == u {
			r = x
			return true
		}
		return false
	})
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel()
	<-r.done
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := r.close(ctx, s.archived.Load())
	s.logger().Info("backup replica stopped", "replica", Redact(u), "copied_seq", r.copiedSeq())
	return err
}

// Close archives what the log holds now and makes a last sync of each
// replica, waiting at most ShutdownTimeout (or ctx) for it, then stops.
// Call it before closing the kernel. It returns the error of the last
// sync that failed, if any.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	arch := s.arch
	s.mu.Unlock()
	ctx, stop := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer stop()
	var err error
	// A last pass: what the log holds now goes into the archive.
	if arch != nil {
		if tail, terr := s.k.Log().LastSeq(ctx); terr == nil && tail > s.archived.Load() {
			err = s.waitArchived(ctx, tail)
		}
	}
	s.cancel()
	<-s.cfgDone
	s.mu.Lock()
	reps := slices.Clone(s.replicas)
	arch = s.arch
	s.mu.Unlock()
	if arch != nil {
		<-s.runDone
		<-s.stageDone
		// The last transactions into the staging folder, then a last copy
		// to every replica at once: one that does not answer takes the
		// whole wait, not the others' share of it.
		if serr := s.stage(ctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("backup: last sync into the staging folder: %w", serr))
		}
	}
	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	for i, r := range reps {
		<-r.done
		wg.Go(func() { errs[i] = r.close(ctx, s.archived.Load()) })
	}
	wg.Wait()
	err = errors.Join(append([]error{err}, errs...)...)
	if arch != nil {
		err = errors.Join(err, s.closeStagers(ctx), arch.close())
	}
	return err
}

// stagingDir is the folder, beside the archive, of the staging replicas.
const stagingDir = "staging"

// litestreamLogger passes Litestream's warnings and errors to the
// kernel's log; its progress is debug chatter here.
func (s *Service) litestreamLogger() *slog.Logger {
	return slog.New(warnOnly{s.logger().Handler()}).With("litestream", true)
}

// removeOldLitestreamState removes the Litestream folders an earlier
// version kept beside the archive, one per replica URL
// (.archive.db-litestream-<hash>): the staging replica replaces them.
func (s *Service) removeOldLitestreamState() {
	dir, name := filepath.Split(s.cfg.Path)
	old, _ := filepath.Glob(filepath.Join(dir, "."+name+litestream.MetaDirSuffix+"-*"))
	for _, o := range old {
		if err := os.RemoveAll(o); err == nil {
			s.logger().Info("backup: removed an earlier version's Litestream folder", "path", o)
		}
	}
}

func (s *Service) archiveStager() *stager {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stg
}

// stageLoop syncs the archive (and the projection files replicated)
// into the staging folder after the archive advances, at most every
// SyncInterval, then wakes the replicas.
func (s *Service) stageLoop(ctx context.Context) {
	paced(ctx, s.kick, s.cfg.SyncInterval, func() time.Duration {
		err := s.stage(ctx)
		if ctx.Err() != nil {
			return 0
		}
		s.setStageErr(err)
		if err != nil {
			return time.Second
		}
		return 0
	})
}

// paced runs round at once, then after each kick or second, starting
// rounds at most interval apart (start to start, so a slow round is
// followed by the next at once); after a round that returns a backoff,
// it waits that long instead. It returns when ctx ends.
func paced(ctx context.Context, kick <-chan struct{}, interval time.Duration, round func() (backoff time.Duration)) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-tick.C:
			}
		}
		began := time.Now()
		wait := round()
		if ctx.Err() != nil {
			return
		}
		if wait == 0 {
			wait = interval - time.Since(began)
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// stage syncs the archive into its staging folder, recording the
// sequence it then holds, and wakes the replicas.
func (s *Service) stage(ctx context.Context) error {
	// Projections first: a generation they start is recorded in the
	// archive, which is synced after.
	perr := s.stageProjections(ctx)
	target := s.archived.Load()
	if err := s.stg.sync(ctx, target); err != nil {
		return errors.Join(fmt.Errorf("staging the archive: %w", err), perr)
	}
	s.mu.Lock()
	reps := slices.Clone(s.replicas)
	s.mu.Unlock()
	low := ltx.TXID(0)
	for i, r := range reps {
		select {
		case r.kick <- struct{}{}:
		default:
		}
		if p := r.position(); i == 0 || p < low {
			low = p
		}
	}
	s.stg.prune(low)
	return perr
}

func (s *Service) setStageErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.stageErr = ""
		return
	}
	if s.stageErr != err.Error() {
		s.logger().Error("backup: syncing into the local staging folder failed, retrying; check the disk of the data directory", "err", err)
	}
	s.stageErr = err.Error()
}

// waitArchived waits until the archive holds seq.
func (s *Service) waitArchived(ctx context.Context, seq uint64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.archived.Load() < seq {
		select {
		case <-ctx.Done():
			return fmt.Errorf("backup: the archive is at %d of %d when the shutdown wait ended; it resumes there at the next start", s.archived.Load(), seq)
		case <-t.C:
		}
	}
	return nil
}

func (s *Service) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.lastErr = ""
		return
	}
	if s.lastErr != err.Error() {
		s.logger().Error("backup archive: copying stopped, retrying", "err", err)
	}
	s.lastErr, s.errAt = err.Error(), time.Now()
}

// run copies the log into the archive until ctx ends, starting again
// after an error.
func (s *Service) run(ctx context.Context) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		s.setErr(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// follow copies from the archive's checkpoint on, and follows the log.
func (s *Service) follow(ctx context.Context) error {
	l := s.k.Log()
	pos, err := s.arch.checkpoint(ctx, sourceLog)
	if err != nil {
		return err
	}
	if err := s.sameLog(ctx, pos); err != nil {
		return err
	}
	for {
		c, err := l.OpenCursor(ctx, pos, eventlog.Filter{})
		if err != nil {
			return err
		}
		for {
			msgs, err := c.NextRaw(ctx, s.cfg.BatchSize, batchBytes)
			if err != nil {
				c.Close()
				return err
			}
			if len(msgs) > 0 {
				// Blobs first: every blob an event names was stored before
				// the event was appended, so it is in the bucket now.
				if err := s.copyBlobs(ctx, msgs[len(msgs)-1].Seq); err != nil {
					c.Close()
					return err
				}
				if err := s.arch.appendEvents(ctx, msgs); err != nil {
					c.Close()
					return err
				}
				pos = msgs[len(msgs)-1].Seq
				s.archived.Store(pos)
				s.setErr(nil)
				s.notify()
			}
			if len(msgs) < s.cfg.BatchSize {
				break
			}
		}
		c.Close()
		if _, err := l.WaitTail(ctx, pos); err != nil {
			return err
		}
	}
}

func (s *Service) notify() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sameLog checks that the archive is a prefix of the log it follows.
func (s *Service) sameLog(ctx context.Context, pos uint64) error {
	if pos == 0 {
		return nil
	}
	tail, err := s.k.Log().LastSeq(ctx)
	if err != nil {
		return err
	}
	other := fmt.Errorf("%w: the archive %s holds %d events and does not match this log (its last sequence is %d): it belongs to another log; move it away to start a new archive", eventlog.ErrConflict, s.cfg.Path, pos, tail)
	if tail < pos {
		return other
	}
	c, err := s.k.Log().OpenCursor(ctx, pos-1, eventlog.Filter{})
	if err != nil {
		return err
	}
	defer c.Close()
	ms, err := c.NextRaw(ctx, 1, 0)
	if err != nil {
		return err
	}
	if len(ms) != 1 {
		return other
	}
	var timeNS int64
	var subject string
	if err := s.arch.db.QueryRowContext(ctx, `SELECT time_ns, subject FROM events WHERE seq = ?`, pos).Scan(&timeNS, &subject); err != nil {
		return fmt.Errorf("backup archive %s: event %d: %w", s.cfg.Path, pos, err)
	}
	if timeNS != ms[0].Time.UnixNano() || subject != ms[0].Subject {
		return other
	}
	return nil
}

// copyBlobs archives the objects put into each bucket since its
// checkpoint.
func (s *Service) copyBlobs(ctx context.Context, logSeq uint64) error {
	for _, b := range s.cfg.Buckets {
		if err := s.copyBucket(ctx, b, logSeq); err != nil {
			return fmt.Errorf("archive bucket %s: %w", b, err)
		}
	}
	return nil
}

// blobTxBytes bounds the blobs written in one transaction.
const blobTxBytes = 32 << 20

func (s *Service) copyBucket(ctx context.Context, bucket string, logSeq uint64) error {
	st, store, err := s.bucket(ctx, bucket)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", eventlog.ErrUnavailable, err)
	}
	last := info.State.LastSeq
	bpos, err := s.arch.checkpoint(ctx, bucketSource(bucket))
	if err != nil || last <= bpos {
		return err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + bucket + ".M.>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    bpos + 1,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", eventlog.ErrUnavailable, err)
	}
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return s.arch.putBlob(ctx, bucket, "", nil, last, logSeq)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("%w: %w", eventlog.ErrUnavailable, err)
	}
	defer it.Stop()
	var rows []blobRow
	size := 0
	flush := func(seq uint64) error {
		err := s.arch.putBlobs(ctx, bucket, rows, seq, logSeq)
		rows, size = rows[:0], 0
		return err
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("%w: %w", eventlog.ErrUnavailable, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		var oi jetstream.ObjectInfo
		if json.Unmarshal(m.Data(), &oi) == nil && !oi.Deleted && oi.Name != "" {
			have, err := s.arch.hasBlob(ctx, bucket, oi.Name)
			if err != nil {
				return err
			}
			if !have {
				row, ok, err := readBlob(ctx, st, store, oi)
				if err != nil {
					return err
				}
				if ok {
					rows = append(rows, row)
					size += row.weight()
				}
			}
		}
		done := md.NumPending == 0
		if size >= blobTxBytes || done {
			seq := md.Sequence.Stream
			if done {
				seq = max(seq, last)
			}
			if err := flush(seq); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

func (s *Service) bucket(ctx context.Context, bucket string) (jetstream.Stream, jetstream.ObjectStore, error) {
	if st, ok := s.streams[bucket]; ok {
		return st, s.stores[bucket], nil
	}
	store, err := s.k.Log().ObjectStore(ctx, bucket)
	if err != nil {
		return nil, nil, err
	}
	st, err := s.k.Log().ObjectStream(ctx, bucket)
	if err != nil {
		return nil, nil, err
	}
	s.streams[bucket], s.stores[bucket] = st, store
	return st, store, nil
}
