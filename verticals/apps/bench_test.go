package apps

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discard is a ResponseWriter that keeps nothing: the benchmark counts
// the kernel's and the vertical's work per request, not net/http's.
type discard struct {
	h      http.Header
	status int
	n      int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(s int)           { d.status = s }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// BenchmarkServeHandler serves a 9 KiB file of a deployed app through
// the kernel's handler (host routing, the apps vertical, vfs), without
// a network: its allocs/op are the serving path's own.
//
//	go test -run '^$' -bench ServeHandler -benchmem ./verticals/apps/
func BenchmarkServeHandler(b *testing.B) {
	e := start(b, b.TempDir(), nil, Config{})
	body := strings.Repeat("0123456789abcdef", 576) // 9 KiB
	e.deploy(b, "blog", map[string]string{"small.bin": body})
	h := e.k.Handler()
	req := httptest.NewRequest("GET", "http://blog.localhost/small.bin", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.status != 0 && w.status != http.StatusOK || w.n != len(body) {
		b.Fatalf("GET /small.bin: %d, %d bytes", w.status, w.n)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.n = 0
		h.ServeHTTP(w, req)
	}
	if w.n != len(body) {
		b.Fatalf("served %d bytes", w.n)
	}
}
