package edge_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/fazt-sh/fazt/kernel/edge"
	"github.com/fazt-sh/fazt/kernel/edge/edgetest"
)

// page9K is the benchmark's file: 9 KiB of text.
var page9K = strings.Repeat("fazt edge benchmark page, 9 KiB of it.\n", 9*1024/39+1)[:9*1024]

// BenchmarkServe9KB serves a 9 KiB file through the edge with keep-alive
// (HTTP/1.1, parallel clients): over HTTPS with a certificate from an
// in-process ACME CA, and over plain HTTP (Plain: the same routing and
// limits, no TLS) as the baseline of the same run. "handshake" makes a
// new TLS connection for every request. Run with -benchtime=1x to check
// that it works.
func BenchmarkServe9KB(b *testing.B) {
	edgetest.SetEnv()
	p := edgetest.StartPebble(b)
	cfg := acmeConfig(p, b.TempDir(), "example.com")
	cfg.Rate, cfg.Burst = 1e9, 1e9
	n := startNode(b, b.TempDir(), cfg)
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	n.deploy(b, "bench", map[string]string{"index.html": page9K})
	waitCert(b, n.edge, "bench.example.com")

	pn := startNode(b, b.TempDir(), edge.Config{Domain: "example.com", Plain: true, Rate: 1e9, Burst: 1e9})
	pn.deploy(b, "bench", map[string]string{"index.html": page9K})
	pn.waitServes(b, "bench.example.com", true)

	b.Run("https", func(b *testing.B) {
		benchGet(b, keepAlive(n.edge.HTTPSAddr(), &tls.Config{RootCAs: p.Issued}), "https://bench.example.com/")
	})
	b.Run("http", func(b *testing.B) {
		benchGet(b, keepAlive(pn.edge.HTTPAddr(), nil), "http://bench.example.com/")
	})
	b.Run("handshake", func(b *testing.B) {
		c := keepAlive(n.edge.HTTPSAddr(), &tls.Config{RootCAs: p.Issued, ClientSessionCache: nil})
		c.Transport.(*http.Transport).DisableKeepAlives = true
		benchGet(b, c, "https://bench.example.com/")
	})
}

func keepAlive(addr string, tc *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:     tc,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
	}}
}

func benchGet(b *testing.B, c *http.Client, url string) {
	b.SetBytes(int64(len(page9K)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n != int64(len(page9K)) {
				b.Errorf("GET %s: %d, %d bytes", url, resp.StatusCode, n)
				return
			}
		}
	})
}
