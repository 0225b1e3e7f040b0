package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	// DefaultSyncTimeout bounds one sync of a replica.
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
	// SyncInterval is the shortest time between two syncs of a replica
	// (DefaultSyncInterval).
	SyncInterval time.Duration
	// ShutdownTimeout bounds Close's wait for the last sync
	// (DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// OnCopied, when set, is called after each successful sync of a
	// replica with the archived sequence it now holds (benchmarks
	// measure lag with it).
	OnCopied func(replica string, seq uint64)
}

// Service is the backup service of one kernel (see the package doc).
type Service struct {
	k   *kernel.Kernel
	cfg Config

	mu       sync.Mutex
	arch     *archive
	replicas []*replica
	cancel   context.CancelFunc
	done     chan struct{}
	started  bool
	lastErr  string
	errAt    time.Time

	archived atomic.Uint64 // the last sequence the archive holds
	kick     chan struct{} // the archive advanced

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
	s := &Service{k: k, cfg: cfg, kick: make(chan struct{}, 1), streams: map[string]jetstream.Stream{}, stores: map[string]jetstream.ObjectStore{}}
	if err := k.Handle("GET /v1/backup", http.HandlerFunc(s.handleStatus)); err != nil {
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
	return s, nil
}

// Enabled reports whether the service has replicas to archive for.
func (s *Service) Enabled() bool { return len(s.cfg.Replicas) > 0 }

// ArchivePath is the archive file.
func (s *Service) ArchivePath() string { return s.cfg.Path }

func (s *Service) logger() *slog.Logger {
	if s.k.Logger != nil {
		return s.k.Logger.With("service", "backup")
	}
	return slog.Default().With("service", "backup")
}

// Start opens the archive and the replicas and begins copying, once
// the kernel is open. Without replicas it does nothing. A replica that
// cannot be reached does not stop it: its error shows in Status and it
// is tried again.
func (s *Service) Start(ctx context.Context) error {
	if !s.Enabled() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("%w: the backup service starts once", eventlog.ErrInvalid)
	}
	a, err := openArchive(ctx, s.cfg.Path, s.k.Log().StreamName)
	if err != nil {
		return err
	}
	pos, err := a.checkpoint(ctx, sourceLog)
	if err != nil {
		a.close()
		return fmt.Errorf("backup archive %s: %w", s.cfg.Path, err)
	}
	s.arch = a
	s.archived.Store(pos)
	for i, u := range s.cfg.Replicas {
		s.replicas = append(s.replicas, newReplica(s, i, u))
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.done = make(chan struct{})
	s.started = true
	var wg sync.WaitGroup
	for _, r := range s.replicas {
		wg.Add(1)
		go func() { defer wg.Done(); r.loop(rctx) }()
	}
	go func() {
		s.run(rctx)
		wg.Wait()
		close(s.done)
	}()
	s.logger().Info("backup archiving", "archive", s.cfg.Path, "from_seq", pos, "replicas", len(s.replicas))
	return nil
}

// Close archives what the log holds now and makes a last sync of each
// replica, waiting at most ShutdownTimeout (or ctx) for it, then stops.
// Call it before closing the kernel. It returns the error of the last
// sync that failed, if any.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.cancel == nil {
		s.mu.Unlock()
		return nil
	}
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	ctx, stop := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer stop()
	var err error
	// A last pass: what the log holds now goes into the archive.
	if tail, terr := s.k.Log().LastSeq(ctx); terr == nil && tail > s.archived.Load() {
		err = s.waitArchived(ctx, tail)
	}
	cancel()
	<-done
	for _, r := range s.replicas {
		err = errors.Join(err, r.close(ctx, s.archived.Load()))
	}
	return errors.Join(err, s.arch.close())
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
	for _, r := range s.replicas {
		select {
		case r.kick <- struct{}{}:
		default:
		}
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
				data, err := store.GetBytes(ctx, oi.Name)
				if errors.Is(err, jetstream.ErrObjectNotFound) {
					data = nil // deleted since: nothing to keep
				} else if err != nil {
					return fmt.Errorf("%w: get %s: %w", eventlog.ErrUnavailable, oi.Name, err)
				}
				if data != nil {
					rows = append(rows, blobRow{name: oi.Name, data: data})
					size += len(data)
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
