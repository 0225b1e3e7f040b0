package vfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/andybalholm/brotli"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/projections"
)

// MissingError refuses a manifest that names blobs not stored: upload
// them (PutBlob), then record the deploy again. It wraps
// eventlog.ErrInvalid.
type MissingError struct {
	Hashes []string // the blobs missing, each once, in manifest order
}

func (e *MissingError) Error() string {
	show := e.Hashes
	if len(show) > 10 {
		show = show[:10]
	}
	more := ""
	if len(e.Hashes) > len(show) {
		more = fmt.Sprintf(" and %d more", len(e.Hashes)-len(show))
	}
	return fmt.Sprintf("%v: the manifest names %d blob(s) not stored: %s%s; upload them, then deploy again", eventlog.ErrInvalid, len(e.Hashes), strings.Join(show, ", "), more)
}

func (e *MissingError) Unwrap() error { return eventlog.ErrInvalid }

// Deploy is a recorded deploy of a site, as Live and History report it.
type Deploy struct {
	ID       string    `json:"id"`
	Site     string    `json:"site"`
	Seq      uint64    `json:"seq"` // the log position of its record
	At       time.Time `json:"at"`  // when it was recorded
	Files    int       `json:"files"`
	Bytes    int64     `json:"bytes"` // the files' sizes, variants not counted
	Fallback string    `json:"fallback,omitempty"`
	NotFound string    `json:"not_found,omitempty"`
	Live     bool      `json:"live"`
}

// ValidatePath checks a manifest path: relative, clean, "/"-separated,
// valid UTF-8 without control characters or backslashes, no "." or ".."
// segment, at most MaxPathBytes. Errors wrap eventlog.ErrInvalid.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return kernel.Invalidf("empty path")
	case len(p) > MaxPathBytes:
		return kernel.Invalidf("path %q: %d bytes, at most %d", clip(p), len(p), MaxPathBytes)
	case !utf8.ValidString(p):
		return kernel.Invalidf("path %q is not UTF-8", clip(p))
	case strings.HasPrefix(p, "/"), strings.HasSuffix(p, "/"):
		return kernel.Invalidf("path %q: paths are relative to the site's root and name files (no leading or trailing /)", clip(p))
	case strings.ContainsRune(p, '\\'):
		return kernel.Invalidf("path %q holds a backslash: separate folders with /", clip(p))
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return kernel.Invalidf("path %q holds a control character", clip(p))
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return kernel.Invalidf("path %q is not clean: no empty, . or .. segments", clip(p))
		}
	}
	return nil
}

// check validates a manifest from a caller.
func (s *Service) check(site string, m *Manifest) error {
	if !ValidSite(site) {
		return kernel.Invalidf("site %q: use [a-z0-9][a-z0-9-]{0,62}", clip(site))
	}
	if len(m.Files) == 0 {
		return kernel.Invalidf("the manifest has no files")
	}
	if len(m.Files) > s.cfg.MaxFiles {
		return kernel.Invalidf("the manifest has %d files: a deploy has at most %d (Config.MaxFiles)", len(m.Files), s.cfg.MaxFiles)
	}
	for p, f := range m.Files {
		if err := ValidatePath(p); err != nil {
			return err
		}
		if !ValidHash(f.SHA256) {
			return kernel.Invalidf("file %q: sha256 %q: want 64 lower-case hex digits", p, clip(f.SHA256))
		}
		if f.Size < 0 || f.Size > s.cfg.MaxBlobBytes {
			return kernel.Invalidf("file %q: size %d: files are 0 to %d bytes", p, f.Size, s.cfg.MaxBlobBytes)
		}
		if f.Gzip != nil || f.Br != nil {
			return kernel.Invalidf("file %q: the server makes the compressed variants; leave gzip and br out", p)
		}
		if f.Type != "" {
			if len(f.Type) > MaxTypeBytes {
				return kernel.Invalidf("file %q: content type of %d bytes, at most %d", p, len(f.Type), MaxTypeBytes)
			}
			if _, _, err := mime.ParseMediaType(f.Type); err != nil || strings.ContainsAny(f.Type, "\r\n") {
				return kernel.Invalidf("file %q: content type %q is not a media type", p, clip(f.Type))
			}
		}
	}
	for _, x := range []struct{ name, p string }{{"fallback", m.Fallback}, {"not_found", m.NotFound}} {
		if x.p == "" {
			continue
		}
		if _, ok := m.Files[x.p]; !ok {
			return kernel.Invalidf("%s %q is not a file of the manifest", x.name, clip(x.p))
		}
	}
	return nil
}

// RecordDeploy records a deploy of site: m's files, every blob of which
// must be stored already (else a *MissingError listing them, and nothing
// is recorded). The server fills each file's content type when empty and
// makes gzip and brotli variants of compressible files. The deploy is
// not live until Activate; Deploy does both at once. It returns the
// deploy's id (a ULID) once the vfs projection has folded it.
func (s *Service) RecordDeploy(ctx context.Context, site string, m Manifest) (string, error) {
	d, err := s.prepare(ctx, site, m)
	if err != nil {
		return "", err
	}
	return d.Deploy, s.append(ctx, []eventlog.Event{d.event()})
}

// Deploy records a deploy of site, as RecordDeploy, and makes it live in
// the same atomic append.
func (s *Service) Deploy(ctx context.Context, site string, m Manifest) (string, error) {
	d, err := s.prepare(ctx, site, m)
	if err != nil {
		return "", err
	}
	act, _ := json.Marshal(DeployActivated{Site: site, Deploy: d.Deploy})
	return d.Deploy, s.append(ctx, []eventlog.Event{d.event(), {Stream: SiteStream(site), Type: TypeDeployActivated, Data: act}})
}

func (d *DeployRecorded) event() eventlog.Event {
	b, _ := json.Marshal(d)
	e := eventlog.Event{Stream: SiteStream(d.Site), Type: TypeDeployRecorded, Data: b}
	if d.ManifestBlob != nil {
		e.Schema = 2 // version 1 stays the form of every deploy that fits
	}
	return e
}

// prepare checks m and completes it into the deploy's record.
func (s *Service) prepare(ctx context.Context, site string, m Manifest) (*DeployRecorded, error) {
	if err := s.check(site, &m); err != nil {
		return nil, err
	}
	store, err := s.blobs(ctx)
	if err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(m.Files))
	for p := range m.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var missing []string
	seen := map[string]bool{}
	for _, p := range paths {
		f := m.Files[p]
		if seen[f.SHA256] {
			continue
		}
		seen[f.SHA256] = true
		size, ok, err := s.stored(ctx, store, f.SHA256)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, f.SHA256)
		} else if size != f.Size {
			return nil, kernel.Invalidf("file %q: size %d, but blob %s holds %d bytes", p, f.Size, f.SHA256, size)
		}
	}
	if len(missing) > 0 {
		return nil, &MissingError{Hashes: missing}
	}
	known, err := s.knownVariants(ctx, m.Files)
	if err != nil {
		return nil, err
	}
	files := make(map[string]File, len(m.Files))
	var todo []File // distinct contents to compress
	for _, p := range paths {
		f := m.Files[p]
		if f.Type == "" {
			if f.Type, err = s.contentType(ctx, p, f); err != nil {
				return nil, err
			}
		}
		if _, ok := known[f.SHA256]; !ok && compressible(f.Type) && f.Size >= minCompressBytes && f.Size <= s.cfg.MaxCompressBytes {
			known[f.SHA256] = [2]*Variant{}
			todo = append(todo, f)
		}
		files[p] = f
	}
	if err := s.compressAll(ctx, todo, known); err != nil {
		return nil, err
	}
	for p, f := range files {
		v := known[f.SHA256]
		f.Gzip, f.Br = v[0], v[1]
		files[p] = f
	}
	d := &DeployRecorded{Site: site, Deploy: s.k.Log().NewID(), Manifest: Manifest{Files: files, Fallback: m.Fallback, NotFound: m.NotFound}}
	if b, _ := json.Marshal(d); len(b) > MaxManifestBytes {
		// Too large for one event: the manifest becomes a blob, stored
		// (and synced below) before the event that names it.
		mb, _ := json.Marshal(d.Manifest)
		if max := s.cfg.MaxManifestBlobBytes; len(mb) > max {
			return nil, tooLarge(int64(max), "the deploy's manifest is %d bytes encoded, at most %d: deploy fewer files or shorter paths", len(mb), max)
		}
		h := Hash(mb)
		if err := s.putBytes(ctx, h, mb); err != nil {
			return nil, err
		}
		d.Manifest = Manifest{Files: map[string]File{}}
		d.ManifestBlob = &Variant{SHA256: h, Size: int64(len(mb))}
	}
	// Every blob named, also those an earlier process stored, is durable
	// before the event that names them is appended.
	if err := s.k.Log().SyncObjectStore(Bucket); err != nil {
		return nil, fmt.Errorf("%w: make the blobs durable: %v", eventlog.ErrUnavailable, err)
	}
	return d, nil
}

// append appends events to the service's category and waits until the
// vfs projection has folded them, so that a deploy or activation is
// visible to ServeSite, Live and History when it returns.
func (s *Service) append(ctx context.Context, events []eventlog.Event) error {
	res, err := s.w.Append(ctx, events)
	if err != nil {
		return err
	}
	_, err = s.k.Projections().Read(ctx, projectionName, projections.ReadOptions{MinSeq: res.LastSeq, MaxWait: time.Minute},
		func(context.Context, *sql.Tx) error { return nil })
	return err
}

// Activate makes deploy id of site live: every request is answered from
// it once Activate returns. Rollback is activating an earlier deploy.
// Errors: ErrNotFound when site has no such deploy.
func (s *Service) Activate(ctx context.Context, site, id string) error {
	if !ValidSite(site) {
		return kernel.Invalidf("site %q: use [a-z0-9][a-z0-9-]{0,62}", clip(site))
	}
	var found bool
	if err := s.read(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM deploys WHERE id = ? AND site = ?)`, id, site).Scan(&found)
	}); err != nil {
		return err
	}
	if !found {
		return kernel.NotFoundf("site %s has no deploy %q", site, clip(id))
	}
	b, _ := json.Marshal(DeployActivated{Site: site, Deploy: id})
	return s.append(ctx, []eventlog.Event{{Stream: SiteStream(site), Type: TypeDeployActivated, Data: b}})
}

// Delete makes site serve nothing (a tombstone event): its deploys stay
// in the log and in History, and activating one brings the site back.
// Errors: ErrNotFound for a site never deployed.
func (s *Service) Delete(ctx context.Context, site string) error {
	if !ValidSite(site) {
		return kernel.Invalidf("site %q: use [a-z0-9][a-z0-9-]{0,62}", clip(site))
	}
	var found bool
	if err := s.read(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT EXISTS(SELECT 1 FROM sites WHERE site = ?)`, site).Scan(&found)
	}); err != nil {
		return err
	}
	if !found {
		return kernel.NotFoundf("no site %s", site)
	}
	b, _ := json.Marshal(SiteDeleted{Site: site})
	return s.append(ctx, []eventlog.Event{{Stream: SiteStream(site), Type: TypeSiteDeleted, Data: b}})
}

// Live returns the deploy serving site. Errors: ErrNotFound when none
// does (never deployed, nothing activated, or deleted).
func (s *Service) Live(ctx context.Context, site string) (Deploy, error) {
	ds, err := s.deploys(ctx, site, true)
	if err != nil {
		return Deploy{}, err
	}
	if len(ds) == 0 {
		return Deploy{}, kernel.NotFoundf("site %s has no live deploy", site)
	}
	return ds[0], nil
}

// History returns site's deploys, newest first, the live one marked.
// Errors: ErrNotFound for a site never deployed.
func (s *Service) History(ctx context.Context, site string) ([]Deploy, error) {
	ds, err := s.deploys(ctx, site, false)
	if err == nil && len(ds) == 0 {
		err = kernel.NotFoundf("site %s has no deploys", site)
	}
	return ds, err
}

func (s *Service) deploys(ctx context.Context, site string, liveOnly bool) ([]Deploy, error) {
	if !ValidSite(site) {
		return nil, kernel.Invalidf("site %q: use [a-z0-9][a-z0-9-]{0,62}", clip(site))
	}
	var out []Deploy
	err := s.read(ctx, true, func(ctx context.Context, tx *sql.Tx) error {
		q := `SELECT d.id, d.seq, d.at, d.files, d.bytes, d.fallback, d.not_found, COALESCE(s.live = d.id, 0)
			FROM deploys d LEFT JOIN sites s ON s.site = d.site WHERE d.site = ?`
		if liveOnly {
			q += ` AND s.live = d.id`
		}
		rows, err := tx.QueryContext(ctx, q+` ORDER BY d.seq DESC`, site)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d := Deploy{Site: site}
			var at string
			if err := rows.Scan(&d.ID, &d.Seq, &at, &d.Files, &d.Bytes, &d.Fallback, &d.NotFound, &d.Live); err != nil {
				return err
			}
			d.At, _ = time.Parse(time.RFC3339Nano, at)
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// read runs fn in one read transaction of the vfs projection; fresh
// waits until it has folded everything the log holds now.
func (s *Service) read(ctx context.Context, fresh bool, fn func(context.Context, *sql.Tx) error) error {
	opts := projections.ReadOptions{}
	if fresh {
		last, err := s.k.Log().LastSeq(ctx)
		if err != nil {
			return err
		}
		opts.MinSeq = last
	}
	_, err := s.k.Projections().Read(ctx, projectionName, opts, fn)
	return err
}

// knownVariants returns the variants already made for the manifest's
// blobs by earlier deploys, so a redeploy compresses only new content.
func (s *Service) knownVariants(ctx context.Context, files map[string]File) (map[string][2]*Variant, error) {
	out := map[string][2]*Variant{}
	err := s.read(ctx, false, func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `SELECT gzip, gzip_size, br, br_size FROM files WHERE sha = ? LIMIT 1`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, f := range files {
			if _, ok := out[f.SHA256]; ok || !compressibleName(f) {
				continue
			}
			var gz, br sql.NullString
			var gzn, brn sql.NullInt64
			err := st.QueryRowContext(ctx, f.SHA256).Scan(&gz, &gzn, &br, &brn)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			var v [2]*Variant
			if gz.Valid {
				v[0] = &Variant{SHA256: gz.String, Size: gzn.Int64}
			}
			if br.Valid {
				v[1] = &Variant{SHA256: br.String, Size: brn.Int64}
			}
			out[f.SHA256] = v
		}
		return nil
	})
	return out, err
}

// compressibleName: a file worth looking up variants for.
func compressibleName(f File) bool { return f.Size >= minCompressBytes }

// minCompressBytes: smaller files are sent as they are.
const minCompressBytes = 256

// compress makes f's gzip and brotli variants, keeping each only when it
// is at most 95% of the size (smaller enough to be worth a decode).
func (s *Service) compress(ctx context.Context, f File) (gz, br *Variant, err error) {
	raw, err := s.readBlob(ctx, f.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read blob %s: %v", eventlog.ErrUnavailable, f.SHA256, err)
	}
	worth := func(n int) bool { return int64(n) < f.Size-f.Size/20 }
	// Writers are reused: making one costs more than compressing a
	// small page (brotli's allocates megabytes).
	var zb bytes.Buffer
	zw, _ := s.gzipWriters.Get().(*gzip.Writer)
	if zw == nil {
		zw, _ = gzip.NewWriterLevel(&zb, gzip.BestCompression)
	} else {
		zw.Reset(&zb)
	}
	zw.Write(raw)
	zw.Close()
	s.gzipWriters.Put(zw)
	if worth(zb.Len()) {
		h := Hash(zb.Bytes())
		if err := s.putBytes(ctx, h, zb.Bytes()); err != nil {
			return nil, nil, err
		}
		gz = &Variant{SHA256: h, Size: int64(zb.Len())}
	}
	var bb bytes.Buffer
	bw, _ := s.brotliWriters.Get().(*brotli.Writer)
	if bw == nil {
		bw = brotli.NewWriterLevel(&bb, s.cfg.BrotliQuality)
	} else {
		bw.Reset(&bb)
	}
	bw.Write(raw)
	bw.Close()
	s.brotliWriters.Put(bw)
	if worth(bb.Len()) {
		h := Hash(bb.Bytes())
		if err := s.putBytes(ctx, h, bb.Bytes()); err != nil {
			return nil, nil, err
		}
		br = &Variant{SHA256: h, Size: int64(bb.Len())}
	}
	return gz, br, nil
}

// compressAll compresses files on every core, into known.
func (s *Service) compressAll(ctx context.Context, files []File, known map[string][2]*Variant) error {
	var mu sync.Mutex
	var first error
	next := make(chan File)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				gz, br, err := s.compress(ctx, f)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				known[f.SHA256] = [2]*Variant{gz, br}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- f
	}
	close(next)
	wg.Wait()
	return first
}

// contentType chooses a file's type: by extension, else by its content.
func (s *Service) contentType(ctx context.Context, p string, f File) (string, error) {
	ext := strings.ToLower(path.Ext(p))
	if t, ok := types[ext]; ok {
		return t, nil
	}
	if t := mime.TypeByExtension(ext); t != "" && ext != "" {
		return t, nil
	}
	r, _, err := s.openBlob(ctx, f.SHA256)
	if err != nil {
		return "", fmt.Errorf("%w: read blob %s: %v", eventlog.ErrUnavailable, f.SHA256, err)
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("%w: read blob %s: %v", eventlog.ErrUnavailable, f.SHA256, err)
	}
	return http.DetectContentType(head[:n]), nil
}

// types are the content types of common web files, the same on every
// machine (mime.TypeByExtension also reads the system's tables).
var types = map[string]string{
	".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
	".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
	".json": "application/json", ".map": "application/json", ".webmanifest": "application/manifest+json",
	".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8", ".csv": "text/csv; charset=utf-8",
	".xml": "application/xml", ".rss": "application/rss+xml", ".atom": "application/atom+xml",
	".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
	".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon",
	".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
	".wasm": "application/wasm", ".pdf": "application/pdf", ".zip": "application/zip",
	".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wav": "audio/wav",
}

// compressible reports whether content of type t shrinks with gzip.
func compressible(t string) bool {
	base, _, _ := strings.Cut(t, ";")
	base = strings.TrimSpace(strings.ToLower(base))
	if strings.HasPrefix(base, "text/") || strings.HasSuffix(base, "+json") || strings.HasSuffix(base, "+xml") {
		return true
	}
	switch base {
	case "application/javascript", "application/x-javascript", "application/json", "application/xml",
		"application/wasm", "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "font/ttf", "font/otf",
		"application/vnd.ms-fontobject":
		return true
	}
	return false
}
