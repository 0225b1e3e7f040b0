package vfs

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// env is a real kernel (embedded NATS, SQLite, its HTTP listener on
// loopback) with the service registered, and a real HTTP server that
// serves the site "blog" through ServeSite.
type env struct {
	k   *kernel.Kernel
	s   *Service
	dir string
	srv *httptest.Server
}

// newKernel is the one way the tests make a kernel.
func newKernel(dir string) *kernel.Kernel {
	k := kernel.New(dir)
	k.Addr, k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	return k
}

// start opens a kernel in dir with the service tuned by cfg; Cleanup
// closes it.
func start(t testing.TB, dir string, cfg Config) *env {
	t.Helper()
	e := &env{k: newKernel(dir), dir: dir}
	var err error
	if e.s, err = Register(e.k, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.s.SiteHandler("blog"))
	t.Cleanup(func() { e.close(t) })
	return e
}

func (e *env) close(t testing.TB) {
	if e.srv != nil {
		e.srv.Close()
		e.srv = nil
	}
	if e.k != nil {
		if err := e.k.Close(context.Background()); err != nil {
			t.Errorf("close kernel: %v", err)
		}
		e.k = nil
	}
}

// put stores content as a blob and returns its hash.
func (e *env) put(t testing.TB, content string) string {
	t.Helper()
	h := Hash([]byte(content))
	if err := e.s.PutBlob(context.Background(), h, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	return h
}

// manifest uploads files (path → content) and returns their manifest.
func (e *env) manifest(t testing.TB, files map[string]string) Manifest {
	t.Helper()
	m := Manifest{Files: map[string]File{}}
	for p, c := range files {
		m.Files[p] = File{SHA256: e.put(t, c), Size: int64(len(c))}
	}
	return m
}

// deploy uploads files and deploys them live on site.
func (e *env) deploy(t testing.TB, site string, m Manifest) string {
	t.Helper()
	id, err := e.s.Deploy(context.Background(), site, m)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// get requests path from the site's server with headers, and returns
// the response with its body read.
func (e *env) get(t testing.TB, method, path string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	// Transport's own gzip would hide what the server sent.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// files reads a deploy's files from the log (its deploy_recorded event).
func (e *env) files(t testing.TB, id string) map[string]File {
	t.Helper()
	var out map[string]File
	_, err := e.k.Log().ReadEach(context.Background(), 0, eventlog.Filter{Types: []string{TypeDeployRecorded}}, func(ev eventlog.Event) bool {
		var d DeployRecorded
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Deploy == id {
			out = d.Files
			if d.ManifestBlob != nil {
				m, err := e.s.loadManifest(context.Background(), *d.ManifestBlob)
				if err != nil {
					t.Fatal(err)
				}
				out = m.Files
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if out == nil {
		t.Fatalf("no deploy %s in the log", id)
	}
	return out
}

// httptestServer serves h on loopback until the test ends.
func httptestServer(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
