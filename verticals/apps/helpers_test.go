package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/eventlog/eventlogtest"
	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/vfs"
)

// newKernel is the one way the tests make a kernel: on dir, a free
// loopback port, quiet.
func newKernel(dir string) *kernel.Kernel {
	k := kernel.New(dir)
	k.Addr, k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	return k
}

// env is a real kernel (embedded NATS, SQLite, its HTTP listener on
// loopback) with vfs and the vertical registered.
type env struct {
	k      *kernel.Kernel // nil for a server in a child process
	base   string         // http://127.0.0.1:PORT
	port   string
	token  string
	seen   uint64 // the log position newEvents continues from
	closed bool
}

// start opens a kernel in dir; tune changes its tunables (nil: none),
// cfg tunes the vertical. Cleanup closes it.
func start(t testing.TB, dir string, tune func(*kernel.Kernel), cfg Config) *env {
	t.Helper()
	e := &env{k: newKernel(dir)}
	if tune != nil {
		tune(e.k)
	}
	files, err := vfs.Register(e.k, vfs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Register(e.k, files, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close(t) })
	if err := e.k.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	e.base, e.token = "http://"+e.k.ListenAddr(), e.k.Token
	_, e.port, _ = net.SplitHostPort(e.k.ListenAddr())
	if e.seen, err = e.k.Log().LastSeq(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// close closes the kernel (once).
func (e *env) close(t testing.TB) {
	t.Helper()
	if e.closed {
		return
	}
	e.closed = true
	if err := e.k.Close(context.Background()); err != nil {
		t.Errorf("close kernel: %v", err)
	}
}

// resp is an answer with its body read.
type resp struct {
	status int
	header http.Header
	body   string
}

// client has no transport gzip (it would hide what the server sent) and
// follows no redirects.
var client = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// do sends a request to the kernel's listener: host "" keeps the
// listener's address; admin adds the token.
func (e *env) do(t testing.TB, method, host, path string, body io.Reader, admin bool) resp {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	r, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{r.StatusCode, r.Header, string(b)}
}

// api calls an admin route with a JSON body (nil: none).
func (e *env) api(t testing.TB, method, path string, body any) resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	return e.do(t, method, "", path, rd, true)
}

// site GETs path from app by its Host, NAME.localhost:PORT.
func (e *env) site(t testing.TB, host, path string) resp {
	t.Helper()
	return e.do(t, "GET", host+":"+e.port, path, nil, false)
}

// manifestOf is the manifest of files (path → content).
func manifestOf(files map[string]string) vfs.Manifest {
	m := vfs.Manifest{Files: map[string]vfs.File{}}
	for p, c := range files {
		m.Files[p] = vfs.File{SHA256: vfs.Hash([]byte(c)), Size: int64(len(c))}
	}
	return m
}

// missing posts the manifest and returns the hashes the server lacks.
func (e *env) missing(t testing.TB, app string, m vfs.Manifest) []string {
	t.Helper()
	r := e.api(t, "POST", ManifestPath(app), m)
	if r.status != http.StatusOK {
		t.Fatalf("manifest of %s: %d %s", app, r.status, r.body)
	}
	var mr ManifestResponse
	if err := json.Unmarshal([]byte(r.body), &mr); err != nil {
		t.Fatal(err)
	}
	return mr.Missing
}

// upload PUTs the contents of files whose hash is among hashes.
func (e *env) upload(t testing.TB, app string, files map[string]string, hashes []string) {
	t.Helper()
	for _, c := range files {
		h := vfs.Hash([]byte(c))
		if !slices.Contains(hashes, h) {
			continue
		}
		if r := e.do(t, "PUT", "", BlobPath(app, h), strings.NewReader(c), true); r.status != http.StatusOK {
			t.Fatalf("upload %s: %d %s", h, r.status, r.body)
		}
	}
}

// deploy runs the whole protocol and returns the deploy's id and how
// many blobs were uploaded.
func (e *env) deploy(t testing.TB, app string, files map[string]string) (string, int) {
	t.Helper()
	m := manifestOf(files)
	miss := e.missing(t, app, m)
	e.upload(t, app, files, miss)
	r := e.api(t, "POST", DeploysPath(app), m)
	if r.status != http.StatusCreated {
		t.Fatalf("deploy %s: %d %s", app, r.status, r.body)
	}
	var dr DeployResponse
	if err := json.Unmarshal([]byte(r.body), &dr); err != nil {
		t.Fatal(err)
	}
	if want := "http://" + app + ".localhost:" + e.port + "/"; dr.URL != want {
		t.Errorf("deploy URL %q, want %q", dr.URL, want)
	}
	return dr.ID, len(miss)
}

// newEvents returns the events appended since the last call.
func (e *env) newEvents(t testing.TB) []eventlog.Event {
	t.Helper()
	events, seen := eventlogtest.ReadAfter(t, e.k.Log(), e.seen)
	e.seen = seen
	return events
}

// types lists the events' types.
func types(evs []eventlog.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// wantStatus fails unless r has status, and returns r.
func wantStatus(t testing.TB, what string, r resp, status int) resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, status)
	}
	return r
}
