package vfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

// The site of the serving tests.
var site = map[string]string{
	"index.html":                "<!doctype html><title>home</title>" + strings.Repeat("<p>welcome</p>", 50),
	"about.html":                "<h1>about</h1>",
	"docs/index.html":           "<h1>docs</h1>",
	"docs/intro.txt":            "0123456789",
	"assets/app.3f2a9c1d.js":    strings.Repeat("console.log('app');\n", 40),
	"assets/index-BdX3k9aZ.css": strings.Repeat("p{margin:0}\n", 40),
	"robots.txt":                "User-agent: *\n",
	"404.html":                  "<h1>no such page</h1>",
	"data.json":                 `{"a":1}`,
}

func TestServeStaticSite(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	m := e.manifest(t, site)
	m.NotFound = "404.html"
	id := e.deploy(t, "blog", m)
	files := e.files(t, id)
	live, err := e.s.Live(context.Background(), "blog")
	if err != nil {
		t.Fatal(err)
	}

	// Paths: index.html for folders, clean URLs, a redirect for a folder
	// named without its slash.
	for path, want := range map[string]string{
		"/": "index.html", "/index.html": "index.html", "/about": "about.html", "/about.html": "about.html",
		"/docs/": "docs/index.html", "/docs/intro.txt": "docs/intro.txt", "/robots.txt": "robots.txt",
	} {
		resp, body := e.get(t, "GET", path, nil)
		if resp.StatusCode != 200 || body != site[want] {
			t.Errorf("GET %s: %d %q, want 200 and %s", path, resp.StatusCode, clip(body), want)
		}
		if got := resp.Header.Get("ETag"); got != `"`+files[want].SHA256+`"` {
			t.Errorf("GET %s: ETag %s, want the sha", path, got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
		if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err != nil || !lm.Equal(live.At.Truncate(time.Second)) {
			t.Errorf("GET %s: Last-Modified %q, want the deploy's time %v", path, resp.Header.Get("Last-Modified"), live.At)
		}
	}
	if resp, _ := e.get(t, "GET", "/docs?x=1", nil); resp.StatusCode != 301 || resp.Header.Get("Location") != "/docs/?x=1" {
		t.Errorf("GET /docs: %d to %q, want 301 to /docs/?x=1", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Types and caching.
	for path, want := range map[string][2]string{
		"/":                          {"text/html; charset=utf-8", "no-cache"},
		"/assets/app.3f2a9c1d.js":    {"text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
		"/assets/index-BdX3k9aZ.css": {"text/css; charset=utf-8", "public, max-age=31536000, immutable"},
		"/robots.txt":                {"text/plain; charset=utf-8", "public, max-age=0, must-revalidate"},
		"/data.json":                 {"application/json", "public, max-age=0, must-revalidate"},
	} {
		resp, _ := e.get(t, "GET", path, nil)
		if resp.Header.Get("Content-Type") != want[0] || resp.Header.Get("Cache-Control") != want[1] {
			t.Errorf("GET %s: type %q cache %q, want %q", path, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), want)
		}
	}

	// Conditional requests.
	etag := `"` + files["about.html"].SHA256 + `"`
	if resp, body := e.get(t, "GET", "/about", map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 || body != "" {
		t.Errorf("If-None-Match: %d %q, want 304", resp.StatusCode, body)
	}
	if resp, _ := e.get(t, "GET", "/about", map[string]string{"If-None-Match": `"other"`}); resp.StatusCode != 200 {
		t.Errorf("If-None-Match of another tag: %d", resp.StatusCode)
	}
	since := live.At.Add(time.Second).UTC().Format(http.TimeFormat)
	if resp, _ := e.get(t, "GET", "/about", map[string]string{"If-Modified-Since": since}); resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since: %d, want 304", resp.StatusCode)
	}

	// HEAD.
	resp, body := e.get(t, "HEAD", "/docs/intro.txt", nil)
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "10" {
		t.Errorf("HEAD: %d %q length %q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
	}
	if resp, _ := e.get(t, "POST", "/", nil); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// Ranges.
	resp, body = e.get(t, "GET", "/docs/intro.txt", map[string]string{"Range": "bytes=2-5"})
	if resp.StatusCode != 206 || body != "2345" || resp.Header.Get("Content-Range") != "bytes 2-5/10" {
		t.Errorf("Range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	if resp, _ := e.get(t, "GET", "/docs/intro.txt", map[string]string{"Range": "bytes=100-"}); resp.StatusCode != 416 {
		t.Errorf("unsatisfiable Range: %d", resp.StatusCode)
	}

	// Variants by Accept-Encoding, with Vary; a range gets the identity
	// bytes.
	js := "/assets/app.3f2a9c1d.js"
	for enc, want := range map[string]string{"br": "br", "gzip": "gzip", "gzip, deflate, br": "br", "br;q=0, gzip": "gzip", "identity": "", "*": "br"} {
		resp, body := e.get(t, "GET", js, map[string]string{"Accept-Encoding": enc})
		if got := resp.Header.Get("Content-Encoding"); got != want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", enc, got, want)
		}
		if resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Vary %q", enc, resp.Header.Get("Vary"))
		}
		if got := decode(t, want, body); got != site["assets/app.3f2a9c1d.js"] {
			t.Errorf("Accept-Encoding %q: body decodes to %q", enc, clip(got))
		}
		wantTag := files["assets/app.3f2a9c1d.js"].SHA256
		switch want {
		case "br":
			wantTag = files["assets/app.3f2a9c1d.js"].Br.SHA256
		case "gzip":
			wantTag = files["assets/app.3f2a9c1d.js"].Gzip.SHA256
		}
		if resp.Header.Get("ETag") != `"`+wantTag+`"` {
			t.Errorf("Accept-Encoding %q: ETag %s, want the variant's sha", enc, resp.Header.Get("ETag"))
		}
		// The variant's length is known: sent, not chunked.
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("Accept-Encoding %q: Content-Length %d, Transfer-Encoding %v for a body of %d bytes", enc, resp.ContentLength, resp.TransferEncoding, len(body))
		}
		if resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Last-Modified") == "" {
			t.Errorf("Accept-Encoding %q: Accept-Ranges %q, Last-Modified %q", enc, resp.Header.Get("Accept-Ranges"), resp.Header.Get("Last-Modified"))
		}
		// Revalidation of the variant it got.
		again, _ := e.get(t, "GET", js, map[string]string{"Accept-Encoding": enc, "If-None-Match": resp.Header.Get("ETag")})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("Accept-Encoding %q with If-None-Match its ETag: %d, want 304", enc, again.StatusCode)
		}
	}
	resp, body = e.get(t, "GET", js, map[string]string{"Accept-Encoding": "gzip", "Range": "bytes=0-6"})
	if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || body != "console" {
		t.Errorf("Range with Accept-Encoding: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}

	// The deploy's 404 page.
	resp, body = e.get(t, "GET", "/nope", nil)
	if resp.StatusCode != 404 || body != site["404.html"] || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("custom 404: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
}

// decode undoes a Content-Encoding.
func decode(t *testing.T, enc, body string) string {
	t.Helper()
	var r io.Reader
	switch enc {
	case "":
		return body
	case "gzip":
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(strings.NewReader(body))
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A single-page app's fallback answers every path that is no file; a
// site without fallback or 404 page answers a plain 404.
func TestServeFallbackAndNotFound(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	m := e.manifest(t, map[string]string{"index.html": "<div id=app></div>", "app.js": "run()"})
	m.Fallback = "index.html"
	e.deploy(t, "blog", m)
	for _, p := range []string{"/users/42", "/settings", "/a/b/c/"} {
		if resp, body := e.get(t, "GET", p, nil); resp.StatusCode != 200 || body != "<div id=app></div>" {
			t.Errorf("SPA %s: %d %q", p, resp.StatusCode, body)
		}
	}
	if _, body := e.get(t, "GET", "/app.js", nil); body != "run()" {
		t.Errorf("SPA file: %q", body)
	}
	e.deploy(t, "blog", e.manifest(t, map[string]string{"index.html": "plain"}))
	if resp, body := e.get(t, "GET", "/users/42", nil); resp.StatusCode != 404 || strings.Contains(body, "plain") {
		t.Errorf("no fallback: %d %q", resp.StatusCode, body)
	}
	// A site never deployed.
	other := httptestServer(t, e.s.SiteHandler("nosuch"))
	resp, err := http.Get(other + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown site: %d", resp.StatusCode)
	}
}

// Hostile paths get 400 or 404 and reach nothing, sent byte for byte.
func TestServeHostilePaths(t *testing.T) {
	e := start(t, t.TempDir(), Config{})
	e.deploy(t, "blog", e.manifest(t, map[string]string{"index.html": "home", "a/b.txt": "b", "secret.txt": "s"}))
	cases := map[string]int{
		"/../secret.txt":               400,
		"/a/../secret.txt":             400,
		"/a/./b.txt":                   400,
		"/%2e%2e/secret.txt":           400,
		"/a%2fb.txt":                   400,
		"/a%2Fb.txt":                   400,
		"/a%5cb.txt":                   400,
		"/index.html%00":               400,
		"/a\\b.txt":                    400,
		"/" + strings.Repeat("a", 600): 400,
		"//secret.txt":                 404,
		"/a//b.txt":                    404,
		"/%ff":                         400,
		"/a/b.txt/":                    404,
		"/index.html/":                 404,
	}
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	for p, want := range cases {
		status, body := rawGet(t, addr, p)
		if status != want {
			t.Errorf("GET %q: %d, want %d", p, status, want)
		}
		if strings.Contains(body, "\r\n\r\ns") || strings.HasSuffix(body, "\r\n\r\nb") {
			t.Errorf("GET %q reached a file: %q", p, body)
		}
	}
	if status, _ := rawGet(t, addr, "/a/b.txt"); status != 200 {
		t.Fatalf("the control request: %d", status)
	}
}

// rawGet sends a request line as written (no client cleaning) and
// returns the status and the whole response.
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: blog\r\nConnection: close\r\n\r\n", path)
	b, _ := io.ReadAll(c)
	var status int
	fmt.Sscanf(string(b), "HTTP/1.1 %d", &status)
	return status, string(b)
}

// A file of several chunks streams, ranges touch only their chunks, and
// the cache stays within its bound.
func TestServeLargeFile(t *testing.T) {
	e := start(t, t.TempDir(), Config{CacheBytes: ChunkBytes + 1024})
	big := make([]byte, 3*ChunkBytes+1000)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	h := Hash(big)
	if err := e.s.PutBlob(context.Background(), h, bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	e.deploy(t, "blog", Manifest{Files: map[string]File{"big.bin": {SHA256: h, Size: int64(len(big))}}})
	resp, body := e.get(t, "GET", "/big.bin", nil)
	if resp.StatusCode != 200 || body != string(big) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("big file: %d, %d bytes, type %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
	}
	if c := e.s.cache.size(); c > ChunkBytes+1024 {
		t.Fatalf("cache holds %d bytes, over its bound", c)
	}
	from, to := ChunkBytes-10, 2*ChunkBytes+10 // across two chunk boundaries
	resp, body = e.get(t, "GET", "/big.bin", map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", from, to)})
	if resp.StatusCode != 206 || body != string(big[from:to+1]) {
		t.Fatalf("range across chunks: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = e.get(t, "GET", "/big.bin", map[string]string{"Range": "bytes=-1000"})
	if resp.StatusCode != 206 || body != string(big[len(big)-1000:]) {
		t.Fatalf("suffix range: %d, %d bytes", resp.StatusCode, len(body))
	}
}
