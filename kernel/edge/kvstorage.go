package edge

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
)

// The defaults of KVStorage's tunables.
const (
	// DefaultLockTTL is how long a lock's key must stay unchanged before
	// a contender takes it over: longer than any pause of a live holder,
	// short enough that a dead node's certificates are renewed by another
	// soon after.
	DefaultLockTTL = 30 * time.Second
	// DefaultLockRefresh is how often a holder rewrites its lock: several
	// refreshes fit in DefaultLockTTL, so a missed one or two do not lose
	// the lock.
	DefaultLockRefresh = 5 * time.Second
	// DefaultLockPoll is how often a waiting Lock looks at the lock again.
	DefaultLockPoll = 500 * time.Millisecond
)

// kvLockOpTimeout bounds one round trip of the lock protocol. Each round
// trip runs to its end even when the caller's context is cancelled, so
// that a lock created on the server is never left without a holder that
// knows it has it.
const kvLockOpTimeout = 10 * time.Second

// kvListTimeout bounds a listing of keys.
const kvListTimeout = time.Minute

var (
	_ certmagic.Storage          = (*KVStorage)(nil)
	_ certmagic.TryLocker        = (*KVStorage)(nil)
	_ certmagic.LockLeaseRenewer = (*KVStorage)(nil)
)

// KVStorage is a certmagic.Storage on a JetStream key-value bucket:
// certificate storage shared by every node connected to the same NATS.
//
// certmagic keeps every TLS asset (certificates, private keys, their
// metadata, the ACME account, OCSP staples) in its Storage and
// coordinates the expensive work (obtaining, renewing, cleaning) with the
// storage's named locks. KVStorage puts both in one bucket, so the nodes
// of a cluster share certificates and locks: when two nodes are asked for
// one certificate at once, one of them places the ACME order and the
// other finds the certificate in the bucket once the lock is released.
//
// On the event log (the bucket lives beside the event stream, and is
// fsynced after each write under Strict durability):
//
//	storage, err := edge.OpenKVStorage(ctx, log, "fazt_certs")
//	if err != nil { ... }
//	cfg := certmagic.New(cache, certmagic.Config{Storage: storage})
//
// On any bucket: NewKVStorage(kv), then adjust the exported fields before
// handing it to certmagic; they must not change once it is in use. All
// methods are safe for concurrent use. Two KVStorage values on one
// bucket, in one process or on two nodes, share files and locks.
//
// Keys. certmagic's keys are paths ("certificates/<ca>/<name>/<name>.crt").
// JetStream keys are NATS subjects, which refuse most punctuation and
// separate tokens with dots; so each path element becomes one token,
// escaped: letters, digits, '-' and '_' stay as they are, every other
// byte (including '.', '=' and any non-ASCII byte) becomes '=' and two
// uppercase hex digits. "certificates/example.com" is stored as
// "d.certificates.example=2Ecom". The mapping is reversible, so List
// returns exactly the keys that were stored, and a directory is listed
// with a subject filter the server applies. Data keys live under "d.",
// locks under "l.": a stored path is never mistaken for a lock. Keys
// must be names separated by single slashes, with no slash at either
// end (as certmagic makes them); others fail with eventlog.ErrInvalid.
//
// Values are stored whole, in one message: at most the NATS server's
// max_payload (4 MiB on the embedded server, 1 MiB by default
// elsewhere). A larger Store fails with eventlog.ErrInvalid and says so;
// certmagic's assets are a few kilobytes.
//
// Locks. A lock is a key made with the bucket's Create, which JetStream
// refuses when the key exists: of any number of contenders, on any
// number of nodes, exactly one creates it. The holder rewrites the key
// every LockRefresh while it holds the lock (a new revision each time),
// as certmagic's FileStorage rewrites its lock file. A contender that
// sees the same revision stay for LockTTL, by its own clock, concludes
// the holder is dead and takes the lock over with an Update conditioned
// on that revision: of several contenders again only one succeeds, and
// none does if the holder refreshed meanwhile. No node's clock is
// compared with another's. Unlock deletes the key only at the revision
// its holder last wrote, so a holder that lost its lock to a takeover
// (it stalled for longer than LockTTL) cannot delete its successor's
// lock; it learns that it lost it from RenewLockLease (which certmagic
// calls before each attempt to obtain a certificate) and from Unlock,
// both with eventlog.ErrConflict.
type KVStorage struct {
	// LockTTL is how long a lock may go without a refresh before another
	// contender takes it over (DefaultLockTTL). It must exceed
	// LockRefresh; keep it several times LockRefresh.
	LockTTL time.Duration
	// LockRefresh is how often a holder rewrites its lock
	// (DefaultLockRefresh).
	LockRefresh time.Duration
	// LockPoll is how often a waiting Lock tries again (DefaultLockPoll).
	LockPoll time.Duration
	// Sync, when set, is called after each Store and Delete before it
	// returns, to make the write durable: with the event log's embedded
	// server under Strict durability, Log.SyncKeyValue of the bucket.
	// Locks are not synced: a lock a crash loses is as good as released.
	Sync func() error
	// Logger receives lock takeovers and lost locks (slog.Default()).
	Logger *slog.Logger

	kv    jetstream.KeyValue
	owner string // written into the locks this value takes, for operators
	// beforeTakeover, set only by tests, runs between reading a stale
	// lock and the conditional write that takes it over.
	beforeTakeover func()

	mu   sync.Mutex
	held map[string]*kvHeldLock // by lock name
	seen map[string]kvSighting  // by lock key: the revision a contender watches
}

// OpenKVStorage opens (creating it if needed) the key-value bucket on
// the log's NATS server with Log.KeyValue, and returns a KVStorage on it
// whose Sync is Log.SyncKeyValue of the bucket. Errors: those of
// Log.KeyValue (eventlog.ErrClosed when the log is not open).
func OpenKVStorage(ctx context.Context, log *eventlog.Log, bucket string) (*KVStorage, error) {
	kv, err := log.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("certificate storage: %w", err)
	}
	s := NewKVStorage(kv)
	s.Sync = func() error { return log.SyncKeyValue(bucket) }
	return s, nil
}

// NewKVStorage returns a KVStorage on the bucket kv, with every tunable
// at its default. Open the bucket with eventlog's Log.KeyValue (or use
// OpenKVStorage), or with jetstream's CreateOrUpdateKeyValue on any
// connection to the cluster.
func NewKVStorage(kv jetstream.KeyValue) *KVStorage {
	host, _ := os.Hostname()
	return &KVStorage{
		LockTTL:     DefaultLockTTL,
		LockRefresh: DefaultLockRefresh,
		LockPoll:    DefaultLockPoll,
		Logger:      slog.Default(),
		kv:          kv,
		owner:       fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8]),
		held:        map[string]*kvHeldLock{},
		seen:        map[string]kvSighting{},
	}
}

// String names the storage in certmagic's logs.
func (s *KVStorage) String() string { return "KVStorage:" + s.kv.Bucket() }

// Store puts value at key, replacing what was there.
func (s *KVStorage) Store(ctx context.Context, key string, value []byte) error {
	k, err := kvDataKey(key)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, k, value); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			return kvInvalid("certificate storage: the value for %q is %d bytes, more than the NATS server takes in one message (its max_payload): this storage holds certificates, keys and metadata of a few kilobytes", key, len(value))
		}
		return fmt.Errorf("certificate storage: store %q: %w", key, err)
	}
	return s.sync()
}

// Load returns the value at key; an error that matches fs.ErrNotExist
// when there is none.
func (s *KVStorage) Load(ctx context.Context, key string) ([]byte, error) {
	k, err := kvDataKey(key)
	if err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, &fs.PathError{Op: "load", Path: key, Err: fs.ErrNotExist}
	}
	if err != nil {
		return nil, fmt.Errorf("certificate storage: load %q: %w", key, err)
	}
	return e.Value(), nil
}

// Delete removes key and every key under it (key as a directory). A key
// that does not exist is not an error.
func (s *KVStorage) Delete(ctx context.Context, key string) error {
	k, err := kvDataKey(key)
	if err != nil {
		return err
	}
	keys, err := s.under(ctx, k)
	if err != nil {
		return fmt.Errorf("certificate storage: delete %q: %w", key, err)
	}
	if _, err := s.kv.Get(ctx, k); err == nil {
		keys = append(keys, k)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("certificate storage: delete %q: %w", key, err)
	}
	for _, k := range keys {
		if err := s.kv.Delete(ctx, k); err != nil {
			return fmt.Errorf("certificate storage: delete %q: %w", key, err)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return s.sync()
}

// Exists reports whether key is a file or a directory (the prefix of a
// file), false also when the bucket could not be asked.
func (s *KVStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List returns the keys under prefix ("" for all): its files and
// directories, and with recursive everything below them too, as
// certmagic's FileStorage lists a folder. A prefix with nothing under it
// that is not a file is an error that matches fs.ErrNotExist.
func (s *KVStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	k := kvDataRoot
	if prefix != "" {
		var err error
		if k, err = kvDataKey(prefix); err != nil {
			return nil, err
		}
	}
	keys, err := s.under(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("certificate storage: list %q: %w", prefix, err)
	}
	if len(keys) == 0 {
		if prefix != "" {
			if _, err := s.kv.Get(ctx, k); err == nil {
				return nil, nil // a file has nothing under it
			}
		}
		return nil, &fs.PathError{Op: "list", Path: prefix, Err: fs.ErrNotExist}
	}
	set := map[string]bool{}
	for _, sub := range keys {
		names, ok := kvDecode(sub[len(k)+1:])
		if !ok {
			continue // not written by a KVStorage
		}
		base := prefix
		for i, name := range names {
			if base == "" {
				base = name
			} else {
				base += "/" + name
			}
			set[base] = true
			if !recursive || i == len(names)-1 {
				break
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// Stat describes key: a file with its size and the time it was stored,
// or a directory (IsTerminal false, no time or size); an error that
// matches fs.ErrNotExist when it is neither.
func (s *KVStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	k, err := kvDataKey(key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	e, err := s.kv.Get(ctx, k)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: e.Created(), Size: int64(len(e.Value())), IsTerminal: true}, nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return certmagic.KeyInfo{}, fmt.Errorf("certificate storage: stat %q: %w", key, err)
	}
	keys, err := s.under(ctx, k)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certificate storage: stat %q: %w", key, err)
	}
	if len(keys) == 0 {
		return certmagic.KeyInfo{}, &fs.PathError{Op: "stat", Path: key, Err: fs.ErrNotExist}
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// under returns the bucket keys below the bucket key k.
func (s *KVStorage) under(ctx context.Context, k string) ([]string, error) {
	// A listing ends when the server says it sent every key; should that
	// word never come, the bound turns a hang into an error.
	ctx, cancel := context.WithTimeout(ctx, kvListTimeout)
	defer cancel()
	lister, err := s.kv.ListKeysFiltered(ctx, k+".>")
	if err != nil {
		return nil, err
	}
	defer lister.Stop()
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	// The lister ends early, without an error, when ctx ends.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil // a busy bucket may list a key twice
}

func (s *KVStorage) sync() error {
	if s.Sync == nil {
		return nil
	}
	if err := s.Sync(); err != nil {
		return fmt.Errorf("certificate storage: sync %s: %w", s.kv.Bucket(), err)
	}
	return nil
}

// The locks.

// kvHeldLock is a lock this KVStorage holds, kept fresh by refresh.
type kvHeldLock struct {
	name, key string
	acquired  time.Time
	stop      chan struct{} // closed by Unlock
	done      chan struct{} // closed when refresh has returned

	mu   sync.Mutex
	rev  uint64 // the revision last written
	lost error  // set once another holder took the lock over
}

// kvSighting is a revision of a lock a contender saw, and when it first did.
type kvSighting struct {
	rev uint64
	at  time.Time
}

// kvLockRecord is a lock's value: who holds it, for operators reading the
// bucket (the protocol needs only the key's revision).
type kvLockRecord struct {
	Owner    string    `json:"owner"`
	Acquired time.Time `json:"acquired"`
	Updated  time.Time `json:"updated"`
}

// Lock takes the lock name, waiting while another holder (here or on any
// node) has it, and taking it over once that holder has not refreshed it
// for LockTTL. It returns the context's error when ctx ends first; a
// round trip to the bucket that has begun is finished first. The holder
// must call Unlock.
func (s *KVStorage) Lock(ctx context.Context, name string) error {
	if err := s.checkTunables(); err != nil {
		return err
	}
	for {
		ok, err := s.tryLock(name)
		if ok || err != nil {
			return err
		}
		t := time.NewTimer(s.LockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TryLock takes the lock name if it is free, or stale, and reports
// whether it did, without waiting. Staleness needs the lock to have been
// seen unchanged for LockTTL: by earlier TryLock or Lock calls of this
// KVStorage, since it never waits itself.
func (s *KVStorage) TryLock(ctx context.Context, name string) (bool, error) {
	if err := s.checkTunables(); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return s.tryLock(name)
}

// Unlock releases the lock name, which this KVStorage must hold. It
// deletes the lock only at the revision its holder last wrote; when
// another holder took the lock over (this one stalled for longer than
// LockTTL) it deletes nothing and says so.
func (s *KVStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("certificate storage: unlock %q: this storage does not hold that lock", name)
	}
	close(h.stop)
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvLockOpTimeout)
	defer cancel()
	err := s.kv.Delete(octx, h.key, jetstream.LastRevision(h.rev))
	if kvConflict(err) {
		return s.lostLock(h)
	}
	if err != nil {
		return fmt.Errorf("certificate storage: unlock %q: %w (other nodes take the lock over after %s)", name, err, s.LockTTL)
	}
	return nil
}

// RenewLockLease refreshes the lock lockKey now and reports whether this
// KVStorage still holds it: an error when another holder took it over.
// certmagic calls it before each attempt to obtain a certificate, so a
// node that lost its lock stops before placing an order. The lock stays
// fresh for as long as it is held anyway, so leaseDuration is not used:
// a longer lease would only keep a dead node's lock from being taken
// over.
func (s *KVStorage) RenewLockLease(ctx context.Context, lockKey string, leaseDuration time.Duration) error {
	s.mu.Lock()
	h := s.held[lockKey]
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("certificate storage: renew lock %q: this storage does not hold that lock", lockKey)
	}
	return s.refresh(ctx, h)
}

func (s *KVStorage) checkTunables() error {
	if s.LockRefresh <= 0 || s.LockTTL <= s.LockRefresh || s.LockPoll <= 0 {
		return kvInvalid("certificate storage: LockTTL %s, LockRefresh %s, LockPoll %s: want LockPoll > 0 and 0 < LockRefresh < LockTTL", s.LockTTL, s.LockRefresh, s.LockPoll)
	}
	return nil
}

// tryLock makes one attempt at the lock name: create it, or take it over
// when it has been seen at one revision for LockTTL.
func (s *KVStorage) tryLock(name string) (bool, error) {
	key, err := kvLockKey(name)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvLockOpTimeout)
	defer cancel()
	now := time.Now()
	rev, err := s.kv.Create(ctx, key, s.record(now, now))
	if err == nil {
		s.hold(name, key, rev, now)
		return true, nil
	}
	if !kvConflict(err) {
		return false, fmt.Errorf("certificate storage: lock %q: %w", name, err)
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.forget(key)
		return false, nil // released since: the next attempt creates it
	}
	if err != nil {
		return false, fmt.Errorf("certificate storage: lock %q: %w", name, err)
	}
	now = time.Now()
	s.mu.Lock()
	seen, ok := s.seen[key]
	if !ok || seen.rev != e.Revision() {
		s.seen[key] = kvSighting{rev: e.Revision(), at: now}
		s.mu.Unlock()
		return false, nil
	}
	s.mu.Unlock()
	if now.Sub(seen.at) < s.LockTTL {
		return false, nil
	}
	if s.beforeTakeover != nil {
		s.beforeTakeover()
	}
	rev, err = s.kv.Update(ctx, key, s.record(now, now), e.Revision())
	if kvConflict(err) {
		return false, nil // refreshed, released or taken over by another
	}
	if err != nil {
		return false, fmt.Errorf("certificate storage: take over stale lock %q: %w", name, err)
	}
	s.logger().Warn("took over a stale certificate lock: its holder did not refresh it", "lock", name, "unchanged_for", now.Sub(seen.at).Round(time.Millisecond), "previous", string(e.Value()))
	s.hold(name, key, rev, now)
	return true, nil
}

// hold records a lock taken at rev and starts refreshing it.
func (s *KVStorage) hold(name, key string, rev uint64, acquired time.Time) {
	h := &kvHeldLock{name: name, key: key, acquired: acquired, rev: rev, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	delete(s.seen, key)
	s.held[name] = h
	s.mu.Unlock()
	go s.keepFresh(h)
}

func (s *KVStorage) forget(key string) {
	s.mu.Lock()
	delete(s.seen, key)
	s.mu.Unlock()
}

// keepFresh rewrites the lock every LockRefresh until Unlock, until the
// lock is lost, or until the connection is closed for good (the lock then
// goes stale and another node takes it over). A refresh that fails for
// another reason (NATS unreachable for a moment) is tried again at the
// next tick.
func (s *KVStorage) keepFresh(h *kvHeldLock) {
	defer close(h.done)
	t := time.NewTicker(s.LockRefresh)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if err := s.refresh(context.Background(), h); err != nil {
			h.mu.Lock()
			lost := h.lost != nil
			h.mu.Unlock()
			if lost || errors.Is(err, nats.ErrConnectionClosed) {
				return
			}
			s.logger().Warn("could not refresh a certificate lock; trying again", "lock", h.name, "err", err)
		}
	}
}

// refresh rewrites the held lock at the revision last written.
func (s *KVStorage) refresh(ctx context.Context, h *kvHeldLock) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kvLockOpTimeout)
	defer cancel()
	rev, err := s.kv.Update(octx, h.key, s.record(h.acquired, time.Now()), h.rev)
	if kvConflict(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return s.lostLock(h)
	}
	if err != nil {
		return fmt.Errorf("certificate storage: refresh lock %q: %w", h.name, err)
	}
	h.rev = rev
	return nil
}

// lostLock marks h lost (h.mu is held) and returns the error that says so.
func (s *KVStorage) lostLock(h *kvHeldLock) error {
	if h.lost == nil {
		h.lost = fmt.Errorf("%w: certificate storage: lock %q was taken over by another holder after this one left it unrefreshed for %s; the work it guarded may have been done twice", eventlog.ErrConflict, h.name, s.LockTTL)
		s.logger().Warn("lost a certificate lock to another holder", "lock", h.name)
	}
	return h.lost
}

func (s *KVStorage) record(acquired, now time.Time) []byte {
	b, _ := json.Marshal(kvLockRecord{Owner: s.owner, Acquired: acquired, Updated: now})
	return b
}

func (s *KVStorage) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// kvConflict reports a failed Create or conditional write: the key
// exists, or is at another revision. Replicated buckets report it with
// another code than single ones.
func kvConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// The key mapping.

const (
	kvDataRoot = "d" // data keys are "d.<token>.<token>..."
	kvLockRoot = "l" // lock keys are "l.<token>"
)

// kvDataKey maps a certmagic key to its bucket key.
func kvDataKey(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, "//") {
		return "", kvInvalid("certificate storage key %q: want names separated by single slashes, with no slash at either end", key)
	}
	var b strings.Builder
	b.WriteString(kvDataRoot)
	for name := range strings.SplitSeq(key, "/") {
		b.WriteByte('.')
		kvEscape(&b, name)
	}
	return b.String(), nil
}

// lockKey maps a lock name to its bucket key: one token, so that a lock
// name with slashes has no prefix in common with another.
func kvLockKey(name string) (string, error) {
	if name == "" {
		return "", kvInvalid("certificate storage: empty lock name")
	}
	var b strings.Builder
	b.WriteString(kvLockRoot + ".")
	kvEscape(&b, name)
	return b.String(), nil
}

const kvHex = "0123456789ABCDEF"

// escape writes name as one subject token: letters, digits, '-' and '_'
// as they are, every other byte as '=' and two hex digits.
func kvEscape(b *strings.Builder, name string) {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(kvHex[c>>4])
		b.WriteByte(kvHex[c&15])
	}
}

// kvDecode maps the tokens of a bucket key back to path names.
func kvDecode(s string) ([]string, bool) {
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		name, ok := kvUnescape(t)
		if !ok {
			return nil, false
		}
		tokens[i] = name
	}
	return tokens, true
}

func kvUnescape(t string) (string, bool) {
	if t == "" {
		return "", false
	}
	if !strings.Contains(t, "=") {
		return t, true
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '=' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", false
		}
		hi, lo := strings.IndexByte(kvHex, t[i+1]), strings.IndexByte(kvHex, t[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), true
}

// kvInvalid is an error that matches eventlog.ErrInvalid.
func kvInvalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", eventlog.ErrInvalid, fmt.Sprintf(format, args...))
}
