package vfs

import (
	"container/list"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fazt-sh/fazt/projections"
)

// SiteHandler returns a handler that serves site (ServeSite).
func (s *Service) SiteHandler(site string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.ServeSite(w, r, site) })
}

// served is the file a request resolved to.
type served struct {
	path, sha, typ string
	size           int64
	gzip, br       *Variant
	at             time.Time
	status         int // 200, or 404 for the deploy's not-found page
	redirect       bool
	// The response header values, made once per resolution (served is
	// cached) and shared by every response: each has capacity 1, so an
	// Add elsewhere copies it rather than write into it.
	hType, hCache, hLastMod []string
	enc                     [3]encoding // identity, gzip, br
}

// encoding is one form of a served file's bytes.
type encoding struct {
	sha                  string
	size                 int64
	etag, length, header []string // header: Content-Encoding (nil for identity)
}

// headers fills f's shared header values.
func (f *served) headers() {
	f.hType = []string{f.typ}
	f.hCache = []string{cacheControl(f.path, f.typ)}
	if f.status == http.StatusNotFound {
		f.hCache = []string{"no-cache"}
	}
	f.hLastMod = []string{f.at.UTC().Format(http.TimeFormat)}
	for i, v := range []*Variant{{SHA256: f.sha, Size: f.size}, f.gzip, f.br} {
		if v == nil {
			continue
		}
		e := encoding{sha: v.SHA256, size: v.Size, etag: []string{`"` + v.SHA256 + `"`}, length: []string{strconv.FormatInt(v.Size, 10)}}
		if i > 0 {
			e.header = []string{[]string{"", "gzip", "br"}[i]}
		}
		f.enc[i] = e
	}
}

// Shared header values of every response.
var (
	hNosniff = []string{"nosniff"}
	hVary    = []string{"Accept-Encoding"}
	hBytes   = []string{"bytes"}
)

// ServeSite answers r, a GET or HEAD of r.URL.Path, from site's live
// deploy (see the package doc for what it does).
func (s *Service) ServeSite(w http.ResponseWriter, r *http.Request, site string) {
	h := w.Header()
	h["X-Content-Type-Options"] = hNosniff
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel, dir, status, msg := requestPath(r)
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	f, err := s.resolve(r.Context(), site, rel, dir)
	switch {
	case err != nil:
		if r.Context().Err() == nil {
			s.k.Logger.Warn("vfs: serve", "site", site, "path", r.URL.Path, "err", err)
		}
		http.Error(w, "503 the site's files are not available right now; retry", http.StatusServiceUnavailable)
		return
	case f == nil:
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	case f.redirect:
		to := r.URL.EscapedPath() + "/"
		if r.URL.RawQuery != "" {
			to += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, to, http.StatusMovedPermanently)
		return
	}
	h["Content-Type"] = f.hType
	h["Cache-Control"] = f.hCache
	e := &f.enc[0]
	if f.gzip != nil || f.br != nil {
		h["Vary"] = hVary
		// A range is of the identity bytes: the variants are for whole
		// responses.
		if r.Header.Get("Range") == "" {
			br, gz := acceptsEncodings(r.Header.Get("Accept-Encoding"))
			switch {
			case br && f.br != nil:
				e = &f.enc[2]
			case gz && f.gzip != nil:
				e = &f.enc[1]
			}
			if e.header != nil {
				h["Content-Encoding"] = e.header
			}
		}
	}
	body := &blobReader{ctx: r.Context(), s: s, sha: e.sha, size: e.size}
	if f.status == http.StatusNotFound {
		h["Content-Length"] = e.length
		w.WriteHeader(http.StatusNotFound)
		if r.Method == http.MethodGet {
			_, _ = body.WriteTo(w)
		}
		return
	}
	h["Etag"] = e.etag
	if !conditional(r.Header) {
		// The whole file, as ServeContent answers it, without its copy
		// buffer: the body goes from the cached chunks to w. The length
		// is known for a variant too (ServeContent leaves it out when
		// Content-Encoding is set, making the response chunked).
		h["Accept-Ranges"] = hBytes
		h["Last-Modified"] = f.hLastMod
		h["Content-Length"] = e.length
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = body.WriteTo(w)
		}
		return
	}
	// ServeContent answers If-None-Match (304), If-Modified-Since, HEAD
	// and single or multiple ranges (206, 416) and streams the body.
	http.ServeContent(w, r, "", f.at, body)
}

// conditional reports whether a request carries a header that makes
// its answer other than the whole file: a range or a precondition.
func conditional(h http.Header) bool {
	for _, k := range [...]string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// requestPath checks a request's path and returns it relative to the
// site's root, whether it names a folder, or an error status.
func requestPath(r *http.Request) (rel string, dir bool, status int, msg string) {
	raw := strings.ToLower(r.URL.EscapedPath())
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.Contains(raw, "%00") {
		return "", false, http.StatusBadRequest, "400 bad path: encoded slashes, backslashes and NUL are refused"
	}
	p := r.URL.Path
	switch {
	case len(p) > MaxPathBytes+1:
		return "", false, http.StatusBadRequest, fmt.Sprintf("400 bad path: longer than %d bytes", MaxPathBytes)
	case !strings.HasPrefix(p, "/"), !utf8.ValidString(p), strings.ContainsRune(p, '\\'):
		return "", false, http.StatusBadRequest, "400 bad path"
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f {
			return "", false, http.StatusBadRequest, "400 bad path: control characters are refused"
		}
	}
	rel = p[1:]
	dir = rel == "" || strings.HasSuffix(rel, "/")
	segs := strings.Split(strings.TrimSuffix(rel, "/"), "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." {
			return "", false, http.StatusBadRequest, "400 bad path: . and .. segments are refused"
		}
		if seg == "" && !(i == 0 && rel == "") {
			return "", false, http.StatusNotFound, "404 page not found"
		}
	}
	return rel, dir, 0, ""
}

// resolve finds what answers rel in site's live deploy, in one read
// transaction: the live deploy and its file are read together, so a
// request is answered from one deploy even while another is activated.
// Blob bytes are immutable, so they are read afterwards.
func (s *Service) resolve(ctx context.Context, site, rel string, dir bool) (*served, error) {
	key := resolveKey{site, rel, dir}
	if f, ok := s.resolved.get(key, s.applied.Load()); ok {
		return f, nil
	}
	var cands []string
	if dir {
		cands = []string{rel + "index.html"}
	} else {
		cands = []string{rel, rel + ".html", rel + "/index.html"}
	}
	var found []served
	var fallback, notFound string
	seq, err := s.k.Projections().Read(ctx, projectionName, projections.ReadOptions{}, func(ctx context.Context, tx *sql.Tx) error {
		args := []any{site}
		for _, c := range cands {
			args = append(args, c)
		}
		q := `SELECT f.path, f.sha, f.size, f.type, f.gzip, f.gzip_size, f.br, f.br_size, d.at, d.fallback, d.not_found
			FROM sites s JOIN deploys d ON d.id = s.live JOIN files f ON f.deploy = d.id
			WHERE s.site = ? AND f.path IN (?` + strings.Repeat(", ?", len(cands)-1) + `, d.fallback, d.not_found)`
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var f served
			var gz, br sql.NullString
			var gzn, brn sql.NullInt64
			var at string
			if err := rows.Scan(&f.path, &f.sha, &f.size, &f.typ, &gz, &gzn, &br, &brn, &at, &fallback, &notFound); err != nil {
				return err
			}
			if gz.Valid {
				f.gzip = &Variant{SHA256: gz.String, Size: gzn.Int64}
			}
			if br.Valid {
				f.br = &Variant{SHA256: br.String, Size: brn.Int64}
			}
			f.at, _ = time.Parse(time.RFC3339Nano, at)
			found = append(found, f)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	f := choose(found, cands, dir, fallback, notFound)
	if f != nil {
		f.headers()
	}
	s.resolved.put(key, f, seq)
	return f, nil
}

// choose picks what answers a request among the files found.
func choose(found []served, cands []string, dir bool, fallback, notFound string) *served {
	pick := func(p string) *served {
		for i := range found {
			if found[i].path == p {
				f := found[i]
				f.status = http.StatusOK
				return &f
			}
		}
		return nil
	}
	for i, c := range cands {
		if f := pick(c); f != nil {
			f.redirect = !dir && i == 2
			return f
		}
	}
	if fallback != "" {
		if f := pick(fallback); f != nil {
			return f
		}
	}
	if notFound != "" {
		if f := pick(notFound); f != nil {
			f.status = http.StatusNotFound
			return f
		}
	}
	return nil
}

// resolveCache remembers what requests resolved to, each with the
// checkpoint of the snapshot it was read from. An entry is used only
// while no vfs event past that checkpoint has been folded, or is being
// folded: the fold raises Service.applied before it commits, so an
// entry read from a snapshot older than a change is never used once the
// change can be seen. It holds at most maxResolved entries, and starts
// over when full.
type resolveCache struct {
	mu sync.Mutex
	m  map[resolveKey]resolvedEntry
}

type resolveKey struct {
	site, rel string
	dir       bool
}

type resolvedEntry struct {
	f   *served // nil: nothing answers
	seq uint64
}

const maxResolved = 20000

func (c *resolveCache) get(k resolveKey, applied uint64) (*served, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || applied > e.seq {
		return nil, false
	}
	return e.f, true
}

func (c *resolveCache) put(k resolveKey, f *served, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxResolved {
		c.m = map[resolveKey]resolvedEntry{}
	}
	c.m[k] = resolvedEntry{f, seq}
}

// acceptsEncodings reports whether an Accept-Encoding header accepts
// brotli and gzip (listed, or "*", with a q-value above 0).
func acceptsEncodings(header string) (br, gz bool) {
	star := false
	explicit := map[string]bool{}
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		ok := true
		if k, v, found := strings.Cut(strings.TrimSpace(params), "="); found && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			ok = err == nil && q > 0
		}
		switch name {
		case "br", "gzip":
			explicit[name] = ok
		case "*":
			star = ok
		}
	}
	br, seen := explicit["br"]
	if !seen {
		br = star
	}
	gz, seen = explicit["gzip"]
	if !seen {
		gz = star
	}
	return br, gz
}

// cacheControl: HTML is revalidated on every use (it names the assets of
// its deploy); a fingerprinted asset's name changes with its content, so
// it is cached for a year; anything else is revalidated (cheap: 304 on
// the ETag).
func cacheControl(p, typ string) string {
	switch {
	case strings.HasPrefix(typ, "text/html"):
		return "no-cache"
	case fingerprinted(p):
		return "public, max-age=31536000, immutable"
	}
	return "public, max-age=0, must-revalidate"
}

// fingerprinted reports whether a file's name carries a content hash
// before its extension, as bundlers write them: "app.3f2a9c1d.js" (8 or
// more lower-case hex digits, at least one a digit) or
// "index-BdX3k9aZ.js" (8 to 16 letters, digits or _, mixing digits,
// upper and lower case).
func fingerprinted(p string) bool {
	base := path.Base(p)
	ext := path.Ext(base)
	if ext == "" {
		return false
	}
	stem := strings.TrimSuffix(base, ext)
	i := strings.LastIndexAny(stem, ".-")
	if i < 0 {
		return false
	}
	tok := stem[i+1:]
	if len(tok) < 8 {
		return false
	}
	var digit, upper, lower, hexOnly = false, false, false, true
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z':
			lower = true
			if c > 'f' {
				hexOnly = false
			}
		case c >= 'A' && c <= 'Z':
			upper, hexOnly = true, false
		case c == '_':
			hexOnly = false
		default:
			return false
		}
	}
	if hexOnly {
		return digit
	}
	return len(tok) <= 16 && digit && upper && lower
}

// blobReader reads a blob from the cache or the projection's chunks, a
// chunk at a time: memory stays bounded whatever the file's size.
type blobReader struct {
	ctx  context.Context
	s    *Service
	sha  string
	size int64
	off  int64
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	n := int(b.off / ChunkBytes)
	c, err := b.s.chunk(b.ctx, b.sha, n)
	if err != nil {
		return 0, err
	}
	start := b.off - int64(n)*ChunkBytes
	if start >= int64(len(c)) {
		return 0, fmt.Errorf("blob %s: chunk %d holds %d bytes, want more", b.sha, n, len(c))
	}
	m := copy(p, c[start:])
	b.off += int64(m)
	return m, nil
}

// WriteTo writes the rest of the blob to w a chunk at a time, straight
// from the cache: io.Copy uses it and needs no buffer of its own.
func (b *blobReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for b.off < b.size {
		n := int(b.off / ChunkBytes)
		c, err := b.s.chunk(b.ctx, b.sha, n)
		if err != nil {
			return total, err
		}
		start := b.off - int64(n)*ChunkBytes
		if start >= int64(len(c)) {
			return total, fmt.Errorf("blob %s: chunk %d holds %d bytes, want more", b.sha, n, len(c))
		}
		m, err := w.Write(c[start:])
		b.off += int64(m)
		total += int64(m)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (b *blobReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += b.off
	case io.SeekEnd:
		offset += b.size
	default:
		return 0, errors.New("blobReader.Seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("blobReader.Seek: negative position")
	}
	b.off = offset
	return offset, nil
}

// chunk returns chunk n of blob sha, from the cache or the projection.
func (s *Service) chunk(ctx context.Context, sha string, n int) ([]byte, error) {
	k := chunkKey{sha, n}
	if c, ok := s.cache.get(k); ok {
		return c, nil
	}
	var c []byte
	_, err := s.k.Projections().Read(ctx, projectionName, projections.ReadOptions{}, func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT data FROM chunks WHERE sha = ? AND n = ?`, sha, n).Scan(&c)
	})
	if err != nil {
		return nil, fmt.Errorf("blob %s chunk %d: %w", sha, n, err)
	}
	s.cache.put(k, c)
	return c, nil
}

type chunkKey struct {
	sha string
	n   int
}

// chunkCache is a least-recently-used cache of chunks bounded in bytes.
// Blobs never change, so an entry is never stale.
type chunkCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	order *list.List // front: most recently used
	items map[chunkKey]*list.Element
}

type cacheEntry struct {
	key  chunkKey
	data []byte
}

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{max: max, order: list.New(), items: map[chunkKey]*list.Element{}}
}

func (c *chunkCache) get(k chunkKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).data, true
}

func (c *chunkCache) put(k chunkKey, data []byte) {
	size := int64(len(data)) + 64
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.max {
		return
	}
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.order.PushFront(&cacheEntry{key: k, data: data})
	c.bytes += size
	for c.bytes > c.max {
		e := c.order.Back()
		ent := e.Value.(*cacheEntry)
		c.order.Remove(e)
		delete(c.items, ent.key)
		c.bytes -= int64(len(ent.data)) + 64
	}
}

// size is the bytes the cache holds (for tests).
func (c *chunkCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}
