package edge_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/edge"
	"github.com/fazt-sh/fazt/kernel/edge/edgetest"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/verticals/apps"
)

func TestMain(m *testing.M) {
	edgetest.SetEnv()
	os.Exit(m.Run())
}

// node is a real kernel (embedded NATS, SQLite) with vfs and the apps
// vertical, and an edge in front of it on loopback.
type node struct {
	k      *kernel.Kernel
	files  *vfs.Service
	edge   *edge.Edge
	token  string
	closed bool
}

// startNode opens a kernel in dir with an edge configured by cfg (its
// Routes, Log, Admin and addresses filled in). ports, when set, are the
// HTTP and HTTPS addresses to listen on.
func startNode(t testing.TB, dir string, cfg edge.Config, made ...func(*node)) *node {
	t.Helper()
	n := &node{k: kernel.New(dir)}
	n.k.Addr, n.k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	for _, f := range made {
		f(n) // the kernel exists, nothing is open yet
	}
	var err error
	if n.files, err = vfs.Register(n.k, vfs.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := apps.Register(n.k, n.files, apps.Config{}); err != nil {
		t.Fatal(err)
	}
	cfg.Routes, cfg.Log, cfg.Admin = apps.NewRoutes(n.k, n.files), n.k.Log(), n.k.Handler()
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.HTTPSAddr == "" {
		cfg.HTTPSAddr = "127.0.0.1:0"
	}
	if n.edge, err = edge.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := n.k.RegisterReactor(n.edge.Reactor()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.k.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.close(t) })
	if err := n.k.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	n.token = n.k.Token
	if err := n.edge.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) close(t testing.TB) {
	t.Helper()
	if n.closed {
		return
	}
	n.closed = true
	ctx := context.Background()
	if err := n.edge.Close(ctx); err != nil {
		t.Errorf("close edge: %v", err)
	}
	if err := n.k.Close(ctx); err != nil {
		t.Errorf("close kernel: %v", err)
	}
}

// deploy makes files the live deploy of app, through the vfs service.
func (n *node) deploy(t testing.TB, app string, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	m := vfs.Manifest{Files: map[string]vfs.File{}}
	for p, body := range files {
		sum := sha256.Sum256([]byte(body))
		h := hex.EncodeToString(sum[:])
		if err := n.files.PutBlob(ctx, h, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		m.Files[p] = vfs.File{SHA256: h, Size: int64(len(body))}
	}
	if _, err := n.files.Deploy(ctx, app, m); err != nil {
		t.Fatal(err)
	}
}

// api calls the kernel's API on its loopback listener with the token.
func (n *node) api(t testing.TB, method, path string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://"+n.k.ListenAddr()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// bind binds domain to app: the vertical appends apps.domain_added.
func (n *node) bind(t testing.TB, app, domain string) {
	t.Helper()
	if code, body := n.api(t, "POST", apps.DomainsPath(app), apps.DomainRequest{Domain: domain}); code != http.StatusCreated {
		t.Fatalf("bind %s to %s: %d %s", domain, app, code, body)
	}
}

func (n *node) unbind(t testing.TB, app, domain string) {
	t.Helper()
	if code, body := n.api(t, "DELETE", apps.DomainsPath(app)+"/"+domain, nil); code != http.StatusOK {
		t.Fatalf("unbind %s from %s: %d %s", domain, app, code, body)
	}
}

// waitServes waits until the edge's table has host (or not, want false).
func (n *node) waitServes(t testing.TB, host string, want bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n.edge.Serves(host) != want {
		if time.Now().After(deadline) {
			t.Fatalf("edge serves %s: %v after 30s, want %v", host, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialTo returns a client that dials addr whatever the URL's host, so
// that requests carry the test's host names; roots nil: no TLS trust.
func dialTo(addr string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches url through c and returns the status and body.
func get(t testing.TB, c *http.Client, url string, header map[string]string) (int, string, *http.Response, error) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp, nil
}

// acmeConfig is an edge configuration using p, with certificates in dir.
func acmeConfig(p *edgetest.Pebble, storage, domain string) edge.Config {
	return edge.Config{
		Domain:  domain,
		Email:   "ops@example.com",
		CA:      p.Dir,
		CARoots: p.API,
		Storage: &certmagic.FileStorage{Path: storage},
	}
}

// uniq makes a name unique to this test run.
var seq atomic.Int64

func uniq(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
}
