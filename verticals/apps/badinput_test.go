package apps

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// Every route answers bad input with a clear 4xx and writes nothing:
// no event, no blob, the live deploy unchanged.
func TestBadInputWritesNothing(t *testing.T) {
	e := start(t, t.TempDir(), func(k *kernel.Kernel) { k.MaxBodyBytes = 64 << 10 }, Config{MaxUploadBytes: 64 << 10})
	live, _ := e.deploy(t, "blog", map[string]string{"index.html": "v1"})
	e.newEvents(t)

	good := map[string]string{"index.html": "v2", "a.css": "a {}"}
	notStored := manifestOf(good) // none of its blobs uploaded
	hash := func(s string) string { return vfs.Hash([]byte(s)) }
	file := func(sha string, size int64) vfs.File { return vfs.File{SHA256: sha, Size: size} }
	manifest := func(files map[string]vfs.File) vfs.Manifest { return vfs.Manifest{Files: files} }
	okFile := file(hash("x"), 1)
	big := strings.Repeat("x", 70<<10)

	cases := []struct {
		name, method, path string
		body               any // a string is sent as is
		status             int
		says               string // in the error message
	}{
		{"bad app name", "POST", ManifestPath("Bad_Name"), manifest(map[string]vfs.File{"a": okFile}), 400, "names are"},
		{"app name too long", "POST", DeploysPath(strings.Repeat("a", 64)), manifest(map[string]vfs.File{"a": okFile}), 400, "names are"},
		{"manifest not JSON", "POST", ManifestPath("blog"), "{", 400, ""},
		{"manifest unknown field", "POST", ManifestPath("blog"), `{"files":{},"extra":1}`, 400, "extra"},
		{"manifest no files", "POST", ManifestPath("blog"), manifest(nil), 400, "no files"},
		{"path with ..", "POST", ManifestPath("blog"), manifest(map[string]vfs.File{"../etc/passwd": okFile}), 400, "not clean"},
		{"absolute path", "POST", ManifestPath("blog"), manifest(map[string]vfs.File{"/index.html": okFile}), 400, "relative"},
		{"backslash", "POST", DeploysPath("blog"), manifest(map[string]vfs.File{`a\b`: okFile}), 400, "backslash"},
		{"NUL in path", "POST", DeploysPath("blog"), manifest(map[string]vfs.File{"a\x00b": okFile}), 400, "control"},
		{"long path", "POST", ManifestPath("blog"), manifest(map[string]vfs.File{strings.Repeat("a", 600): okFile}), 400, "at most"},
		{"bad hash", "POST", ManifestPath("blog"), manifest(map[string]vfs.File{"a": file("ABC", 1)}), 400, "hex"},
		{"negative size", "POST", ManifestPath("blog"), manifest(map[string]vfs.File{"a": file(hash("x"), -1)}), 400, "size"},
		{"variants from the client", "POST", ManifestPath("blog"), manifest(map[string]vfs.File{"a": {SHA256: hash("x"), Size: 1, Gzip: &vfs.Variant{SHA256: hash("y"), Size: 1}}}), 400, "variants"},
		{"fallback not a file", "POST", DeploysPath("blog"), vfs.Manifest{Files: map[string]vfs.File{"a": okFile}, Fallback: "index.html"}, 400, "fallback"},
		{"deploy naming blobs not stored", "POST", DeploysPath("blog"), notStored, 400, "not stored"},
		{"deploy of an unknown app naming blobs not stored", "POST", DeploysPath("newapp"), notStored, 400, "not stored"},
		{"size that is not the blob's", "POST", DeploysPath("blog"), manifest(map[string]vfs.File{"index.html": file(hash("v1"), 5)}), 400, "holds 2 bytes"},
		{"hash mismatch on upload", "PUT", BlobPath("blog", hash("right")), "wrong", 400, "nothing was stored"},
		{"bad hash on upload", "PUT", BlobPath("blog", "xyz"), "x", 400, "SHA-256"},
		{"upload over the body limit", "PUT", BlobPath("blog", hash(big)), big, 413, ""},
		{"manifest over the body limit", "POST", ManifestPath("blog"), `{"files":{"` + big + `":{}}}`, 413, ""},
		{"history of an unknown app", "GET", DeploysPath("nope"), nil, 404, "nope"},
		{"show an unknown app", "GET", AppPath("nope"), nil, 404, "nope"},
		{"rollback of an unknown app", "POST", RollbackPath("nope"), RollbackRequest{}, 404, "nope"},
		{"rollback to an unknown deploy", "POST", RollbackPath("blog"), RollbackRequest{To: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, 404, "no deploy"},
		{"rollback to garbage", "POST", RollbackPath("blog"), RollbackRequest{To: "../x"}, 404, ""},
		{"delete an unknown app", "DELETE", AppPath("nope"), nil, 404, "nope"},
		{"alias remove unknown", "DELETE", AliasesPath("blog") + "/nope", nil, 404, "no alias"},
		{"domain remove unknown", "DELETE", DomainsPath("blog") + "/x.example.com", nil, 404, "no domain"},
		{"domain remove garbage", "DELETE", DomainsPath("blog") + "/x..com", nil, 400, ""},
		{"list with a query", "GET", AppsPath + "?x=1", nil, 400, "x"},
	}
	for _, c := range cases {
		var r resp
		if s, ok := c.body.(string); ok {
			r = e.do(t, c.method, "", c.path, strings.NewReader(s), true)
		} else {
			r = e.api(t, c.method, c.path, c.body)
		}
		if r.status != c.status || !strings.Contains(r.body, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.status, r.body, c.status, c.says)
			continue
		}
		var er kernel.ErrorResponse
		if err := json.Unmarshal([]byte(r.body), &er); err != nil || er.Error.Code == "" || er.Error.Message == "" {
			t.Errorf("%s: %q is not the kernel's JSON error", c.name, r.body)
		}
	}
	wantStatus(t, "no token", e.do(t, "POST", "", ManifestPath("blog"), strings.NewReader("{}"), false), http.StatusUnauthorized)

	if got := e.newEvents(t); len(got) != 0 {
		t.Errorf("bad input appended %v", types(got))
	}
	// No blob was stored: the mismatched and oversized uploads are still
	// missing.
	if miss := e.missing(t, "blog", manifestOf(map[string]string{"a": "right", "b": big})); len(miss) != 2 {
		t.Errorf("missing after refused uploads: %d, want 2 (nothing stored)", len(miss))
	}
	if r := e.site(t, "blog.localhost", "/"); r.body != "v1" {
		t.Errorf("live deploy after bad input: %q, want v1", r.body)
	}
	var h struct{ Deploys []vfs.Deploy }
	json.Unmarshal([]byte(e.api(t, "GET", DeploysPath("blog"), nil).body), &h)
	if len(h.Deploys) != 1 || h.Deploys[0].ID != live {
		t.Errorf("history after bad input: %+v", h.Deploys)
	}
	var list struct{ Apps []App }
	json.Unmarshal([]byte(e.api(t, "GET", AppsPath, nil).body), &list)
	if len(list.Apps) != 1 {
		t.Errorf("apps after bad input: %+v (no app may appear from a refused deploy)", list.Apps)
	}
}

// A deploy stopped after half its uploads leaves nothing visible, and
// running it again uploads only the rest.
func TestInterruptedDeploy(t *testing.T) {
	e := start(t, t.TempDir(), nil, Config{})
	e.deploy(t, "blog", map[string]string{"index.html": "old"})
	e.newEvents(t)
	files := map[string]string{"index.html": "new"}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		files[n+".txt"] = "file " + n
	}
	m := manifestOf(files)
	miss := e.missing(t, "blog", m)
	if len(miss) != 9 {
		t.Fatalf("missing %d, want 9", len(miss))
	}
	slices.Sort(miss)
	half := miss[:4]
	e.upload(t, "blog", files, half)
	// The client stops here. Nothing is visible.
	if got := e.newEvents(t); len(got) != 0 {
		t.Errorf("uploads appended %v", types(got))
	}
	if r := e.site(t, "blog.localhost", "/"); r.body != "old" {
		t.Errorf("during the interrupted deploy: %q, want old", r.body)
	}
	wantStatus(t, "a.txt", e.site(t, "blog.localhost", "/a.txt"), http.StatusNotFound)
	// Run again: only the rest is missing.
	again := e.missing(t, "blog", m)
	slices.Sort(again)
	if !slices.Equal(again, miss[4:]) {
		t.Errorf("missing on the re-run: %v, want the other %d", again, len(miss[4:]))
	}
	e.upload(t, "blog", files, again)
	wantStatus(t, "finalise", e.api(t, "POST", DeploysPath("blog"), m), http.StatusCreated)
	if r := e.site(t, "blog.localhost", "/a.txt"); r.body != "file a" {
		t.Errorf("after the re-run: %q", r.body)
	}
}
