package vfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// Defaults and limits.
const (
	// DefaultMaxBlobBytes bounds one file's size (Config.MaxBlobBytes).
	DefaultMaxBlobBytes = 100 << 20
	// DefaultMaxFiles bounds the files of one deploy (Config.MaxFiles).
	DefaultMaxFiles = 10000
	// DefaultCacheBytes bounds the memory cache of blob bytes in front of
	// the projection (Config.CacheBytes).
	DefaultCacheBytes = 64 << 20
	// DefaultMaxCompressBytes: larger files get no precompressed variants
	// (Config.MaxCompressBytes).
	DefaultMaxCompressBytes = 8 << 20
	// DefaultBrotliQuality is the brotli quality of the variants made at
	// deploy (Config.BrotliQuality). On web files 5 compresses as well as
	// 9 at a tenth of the time (about 1-3 ms for 10 KiB); 11 is about 10%
	// smaller and 15 times slower.
	DefaultBrotliQuality = 5
	// MaxPathBytes bounds a path in a manifest and in a request.
	MaxPathBytes = 512
	// MaxTypeBytes bounds a content type.
	MaxTypeBytes = 255
	// MaxManifestBytes bounds the deploy event: the log takes at most
	// eventlog.MaxEventSize of data per event. With compressed variants
	// that is about 3,000 files; a deploy whose manifest is larger
	// stores it as a blob and names it in the event (version 2).
	MaxManifestBytes = eventlog.MaxEventSize
	// MaxManifestBlobBytes bounds a manifest stored as a blob, the most
	// Config.MaxManifestBlobBytes may be: far above DefaultMaxFiles files
	// with the longest paths (about 10 MB).
	MaxManifestBlobBytes = 64 << 20
	// ChunkBytes is the size of the rows that hold blob bytes in the
	// projection: a Range read touches only the chunks it needs.
	ChunkBytes = 256 << 10
	// Bucket is the JetStream object store bucket of the blobs.
	Bucket = "fazt_vfs_blobs"
	// projectionName is the read model's name (one SQLite file).
	projectionName = "vfs"
)

// Config tunes the service. The zero value is ready to use.
type Config struct {
	// MaxBlobBytes is the largest file PutBlob accepts
	// (DefaultMaxBlobBytes).
	MaxBlobBytes int64
	// MaxFiles is the most files a deploy may have (DefaultMaxFiles).
	MaxFiles int
	// CacheBytes bounds the memory cache of blob bytes
	// (DefaultCacheBytes); negative: no cache.
	CacheBytes int64
	// MaxCompressBytes: compressible files up to this size get gzip and
	// brotli variants at deploy (DefaultMaxCompressBytes); negative:
	// none do.
	MaxCompressBytes int64
	// BrotliQuality is the brotli quality of the variants, 0 to 11
	// (DefaultBrotliQuality).
	BrotliQuality int
	// MaxManifestBlobBytes bounds the manifest of a deploy too large for
	// one event, encoded (at most and by default MaxManifestBlobBytes).
	MaxManifestBlobBytes int
	// TempDir holds uploads while their hash is checked (default
	// k.Dir("vfs")).
	TempDir string
}

// Service is the vfs service on one kernel (see the package doc).
type Service struct {
	k     *kernel.Kernel
	cfg   Config
	w     *eventlog.Writer
	cache *chunkCache
	// resolved caches what requests resolve to; applied is the newest
	// vfs event the fold has begun to apply, which invalidates it.
	resolved resolveCache
	applied  atomic.Uint64

	// gzipWriters and brotliWriters hold the compressors of deploys.
	gzipWriters, brotliWriters sync.Pool

	mu     sync.Mutex
	store  jetstream.ObjectStore
	stream jetstream.Stream // the bucket's
	known  map[string]int64 // sizes of blobs known to be stored
	locks  map[string]*hashLock
}

// Register declares the vfs service on k, before k.Open: its event
// types, its projection, and the category "vfs", which only the service
// writes.
func Register(k *kernel.Kernel, cfg Config) (*Service, error) {
	if cfg.MaxBlobBytes <= 0 {
		cfg.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.MaxCompressBytes == 0 {
		cfg.MaxCompressBytes = DefaultMaxCompressBytes
	}
	if cfg.MaxManifestBlobBytes <= 0 || cfg.MaxManifestBlobBytes > MaxManifestBlobBytes {
		cfg.MaxManifestBlobBytes = MaxManifestBlobBytes
	}
	if cfg.BrotliQuality <= 0 || cfg.BrotliQuality > 11 {
		cfg.BrotliQuality = DefaultBrotliQuality
	}
	if cfg.TempDir == "" {
		cfg.TempDir = k.Dir("vfs")
	}
	s := &Service{k: k, cfg: cfg, cache: newChunkCache(cfg.CacheBytes), known: map[string]int64{}, locks: map[string]*hashLock{}}
	for _, e := range eventSchemas {
		if err := k.RegisterEvent(e.typ, e.version, []byte(e.schema)); err != nil {
			return nil, fmt.Errorf("vfs: %w", err)
		}
	}
	if err := k.RegisterProjection(s.projection()); err != nil {
		return nil, fmt.Errorf("vfs: %w", err)
	}
	w, err := k.Log().Reserve(Category)
	if err != nil {
		return nil, fmt.Errorf("vfs: %w", err)
	}
	s.w = w
	return s, nil
}

// blobs opens the bucket once the log is open.
func (s *Service) blobs(ctx context.Context) (jetstream.ObjectStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	st, err := s.k.Log().ObjectStore(ctx, Bucket)
	if err != nil {
		if errors.Is(err, eventlog.ErrClosed) {
			return nil, fmt.Errorf("%w: the blob store is not open (is the kernel open?)", eventlog.ErrUnavailable)
		}
		return nil, fmt.Errorf("%w: %v", eventlog.ErrUnavailable, err)
	}
	s.store = st
	return st, nil
}

// ValidHash reports whether h is a blob name: 64 lower-case hex digits.
func ValidHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Hash returns the blob name of b: its SHA-256 in lower-case hex.
func Hash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Missing returns the hashes among hashes that are not stored, in their
// order, each once. Errors: ErrInvalid for a malformed hash.
func (s *Service) Missing(ctx context.Context, hashes []string) ([]string, error) {
	store, err := s.blobs(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, h := range hashes {
		if !ValidHash(h) {
			return nil, kernel.Invalidf("blob hash %q: want the SHA-256 of the content, 64 lower-case hex digits", clip(h))
		}
	}
	// The blobs a deploy copied into the projection are stored: one
	// query instead of a round trip to the bucket for each.
	folded, err := s.folded(ctx, hashes)
	if err != nil {
		return nil, err
	}
	for _, h := range hashes {
		if seen[h] || folded[h] {
			continue
		}
		seen[h] = true
		_, ok, err := s.stored(ctx, store, h)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, h)
		}
	}
	return out, nil
}

// folded returns which of hashes the vfs projection holds.
func (s *Service) folded(ctx context.Context, hashes []string) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.read(ctx, false, func(ctx context.Context, tx *sql.Tx) error {
		for batch := range slices.Chunk(hashes, 500) {
			args := make([]any, len(batch))
			for i, h := range batch {
				args[i] = h
			}
			rows, err := tx.QueryContext(ctx, `SELECT sha FROM blobs WHERE sha IN (?`+strings.Repeat(", ?", len(batch)-1)+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var h string
				if err := rows.Scan(&h); err != nil {
					rows.Close()
					return err
				}
				out[h] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// stored reports whether the blob h is in the bucket, and its size.
func (s *Service) stored(ctx context.Context, store jetstream.ObjectStore, h string) (int64, bool, error) {
	s.mu.Lock()
	size, ok := s.known[h]
	s.mu.Unlock()
	if ok {
		return size, true, nil
	}
	info, err := store.GetInfo(ctx, h)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w: blob store: %v", eventlog.ErrUnavailable, err)
	}
	if info.Deleted {
		return 0, false, nil
	}
	s.remember(h, int64(info.Size))
	return int64(info.Size), true, nil
}

// maxKnown bounds the sizes of stored blobs kept in memory; past it
// they are looked up in the bucket again.
const maxKnown = 100000

func (s *Service) remember(h string, size int64) {
	s.mu.Lock()
	if len(s.known) >= maxKnown {
		clear(s.known)
	}
	s.known[h] = size
	s.mu.Unlock()
}

// PutBlob stores the content read from r as the blob hash, once r's
// bytes are checked against it: a mismatch is ErrInvalid and nothing is
// stored. Content over Config.MaxBlobBytes is ErrInvalid too (and an
// *http.MaxBytesError, which the kernel answers 413). A blob already stored is not read again, nor changed.
// When PutBlob returns nil the blob is durable (see the package doc).
func (s *Service) PutBlob(ctx context.Context, hash string, r io.Reader) error {
	if !ValidHash(hash) {
		return kernel.Invalidf("blob hash %q: want the SHA-256 of the content, 64 lower-case hex digits", clip(hash))
	}
	store, err := s.blobs(ctx)
	if err != nil {
		return err
	}
	unlock := s.lock(hash)
	defer unlock()
	if _, ok, err := s.stored(ctx, store, hash); err != nil || ok {
		return err
	}
	sp, err := spool(r, s.cfg.MaxBlobBytes, s.cfg.TempDir)
	if err != nil {
		return err
	}
	defer sp.close()
	if sp.hash != hash {
		return kernel.Invalidf("blob %s: the content's SHA-256 is %s: nothing was stored; upload the file's own bytes under its hash", hash, sp.hash)
	}
	return s.putVerified(ctx, store, hash, sp.size, sp.reader(), true)
}

// putVerified stores content known to hash to hash, and fsyncs it when
// sync is set (the variants made at deploy are fsynced together, before
// the deploy event is appended).
func (s *Service) putVerified(ctx context.Context, store jetstream.ObjectStore, hash string, size int64, r io.Reader, sync bool) error {
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: hash}, r); err != nil {
		return fmt.Errorf("%w: store blob %s: %v", eventlog.ErrUnavailable, hash, err)
	}
	if !sync {
		// Known only once fsynced: Missing must not report it stored.
		return nil
	}
	if err := s.k.Log().SyncObjectStore(Bucket); err != nil {
		return fmt.Errorf("%w: make blob %s durable: %v", eventlog.ErrUnavailable, hash, err)
	}
	s.remember(hash, size)
	return nil
}

// putBytes stores b, whose hash the caller computed, unless stored,
// without fsyncing it: the caller calls SyncObjectStore before an event
// names it.
func (s *Service) putBytes(ctx context.Context, hash string, b []byte) error {
	store, err := s.blobs(ctx)
	if err != nil {
		return err
	}
	unlock := s.lock(hash)
	defer unlock()
	if _, ok, err := s.stored(ctx, store, hash); err != nil || ok {
		return err
	}
	return s.putVerified(ctx, store, hash, int64(len(b)), bytes.NewReader(b), false)
}

// tooLarge is the error for content over a limit of max bytes: it wraps
// eventlog.ErrInvalid and an *http.MaxBytesError (HTTP 413).
func tooLarge(max int64, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", eventlog.ErrInvalid, fmt.Sprintf(format, args...), &http.MaxBytesError{Limit: max})
}

// hashLock serialises the writers of one blob.
type hashLock struct {
	mu   sync.Mutex
	refs int
}

func (s *Service) lock(h string) func() {
	s.mu.Lock()
	l := s.locks[h]
	if l == nil {
		l = &hashLock{}
		s.locks[h] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, h)
		}
		s.mu.Unlock()
	}
}

// spooled is content read once, hashed, kept in memory or a file.
type spooled struct {
	hash string
	size int64
	mem  []byte
	f    *os.File
}

// spoolMem is the most of an upload kept in memory; more goes to a file.
const spoolMem = 1 << 20

// spool reads r (at most max bytes) and hashes it.
func spool(r io.Reader, max int64, dir string) (*spooled, error) {
	h := sha256.New()
	sp := &spooled{}
	buf := make([]byte, 0, 32<<10)
	lr := io.LimitReader(r, max+1)
	var n int64
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= spoolMem {
				break
			}
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		m, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		n += int64(m)
		if err == io.EOF {
			sp.mem = buf
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read upload: %w", err)
		}
	}
	if sp.mem == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(dir, "upload-*")
		if err != nil {
			return nil, err
		}
		_ = os.Remove(f.Name()) // gone when closed, even after a crash
		sp.f = f
		if _, err := f.Write(buf); err != nil {
			sp.close()
			return nil, err
		}
		m, err := io.Copy(f, lr)
		n += m
		if err != nil {
			sp.close()
			return nil, fmt.Errorf("read upload: %w", err)
		}
		h.Write(buf)
		if _, err := f.Seek(int64(len(buf)), io.SeekStart); err != nil {
			sp.close()
			return nil, err
		}
		if _, err := io.Copy(h, f); err != nil {
			sp.close()
			return nil, err
		}
	} else {
		h.Write(sp.mem)
	}
	if n > max {
		sp.close()
		return nil, tooLarge(max, "a blob of more than %d bytes: files are at most that large (Config.MaxBlobBytes)", max)
	}
	sp.hash, sp.size = hex.EncodeToString(h.Sum(nil)), n
	return sp, nil
}

func (sp *spooled) reader() io.Reader {
	if sp.f != nil {
		_, _ = sp.f.Seek(0, io.SeekStart)
		return sp.f
	}
	return bytes.NewReader(sp.mem)
}

func (sp *spooled) close() {
	if sp.f != nil {
		sp.f.Close()
	}
}

// clip shortens a caller's string for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
