package vfs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/eventlog"
)

// A manifest naming a blob that is not stored is refused with the
// missing hashes, and nothing is appended.
func TestRecordDeployMissingBlob(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	m := e.manifest(t, map[string]string{"index.html": "<h1>hi</h1>"})
	absent := Hash([]byte("never uploaded"))
	m.Files["app.js"] = File{SHA256: absent, Size: 14}
	before, _ := e.k.Log().LastSeq(ctx)
	_, err := e.s.RecordDeploy(ctx, "blog", m)
	var me *MissingError
	if !errors.As(err, &me) || !errors.Is(err, eventlog.ErrInvalid) || !slices.Equal(me.Hashes, []string{absent}) {
		t.Fatalf("deploy naming a missing blob: %v, want a MissingError listing %s", err, absent)
	}
	if !strings.Contains(err.Error(), absent) {
		t.Errorf("the error does not name the missing hash: %v", err)
	}
	if after, _ := e.k.Log().LastSeq(ctx); after != before {
		t.Fatalf("the log grew from %d to %d", before, after)
	}
	// Once uploaded, the same manifest deploys.
	e.put(t, "never uploaded")
	if _, err := e.s.RecordDeploy(ctx, "blog", m); err != nil {
		t.Fatal(err)
	}
}

// Bad manifests are refused at the API, with nothing appended.
func TestRecordDeployRefusesBadManifests(t *testing.T) {
	e := start(t, t.TempDir(), Config{MaxFiles: 3})
	big := start(t, t.TempDir(), Config{MaxManifestBlobBytes: 1 << 20})
	ctx := context.Background()
	h := e.put(t, "x")
	ok := File{SHA256: h, Size: 1}
	bad := map[string]Manifest{}
	for _, p := range []string{"", "/index.html", "a/", "../x", "a/../b", "./a", "a/./b", "a//b", "a\\b", "a\x00b", "a\nb",
		strings.Repeat("a", MaxPathBytes+1), "\xff.html"} {
		bad["path "+p] = Manifest{Files: map[string]File{p: ok}}
	}
	bad["no files"] = Manifest{}
	bad["too many files"] = Manifest{Files: map[string]File{"a": ok, "b": ok, "c": ok, "d": ok}}
	bad["bad hash"] = Manifest{Files: map[string]File{"a": {SHA256: "abc", Size: 1}}}
	bad["wrong size"] = Manifest{Files: map[string]File{"a": {SHA256: h, Size: 2}}}
	bad["negative size"] = Manifest{Files: map[string]File{"a": {SHA256: h, Size: -1}}}
	bad["client variant"] = Manifest{Files: map[string]File{"a": {SHA256: h, Size: 1, Gzip: &Variant{SHA256: h, Size: 1}}}}
	bad["bad type"] = Manifest{Files: map[string]File{"a": {SHA256: h, Size: 1, Type: "text/html\r\nX-Evil: 1"}}}
	long := Manifest{Files: map[string]File{}}
	for i := range 3000 {
		long.Files[fmt.Sprintf("%0400d", i)] = ok
	}
	bad["fallback not a file"] = Manifest{Files: map[string]File{"a": ok}, Fallback: "index.html"}
	bad["not_found not a file"] = Manifest{Files: map[string]File{"a": ok}, NotFound: "404.html"}
	before, _ := e.k.Log().LastSeq(ctx)
	big.put(t, "x")
	bigBefore, _ := big.k.Log().LastSeq(ctx)
	var mbe *http.MaxBytesError
	if _, err := big.s.RecordDeploy(ctx, "blog", long); !errors.Is(err, eventlog.ErrInvalid) || !errors.As(err, &mbe) || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("a manifest over Config.MaxManifestBlobBytes: %v", err)
	}
	if after, _ := big.k.Log().LastSeq(ctx); after != bigBefore {
		t.Fatalf("the log grew from %d to %d", bigBefore, after)
	}
	for name, m := range bad {
		if _, err := e.s.RecordDeploy(ctx, "blog", m); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	for _, site := range []string{"", "Blog", "-x", "a.b", strings.Repeat("a", 64)} {
		if _, err := e.s.RecordDeploy(ctx, site, Manifest{Files: map[string]File{"a": ok}}); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("site %q: %v, want ErrInvalid", site, err)
		}
	}
	if after, _ := e.k.Log().LastSeq(ctx); after != before {
		t.Fatalf("the log grew from %d to %d", before, after)
	}
	// The vfs category is the service's own: an append around it is
	// refused.
	_, err := e.k.Append(ctx, []eventlog.Event{{Stream: SiteStream("blog"), Type: TypeSiteDeleted, Data: []byte(`{"site":"blog"}`)}})
	if !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("append into the vfs category around the service: %v, want ErrInvalid", err)
	}
}

// Deploys, activation (rollback), deletion and history.
func TestDeployActivateRollbackDelete(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	v1 := e.deploy(t, "blog", e.manifest(t, map[string]string{"index.html": "v1"}))
	v2, err := e.s.RecordDeploy(ctx, "blog", e.manifest(t, map[string]string{"index.html": "v2", "extra.txt": "more"}))
	if err != nil {
		t.Fatal(err)
	}
	if v1 == v2 || len(v2) != 26 {
		t.Fatalf("deploy ids %q, %q: want distinct ULIDs", v1, v2)
	}
	// Recorded is not live.
	if _, body := e.get(t, "GET", "/", nil); body != "v1" {
		t.Fatalf("after recording v2: %q, want v1", body)
	}
	if err := e.s.Activate(ctx, "blog", v2); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get(t, "GET", "/", nil); body != "v2" {
		t.Fatalf("after activating v2: %q", body)
	}
	live, err := e.s.Live(ctx, "blog")
	if err != nil || live.ID != v2 || live.Files != 2 || live.Bytes != 6 {
		t.Fatalf("Live: %+v, %v", live, err)
	}
	hist, err := e.s.History(ctx, "blog")
	if err != nil || len(hist) != 2 || hist[0].ID != v2 || !hist[0].Live || hist[1].ID != v1 || hist[1].Live {
		t.Fatalf("History: %+v, %v", hist, err)
	}
	// Rollback.
	if err := e.s.Activate(ctx, "blog", v1); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get(t, "GET", "/", nil); body != "v1" {
		t.Fatalf("after rollback: %q", body)
	}
	if err := e.s.Activate(ctx, "blog", "01HZZZZZZZZZZZZZZZZZZZZZZZ"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("activate an unknown deploy: %v, want ErrNotFound", err)
	}
	other := e.deploy(t, "other", e.manifest(t, map[string]string{"index.html": "other"}))
	if err := e.s.Activate(ctx, "blog", other); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("activate another site's deploy: %v, want ErrNotFound", err)
	}
	// Delete is a tombstone: nothing served, history kept, activation
	// brings the site back.
	if err := e.s.Delete(ctx, "blog"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.get(t, "GET", "/", nil); resp.StatusCode != 404 {
		t.Fatalf("deleted site: %d", resp.StatusCode)
	}
	if _, err := e.s.Live(ctx, "blog"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("Live of a deleted site: %v", err)
	}
	if hist, err := e.s.History(ctx, "blog"); err != nil || len(hist) != 2 || hist[0].Live || hist[1].Live {
		t.Fatalf("History after delete: %+v, %v", hist, err)
	}
	if err := e.s.Delete(ctx, "nosuch"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("delete an unknown site: %v", err)
	}
	if _, err := e.s.History(ctx, "nosuch"); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("history of an unknown site: %v", err)
	}
	if err := e.s.Activate(ctx, "blog", v2); err != nil {
		t.Fatal(err)
	}
	if _, body := e.get(t, "GET", "/", nil); body != "v2" {
		t.Fatalf("after undelete: %q", body)
	}
}

// Content types are chosen at deploy, and compressible files get gzip
// and brotli variants when smaller; a redeploy reuses them.
func TestDeployTypesAndVariants(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	ctx := context.Background()
	css := strings.Repeat("body { color: red; }\n", 100)
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x00", 600)
	files := map[string]string{
		"index.html": "<!doctype html>" + strings.Repeat("<p>hello</p>", 100),
		"style.css":  css,
		"logo.png":   png,
		"tiny.js":    "x()",
		"noext":      "<html><body>sniffed</body></html>",
	}
	m := e.manifest(t, files)
	m.Files["custom.dat"] = File{SHA256: e.put(t, "data"), Size: 4, Type: "application/x-custom"}
	id := e.deploy(t, "blog", m)
	got := e.files(t, id)
	want := map[string]string{
		"index.html": "text/html; charset=utf-8", "style.css": "text/css; charset=utf-8", "logo.png": "image/png",
		"tiny.js": "text/javascript; charset=utf-8", "noext": "text/html; charset=utf-8", "custom.dat": "application/x-custom",
	}
	for p, typ := range want {
		if got[p].Type != typ {
			t.Errorf("%s: type %q, want %q", p, got[p].Type, typ)
		}
	}
	for _, p := range []string{"index.html", "style.css"} {
		if got[p].Gzip == nil || got[p].Br == nil || got[p].Gzip.Size >= got[p].Size || got[p].Br.Size >= got[p].Size {
			t.Errorf("%s: variants %+v %+v, want both, smaller than %d", p, got[p].Gzip, got[p].Br, got[p].Size)
		}
	}
	for _, p := range []string{"logo.png", "tiny.js", "custom.dat"} {
		if got[p].Gzip != nil || got[p].Br != nil {
			t.Errorf("%s: has variants", p)
		}
	}
	// The variants are blobs of their own, stored.
	miss, err := e.s.Missing(ctx, []string{got["style.css"].Gzip.SHA256, got["style.css"].Br.SHA256})
	if err != nil || len(miss) != 0 {
		t.Fatalf("variants missing: %v %v", miss, err)
	}
	// A redeploy of the same content names the same variants.
	id2 := e.deploy(t, "blog", e.manifest(t, files))
	if g2 := e.files(t, id2); *g2["style.css"].Br != *got["style.css"].Br || *g2["style.css"].Gzip != *got["style.css"].Gzip {
		t.Fatalf("redeploy variants differ")
	}
}
