package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/litestream"
	_ "github.com/benbjohnson/litestream/file" // file:// replicas
	_ "github.com/benbjohnson/litestream/s3"   // s3:// replicas

	"github.com/fazt-sh/fazt/eventlog"
)

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

// warnOnly passes on warnings and errors only.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(as)} }
func (w warnOnly) WithGroup(g string) slog.Handler       { return warnOnly{w.Handler.WithGroup(g)} }

// replica copies the archive to one URL with an embedded Litestream.
// The service drives its syncs: each one copies what the archive held
// when it began, so the replica's position is known to the event.
type replica struct {
	s      *Service
	url    string // as configured
	kick   chan struct{}
	cancel context.CancelFunc // stops loop
	done   chan struct{}      // loop ended

	db    *litestream.DB
	store *litestream.Store

	mu        sync.Mutex
	copied    uint64
	copiedAt  time.Time
	lastErr   string
	lastErrAt time.Time
	errs      uint64
	syncs     uint64
}

func newReplica(s *Service, u string) *replica {
	return &replica{s: s, url: u, kick: make(chan struct{}, 1)}
}

// open starts Litestream on the archive for this replica. Each replica
// has its own Litestream state beside the archive.
func (r *replica) open(ctx context.Context) error {
	client, err := newReplicaClient(r.url)
	if err != nil {
		return err
	}
	db := litestream.NewDB(r.s.cfg.Path)
	// Litestream's local state is per replica: two on one file each
	// keep their own, named by the URL.
	sum := sha256.Sum256([]byte(r.url))
	dir, file := filepath.Split(r.s.cfg.Path)
	db.SetMetaPath(filepath.Join(dir, "."+file+litestream.MetaDirSuffix+"-"+hex.EncodeToString(sum[:6])))
	db.MonitorInterval = 0 // the service drives the syncs
	rep := litestream.NewReplicaWithClient(db, client)
	rep.MonitorEnabled = false
	db.Replica = rep
	store := litestream.NewStore([]*litestream.DB{db}, compactionLevels())
	// Litestream's own progress is debug chatter here; its warnings and
	// errors go to the kernel's log. NewStore sets these on the DB: after.
	lg := slog.New(warnOnly{r.s.logger().Handler()}).With("replica", Redact(r.url))
	store.Logger = lg
	db.SetLogger(lg)
	store.ShutdownSyncTimeout, db.ShutdownSyncTimeout = 0, 0
	if err := store.Open(ctx); err != nil {
		return err
	}
	r.db, r.store = db, store
	return nil
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

// sync copies the archive up to what it holds now.
func (r *replica) sync(ctx context.Context) error {
	target := r.s.archived.Load()
	if r.store == nil {
		if err := r.open(ctx); err != nil {
			return fmt.Errorf("open: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultSyncTimeout)
	defer cancel()
	if err := r.db.Sync(ctx); err != nil {
		return err
	}
	if err := r.db.Replica.Sync(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.copied, r.copiedAt = target, time.Now()
	r.lastErr = ""
	r.syncs++
	r.mu.Unlock()
	if f := r.s.cfg.OnCopied; f != nil {
		f(Redact(r.url), target)
	}
	return nil
}

func (r *replica) copiedSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.copied
}

// loop syncs after the archive advances, starting syncs at most every
// SyncInterval (a slow sync is followed by the next at once), and backs
// off while the replica fails.
func (r *replica) loop(ctx context.Context) {
	backoff := r.s.cfg.SyncInterval
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	first := true
	for {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
			case <-tick.C:
			}
		}
		if !first && r.s.archived.Load() == r.copiedSeq() && r.store != nil {
			continue
		}
		first = false
		began := time.Now()
		var wait time.Duration
		if err := r.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.fail(err)
			backoff = min(2*backoff, 10*time.Second)
			wait = backoff
		} else {
			backoff = r.s.cfg.SyncInterval
			wait = r.s.cfg.SyncInterval - time.Since(began)
		}
		if wait <= 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// close makes a last sync up to seq, bounded by ctx, and stops
// Litestream.
func (r *replica) close(ctx context.Context, seq uint64) error {
	var err error
	if r.copiedSeq() < seq || r.store == nil {
		if err = r.sync(ctx); err != nil {
			r.fail(err)
			err = fmt.Errorf("backup replica %s: last sync: %w (copied up to %d of %d; it catches up at the next start)", Redact(r.url), err, r.copiedSeq(), seq)
		}
	}
	if r.store != nil {
		if cerr := r.store.Close(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
			err = errors.Join(err, cerr)
		}
	}
	return err
}
