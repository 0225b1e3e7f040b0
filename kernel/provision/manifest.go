package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"aead.dev/minisign"
	"golang.org/x/mod/semver"

	"github.com/fazt-sh/fazt/eventlog"
)

// Names and limits of a release.
const (
	// ManifestName is the manifest's usual file name in a release;
	// its signature is the same name plus SignatureSuffix.
	ManifestName    = "manifest.json"
	SignatureSuffix = ".minisig"
	// Product is the manifest's "product": a key that signs releases of
	// other programs too cannot pass one of them off as Fazt.
	Product = "fazt"
	// MaxManifestBytes bounds a manifest, MaxSignatureBytes its signature
	// and MaxBinaryBytes a release binary, so that a hostile source
	// cannot fill the disk or the memory.
	MaxManifestBytes  = 1 << 20
	MaxSignatureBytes = 4 << 10
	MaxBinaryBytes    = 1 << 30
)

// ErrRefused is matched (errors.Is) by every refusal of a release:
// unsigned, signed by another key, damaged, for another platform, not
// newer; so is eventlog.ErrInvalid. Nothing on disk has changed when one
// is returned.
var ErrRefused = errors.New("release refused")

type refusal struct{ msg string }

func (e *refusal) Error() string { return "release refused: " + e.msg }

func (e *refusal) Is(target error) bool { return target == ErrRefused || target == eventlog.ErrInvalid }

func refusef(format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...)}
}

// Manifest describes a release: its version and, per platform, the
// binary's file name, size and SHA-256. It is signed as the bytes of its
// file (minisign), so its JSON needs no canonical form.
type Manifest struct {
	Product string `json:"product"`
	// Version is the release's semantic version, "v1.2.3".
	Version string `json:"version"`
	// Date is when it was made (informational).
	Date time.Time `json:"date,omitzero"`
	// Platforms maps "GOOS/GOARCH" ("linux/amd64") to its binary.
	Platforms map[string]Binary `json:"platforms"`
}

// Binary is one platform's file of a release.
type Binary struct {
	// File is the binary's file name beside the manifest (a plain name:
	// no directories), fetched relative to where the manifest came from.
	File string `json:"file"`
	// URL, when set, is where to fetch it instead (http or https).
	URL    string `json:"url,omitempty"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var fileRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$`)

// Check reports what is wrong with m, as ErrRefused.
func (m Manifest) Check() error {
	if m.Product != Product {
		return refusef("the manifest is for %q, not %q", m.Product, Product)
	}
	if !semver.IsValid(m.Version) {
		return refusef("the manifest's version %q is not a semantic version like v1.2.3", m.Version)
	}
	if len(m.Platforms) == 0 {
		return refusef("the manifest lists no platform")
	}
	for p, b := range m.Platforms {
		if strings.Count(p, "/") != 1 {
			return refusef("manifest platform %q: want GOOS/GOARCH", p)
		}
		if !fileRE.MatchString(b.File) {
			return refusef("manifest platform %s: file %q: want a plain file name", p, b.File)
		}
		if b.URL != "" {
			u, err := url.Parse(b.URL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return refusef("manifest platform %s: url %q: want an http or https URL", p, b.URL)
			}
		}
		if b.Size <= 0 || b.Size > MaxBinaryBytes {
			return refusef("manifest platform %s: size %d: want 1 to %d bytes", p, b.Size, MaxBinaryBytes)
		}
		if len(b.SHA256) != 64 || strings.ToLower(b.SHA256) != b.SHA256 {
			return refusef("manifest platform %s: sha256 %q: want 64 lower-case hex digits", p, b.SHA256)
		}
		if _, err := hex.DecodeString(b.SHA256); err != nil {
			return refusef("manifest platform %s: sha256 %q: want 64 lower-case hex digits", p, b.SHA256)
		}
	}
	return nil
}

// Platform returns the running platform, "GOOS/GOARCH".
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// For returns the binary for platform, or ErrRefused naming those the
// release has.
func (m Manifest) For(platform string) (Binary, error) {
	b, ok := m.Platforms[platform]
	if !ok {
		have := make([]string, 0, len(m.Platforms))
		for p := range m.Platforms {
			have = append(have, p)
		}
		slices.Sort(have)
		return Binary{}, refusef("release %s has no binary for %s (it has %s)", m.Version, platform, strings.Join(have, ", "))
	}
	return b, nil
}

// Newer returns nil when release is a newer semantic version than
// running, otherwise ErrRefused saying why. A running version that is
// not a semantic version (a development build) cannot be compared.
func Newer(release, running string) error {
	if !semver.IsValid(running) {
		return refusef("the running version %q is not a release version, so whether %s is newer cannot be told; build it with -ldflags \"-X main.version=vX.Y.Z\" or install a release", running, release)
	}
	switch c := semver.Compare(release, running); {
	case c == 0:
		return refusef("release %s is the version already running: nothing to do", release)
	case c < 0:
		return refusef("release %s is older than the running %s: a downgrade is refused (a failed upgrade rolls back by itself)", release, running)
	}
	return nil
}

// ParseKeys reads public keys: each either a minisign public key
// ("RWQ…", base64) or the path of a minisign .pub file. Several may be
// given, separated by commas or white space (a key rotation).
func ParseKeys(spec string) ([]minisign.PublicKey, error) {
	var keys []minisign.PublicKey
	for _, f := range strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		var k minisign.PublicKey
		if err := k.UnmarshalText([]byte(f)); err != nil {
			b, rerr := os.ReadFile(f)
			if rerr != nil {
				return nil, fmt.Errorf("%w: release key %q is neither a minisign public key nor a readable file: %v", eventlog.ErrInvalid, clip(f), err)
			}
			if err := k.UnmarshalText(bytes.TrimSpace(b)); err != nil {
				return nil, fmt.Errorf("%w: release key file %s: %v", eventlog.ErrInvalid, f, err)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// KeyID is a key's ID as minisign prints it.
func KeyID(k minisign.PublicKey) string { return fmt.Sprintf("%016X", k.ID()) }

// Verify checks that sig is a minisign signature of manifest by one of
// keys and that the manifest is well formed, and returns it. Every
// failure is ErrRefused.
func Verify(manifest, sig []byte, keys []minisign.PublicKey) (Manifest, error) {
	if len(keys) == 0 {
		return Manifest{}, refusef("no release key: this binary was built without one; pass --key with the minisign public key of the releases")
	}
	if len(bytes.TrimSpace(sig)) == 0 {
		return Manifest{}, refusef("the manifest is not signed (no %s beside it): unsigned releases are never installed", SignatureSuffix)
	}
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return Manifest{}, refusef("the manifest's signature is not a minisign signature: %v", err)
	}
	ok, known := false, false
	for _, k := range keys {
		if k.ID() == s.KeyID {
			known = true
			ok = ok || minisign.Verify(k, manifest, sig)
		}
	}
	switch {
	case !known:
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = KeyID(k)
		}
		return Manifest{}, refusef("the manifest is signed by key %016X, not by a release key (%s): pass --key if the releases changed keys", s.KeyID, strings.Join(ids, ", "))
	case !ok:
		return Manifest{}, refusef("the manifest's signature does not match its content: it was changed after signing, or damaged")
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(manifest))
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, refusef("the signed manifest is not valid JSON: %v", err)
	}
	return m, m.Check()
}

// Sign returns m as manifest bytes and their minisign signature by key,
// with the product and version as the signature's trusted comment.
func Sign(m Manifest, key minisign.PrivateKey) (manifest, sig []byte, err error) {
	if err := m.Check(); err != nil {
		return nil, nil, err
	}
	manifest, err = json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	manifest = append(manifest, '\n')
	comment := fmt.Sprintf("%s %s manifest, signed %s", m.Product, m.Version, time.Now().UTC().Format(time.RFC3339))
	return manifest, minisign.SignWithComments(key, manifest, comment, "signature from the fazt release key"), nil
}

// Describe hashes the binary at path for a manifest.
func Describe(path string) (Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Binary{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Binary{}, err
	}
	return Binary{File: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Source is where a release comes from: the URL (http, https) or the
// file path of its manifest. Its binaries are beside it.
type Source struct {
	Location string
	// Client fetches http sources (a client with a 10 minute timeout when
	// nil).
	Client *http.Client
}

func (s Source) isURL() bool {
	return strings.HasPrefix(s.Location, "https://") || strings.HasPrefix(s.Location, "http://")
}

// Release is a verified manifest and where it came from.
type Release struct {
	Manifest Manifest
	Source   Source
}

// Fetch reads the manifest and its signature (the manifest's location
// plus SignatureSuffix) and verifies them with keys. Errors: ErrRefused
// for a release that does not verify, eventlog.ErrUnavailable when the
// source cannot be read.
func (s Source) Fetch(ctx context.Context, keys []minisign.PublicKey) (Release, error) {
	manifest, err := s.read(ctx, s.Location, MaxManifestBytes)
	if err != nil {
		return Release{}, err
	}
	sig, err := s.read(ctx, s.signature(), MaxSignatureBytes)
	if errors.Is(err, eventlog.ErrNotFound) {
		sig, err = nil, nil // unsigned: Verify says so
	}
	if err != nil {
		return Release{}, err
	}
	m, err := Verify(manifest, sig, keys)
	if err != nil {
		return Release{}, err
	}
	return Release{Manifest: m, Source: s}, nil
}

// signature is where the manifest's signature is: beside it, its name
// plus SignatureSuffix (in a URL, its path's: a query stays a query).
func (s Source) signature() string {
	if s.isURL() {
		if u, err := url.Parse(s.Location); err == nil {
			u.Path += SignatureSuffix
			u.RawPath = ""
			return u.String()
		}
	}
	return s.Location + SignatureSuffix
}

// Open returns a reader of the binary b of the release.
func (r Release) Open(ctx context.Context, b Binary) (io.ReadCloser, error) {
	loc := b.URL
	switch {
	case loc != "":
	case r.Source.isURL():
		u, err := url.Parse(r.Source.Location)
		if err != nil {
			return nil, err
		}
		u.Path = path.Join(path.Dir(u.Path), b.File)
		u.RawQuery, u.Fragment = "", ""
		loc = u.String()
	default:
		loc = filepath.Join(filepath.Dir(r.Source.Location), b.File)
	}
	return Source{Location: loc, Client: r.Source.Client}.open(ctx, loc)
}

func (s Source) read(ctx context.Context, loc string, limit int64) ([]byte, error) {
	rc, err := s.open(ctx, loc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", eventlog.ErrUnavailable, loc, err)
	}
	if int64(len(b)) > limit {
		return nil, refusef("%s is larger than %d bytes", loc, limit)
	}
	return b, nil
}

func (s Source) open(ctx context.Context, loc string) (io.ReadCloser, error) {
	if !strings.HasPrefix(loc, "https://") && !strings.HasPrefix(loc, "http://") {
		f, err := os.Open(loc)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", eventlog.ErrNotFound, loc)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", eventlog.ErrUnavailable, err)
		}
		return f, nil
	}
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", eventlog.ErrInvalid, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch %s: %v (check the address and the network, then try again)", eventlog.ErrUnavailable, loc, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s: 404 not found", eventlog.ErrNotFound, loc)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, fmt.Errorf("%w: fetch %s: %s", eventlog.ErrUnavailable, loc, resp.Status)
	}
	return resp.Body, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
