package vfs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/fazt-sh/fazt/eventlog"
)

// lastRecorded returns the newest deploy_recorded event of the log.
func (e *env) lastRecorded(t *testing.T) (eventlog.Event, DeployRecorded) {
	t.Helper()
	var ev eventlog.Event
	_, err := e.k.Log().ReadEach(context.Background(), 0, eventlog.Filter{Types: []string{TypeDeployRecorded}}, func(x eventlog.Event) bool {
		ev = x
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	var d DeployRecorded
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	return ev, d
}

// A deploy whose manifest does not fit in one event stores the manifest
// as a blob and names it (version 2); it serves, and survives a rebuild
// and a restart like any deploy. One that fits stays version 1.
func TestDeployManifestTooLargeForOneEvent(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, Config{})
	ctx := context.Background()

	small := e.deploy(t, "blog", e.manifest(t, map[string]string{"index.html": "<h1>small</h1>"}))
	if ev, d := e.lastRecorded(t); ev.Schema > 1 || d.ManifestBlob != nil || d.Deploy != small {
		t.Fatalf("a small deploy: schema %d, manifest blob %v, want version 1 with the files inline", ev.Schema, d.ManifestBlob)
	}

	// 4,000 HTML paths over 8 contents: the manifest (with the
	// compressed variants the server adds) is over 1 MiB.
	page := func(i int) string {
		return fmt.Sprintf("<html><body><h1>page %d</h1>%s</body></html>", i, strings.Repeat("all work and no play ", 40))
	}
	contents := map[string]string{}
	for i := range 8 {
		contents[fmt.Sprintf("c%d.html", i)] = page(i)
	}
	base := e.manifest(t, contents)
	m := Manifest{Files: map[string]File{}, NotFound: "404.html"}
	want := map[string]string{}
	for i := range 4000 {
		p := fmt.Sprintf("section-%02d/page-%04d.html", i%40, i)
		c := fmt.Sprintf("c%d.html", i%8)
		m.Files[p], want[p] = base.Files[c], contents[c]
	}
	m.Files["404.html"], want["404.html"] = base.Files["c0.html"], contents["c0.html"]
	id := e.deploy(t, "blog", m)

	ev, d := e.lastRecorded(t)
	if ev.Schema != 2 || d.ManifestBlob == nil || len(d.Files) != 0 || d.Deploy != id {
		t.Fatalf("a large deploy: schema %d, manifest blob %v, %d files inline, want version 2 naming a blob", ev.Schema, d.ManifestBlob, len(d.Files))
	}
	if d.ManifestBlob.Size <= MaxManifestBytes {
		t.Fatalf("the manifest blob is %d bytes: the test meant it to be over %d", d.ManifestBlob.Size, MaxManifestBytes)
	}
	files := e.files(t, id)
	if len(files) != len(want) {
		t.Fatalf("the manifest blob holds %d files, want %d", len(files), len(want))
	}
	for p, f := range files {
		if f.Type != "text/html; charset=utf-8" || f.Br == nil || f.Gzip == nil {
			t.Fatalf("%s: %+v: want its type and both variants", p, f)
		}
	}

	check := func(when string) {
		t.Helper()
		for _, p := range []string{"section-00/page-0000.html", "section-17/page-3977.html", "section-39/page-3999.html"} {
			if _, body := e.get(t, "GET", "/"+p, nil); body != want[p] {
				t.Fatalf("%s: GET /%s: %q", when, p, body)
			}
			resp, body := e.get(t, "GET", "/"+p, map[string]string{"Accept-Encoding": "br"})
			raw, err := io.ReadAll(brotli.NewReader(bytes.NewReader([]byte(body))))
			if resp.Header.Get("Content-Encoding") != "br" || err != nil || string(raw) != want[p] {
				t.Fatalf("%s: GET /%s as br: %q, %v", when, p, resp.Header.Get("Content-Encoding"), err)
			}
		}
		if resp, body := e.get(t, "GET", "/nope", nil); resp.StatusCode != 404 || body != want["404.html"] {
			t.Fatalf("%s: GET /nope: %d", when, resp.StatusCode)
		}
		live, err := e.s.Live(ctx, "blog")
		if err != nil || live.ID != id || live.Files != len(want) || live.NotFound != "404.html" {
			t.Fatalf("%s: Live: %+v, %v", when, live, err)
		}
	}
	check("deployed")
	if err := e.k.Projections().Rebuild(ctx, projectionName); err != nil {
		t.Fatal(err)
	}
	check("after a rebuild")
	e.close(t)
	e = start(t, dir, Config{})
	check("after a restart")

	// A redeploy with one file changed uploads one blob: the large
	// manifest names what is stored already.
	changed := page(99)
	m.Files["section-00/page-0000.html"] = File{SHA256: Hash([]byte(changed)), Size: int64(len(changed))}
	var hashes []string
	for _, f := range m.Files {
		hashes = append(hashes, f.SHA256)
	}
	if miss, err := e.s.Missing(ctx, hashes); err != nil || len(miss) != 1 {
		t.Fatalf("Missing for a one-file change: %v, %v, want one hash", miss, err)
	}
	e.put(t, changed)
	want["section-00/page-0000.html"] = changed
	id = e.deploy(t, "blog", m)
	check("redeployed")
}

// The fold checks a manifest stored as a blob, which no schema checked
// on append: a blob that is not a manifest, one whose bytes do not match
// its name, or one naming a bad path halts the projection at that event,
// saying which blob; nothing is served from it.
func TestManifestBlobIsChecked(t *testing.T) {
	cases := map[string]func(t *testing.T, e *env) Variant{
		"not JSON": func(t *testing.T, e *env) Variant {
			h := e.put(t, "not a manifest")
			return Variant{SHA256: h, Size: 14}
		},
		"bad path": func(t *testing.T, e *env) Variant {
			f := e.put(t, "x")
			b, _ := json.Marshal(Manifest{Files: map[string]File{"../etc/passwd": {SHA256: f, Size: 1, Type: "text/plain"}}})
			return Variant{SHA256: e.put(t, string(b)), Size: int64(len(b))}
		},
		"bytes not matching the name": func(t *testing.T, e *env) Variant {
			f := e.put(t, "x")
			b, _ := json.Marshal(Manifest{Files: map[string]File{"a.txt": {SHA256: f, Size: 1, Type: "text/plain"}}})
			store, err := e.s.blobs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// Written around the service, under another content's name.
			name := Hash([]byte("something else"))
			if _, err := store.PutBytes(context.Background(), name, b); err != nil {
				t.Fatal(err)
			}
			return Variant{SHA256: name, Size: int64(len(b))}
		},
		"over the bound": func(t *testing.T, e *env) Variant {
			return Variant{SHA256: e.put(t, "{}"), Size: MaxManifestBlobBytes + 1}
		},
	}
	for name, make := range cases {
		t.Run(name, func(t *testing.T) {
			e := start(t, t.TempDir(), Config{})
			ctx := context.Background()
			ref := make(t, e)
			id := e.k.Log().NewID()
			b, _ := json.Marshal(DeployRecorded{Site: "blog", Deploy: id, Manifest: Manifest{Files: map[string]File{}}, ManifestBlob: &ref})
			res, err := e.s.w.Append(ctx, []eventlog.Event{{Stream: SiteStream("blog"), Type: TypeDeployRecorded, Schema: 2, Data: b}})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				st := e.k.Projections().Status(projectionName)
				if st.Halted != nil {
					if st.Halted.Seq != res.LastSeq || !strings.Contains(st.Halted.Error, ref.SHA256) {
						t.Fatalf("halted at %d with %q, want at %d naming blob %s", st.Halted.Seq, st.Halted.Error, res.LastSeq, ref.SHA256)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the projection did not halt at the bad manifest: %+v", st)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := e.s.History(ctx, "blog"); err == nil {
				t.Fatal("History answers for a deploy the fold refused")
			}
		})
	}
}
