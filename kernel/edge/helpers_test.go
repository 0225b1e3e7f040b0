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
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/edge"
	"github.com/fazt-sh/fazt/kernel/vfs"
	"github.com/fazt-sh/fazt/verticals/apps"
)

func TestMain(m *testing.M) {
	// Pebble on loopback: no random validation delays, no rejected
	// nonces, no reuse of an earlier authorization (each order is
	// validated against this test's listeners).
	os.Setenv("PEBBLE_VA_NOSLEEP", "1")
	os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	os.Setenv("PEBBLE_AUTHZREUSE", "0")
	log.SetOutput(io.Discard) // pebble's wfe logs to the standard logger
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
func startNode(t testing.TB, dir string, cfg edge.Config) *node {
	t.Helper()
	n := &node{k: kernel.New(dir)}
	n.k.Addr, n.k.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
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

// pebble is an in-process Pebble ACME CA whose validation authority
// resolves names through an in-process DNS server answering 127.0.0.1
// and connects to an edge's ports (attach).
type pebble struct {
	dir    string         // the ACME directory URL
	api    *x509.CertPool // trusts the ACME server itself
	issued *x509.CertPool // trusts what Pebble issues
	orders atomic.Int64   // new-order requests seen

	dns       string
	logger    *log.Logger
	store     *db.MemoryStore
	authority *ca.CAImpl
	h         atomic.Pointer[http.Handler]
}

func startPebble(t testing.TB) *pebble {
	t.Helper()
	p := &pebble{dns: startDNS(t), logger: log.New(io.Discard, "", 0), store: db.NewMemoryStore()}
	p.authority = ca.New(p.logger, p.store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.h.Load()
		if h == nil {
			http.Error(w, "pebble is not attached to an edge yet", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		(*h).ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = p.logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.dir = srv.URL + wfe.DirectoryPath
	p.api = x509.NewCertPool()
	p.api.AddCert(srv.Certificate())
	p.issued = x509.NewCertPool()
	p.issued.AddCert(p.authority.GetRootCert(0).Cert)
	return p
}

// attach points Pebble's validation authority at an edge's listeners.
func (p *pebble) attach(e *edge.Edge) {
	_, hp, _ := net.SplitHostPort(e.HTTPAddr())
	_, tp, _ := net.SplitHostPort(e.HTTPSAddr())
	httpPort, _ := strconv.Atoi(hp)
	tlsPort, _ := strconv.Atoi(tp)
	validator := va.New(p.logger, httpPort, tlsPort, false, p.dns, p.store)
	front := wfe.New(p.logger, p.store, validator, p.authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	p.h.Store(&h)
}

// startDNS serves A 127.0.0.1 for every name, over TCP (what Pebble's
// validation authority asks with), and returns its address.
func startDNS(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, q := range req.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// acmeConfig is an edge configuration using p, with certificates in dir.
func acmeConfig(p *pebble, storage, domain string) edge.Config {
	return edge.Config{
		Domain:  domain,
		Email:   "ops@example.com",
		CA:      p.dir,
		CARoots: p.api,
		Storage: &certmagic.FileStorage{Path: storage},
	}
}

// uniq makes a name unique to this test run.
var seq atomic.Int64

func uniq(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
}
