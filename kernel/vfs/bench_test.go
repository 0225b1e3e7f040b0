package vfs

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkServe serves a 9 KB and a 1 MB file over real HTTP with
// keep-alive, through ServeSite and, as the baseline of the same run,
// through net/http's FileServer from disk.
//
//	go test -run '^$' -bench Serve -benchtime 2s ./kernel/vfs/
func BenchmarkServe(b *testing.B) {
	e := start(b, b.TempDir(), Config{})
	files := map[string]string{"small.html": string(payload(9 << 10)), "large.bin": string(payload(1 << 20))}
	e.deploy(b, "blog", e.manifest(b, files))
	disk := b.TempDir()
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(disk, p), []byte(c), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	fs := httptest.NewServer(http.FileServer(http.Dir(disk)))
	defer fs.Close()
	for _, c := range []struct{ name, base, path string }{
		{"vfs/9KB", e.srv.URL, "/small.html"},
		{"fileserver/9KB", fs.URL, "/small.html"},
		{"vfs/1MB", e.srv.URL, "/large.bin"},
		{"fileserver/1MB", fs.URL, "/large.bin"},
	} {
		b.Run(c.name, func(b *testing.B) {
			url := c.base + c.path
			b.SetBytes(int64(len(files[c.path[1:]])))
			b.RunParallel(func(pb *testing.PB) {
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						b.Error(err)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// payload is n bytes that do not compress much.
func payload(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// BenchmarkDeployHTMLSite records and activates a deploy of 5,000 HTML
// pages of about 10 KB, every blob stored before (not timed): the time
// is making the gzip and brotli variants of each new page and recording
// a manifest too large for one event. Each iteration deploys new pages.
//
//	go test -run '^$' -bench DeployHTMLSite -benchtime 1x ./kernel/vfs/
func BenchmarkDeployHTMLSite(b *testing.B) {
	e := start(b, b.TempDir(), Config{})
	ctx := context.Background()
	const n = 5000
	i := 0
	for b.Loop() {
		b.StopTimer()
		m := Manifest{Files: map[string]File{}}
		var size int64
		for j := range n {
			var page strings.Builder
			for k := 0; page.Len() < 10<<10; k++ {
				fmt.Fprintf(&page, "<li><a href=\"/d%d/p%d/%d\">entry %d of page %d</a> <em>%d</em></li>\n", i, j, k, k, j, k*j)
			}
			c := page.String()
			m.Files[fmt.Sprintf("d%02d/page-%04d.html", j%50, j)] = File{SHA256: e.put(b, c), Size: int64(len(c))}
			size += int64(len(c))
		}
		b.SetBytes(size)
		b.StartTimer()
		if _, err := e.s.Deploy(ctx, fmt.Sprintf("site%d", i), m); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "files/s")
}
