package edge_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/edge"
	"github.com/fazt-sh/fazt/kernel/edge/edgetest"
	"github.com/fazt-sh/fazt/verticals/apps"
)

// waitCert waits until the edge's storage holds a certificate for host.
func waitCert(t testing.TB, e *edge.Edge, host string) edge.Cert {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last []edge.Cert
	for time.Now().Before(deadline) {
		certs, err := e.Certificates(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		last = certs
		for _, c := range certs {
			if slices.Contains(c.Names, host) && !c.NotAfter.IsZero() {
				return c
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no certificate for %s after 90s; certificates: %+v", host, last)
	return edge.Cert{}
}

// TestBindIssuesAndServes: binding a domain (the vertical appends
// apps.domain_added) makes the reactor obtain its certificate from the
// CA over the real ACME protocol, and an HTTPS GET trusting only the
// CA's root gets the app's page, over HTTP/2.
func TestBindIssuesAndServes(t *testing.T) {
	p := edgetest.StartPebble(t)
	n := startNode(t, t.TempDir(), acmeConfig(p, t.TempDir(), "example.com"))
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	n.deploy(t, "blog", map[string]string{"index.html": "<h1>the blog</h1>"})
	domain := uniq("www") + ".blog-example.com"
	n.bind(t, "blog", domain)

	c := waitCert(t, n.edge, domain)
	if !strings.Contains(c.Issuer, "Pebble") || c.NotAfter.Before(time.Now()) {
		t.Errorf("certificate %+v: want one issued by Pebble, not expired", c)
	}
	if p.Orders.Load() == 0 {
		t.Fatal("a certificate is stored but Pebble saw no order")
	}
	client := dialTo(n.edge.HTTPSAddr(), p.Issued)
	code, body, resp, err := get(t, client, "https://"+domain+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusOK || body != "<h1>the blog</h1>" {
		t.Fatalf("GET https://%s/: %d %q", domain, code, body)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("Strict-Transport-Security %q for an app that did not ask for it", h)
	}
	if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" || !slices.Contains(resp.TLS.PeerCertificates[0].DNSNames, domain) {
		t.Errorf("TLS state: protocol %q, names %v", resp.TLS.NegotiatedProtocol, resp.TLS.PeerCertificates[0].DNSNames)
	}
	// The app's own name under the base domain is served too (its
	// certificate obtained by the reactor at deploy, or at the handshake).
	code, body, _, err = get(t, client, "https://blog.example.com/", nil)
	if err != nil || code != http.StatusOK || body != "<h1>the blog</h1>" {
		t.Fatalf("GET https://blog.example.com/: %d %q %v", code, body, err)
	}

	// An alias is served at ALIAS.<domain>, its certificate obtained when
	// it is added.
	if code, body := n.api(t, "POST", apps.AliasesPath("blog"), apps.AliasRequest{Alias: "journal"}); code != http.StatusCreated {
		t.Fatalf("add alias: %d %s", code, body)
	}
	waitCert(t, n.edge, "journal.example.com")
	if code, body, _, err := get(t, client, "https://journal.example.com/", nil); err != nil || code != http.StatusOK || body != "<h1>the blog</h1>" {
		t.Fatalf("GET https://journal.example.com/: %d %q %v", code, body, err)
	}

	// Unbound: the certificate leaves the cache and the handshake fails,
	// though the certificate is still in storage.
	n.unbind(t, "blog", domain)
	n.waitServes(t, domain, false)
	if code, _, _, err := get(t, client, "https://"+domain+"/", nil); err == nil {
		t.Errorf("GET https://%s/ after unbinding: answered %d, want a failed handshake", domain, code)
	}
}

// TestChallenges: a certificate is obtained with either challenge alone:
// HTTP-01 on the HTTP listener, TLS-ALPN-01 on the HTTPS one.
func TestChallenges(t *testing.T) {
	for _, tc := range []struct {
		name          string
		noHTTP, noTLS bool
	}{{"http-01", false, true}, {"tls-alpn-01", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			p := edgetest.StartPebble(t)
			cfg := acmeConfig(p, t.TempDir(), "example.com")
			cfg.DisableHTTPChallenge, cfg.DisableTLSALPNChallenge = tc.noHTTP, tc.noTLS
			cfg.HSTSApps = []string{"app"}
			n := startNode(t, t.TempDir(), cfg)
			p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
			n.deploy(t, "app", map[string]string{"index.html": tc.name})
			waitCert(t, n.edge, "app.example.com")
			code, body, resp, err := get(t, dialTo(n.edge.HTTPSAddr(), p.Issued), "https://app.example.com/", nil)
			if err != nil || code != http.StatusOK || body != tc.name {
				t.Fatalf("GET https://app.example.com/: %d %q %v", code, body, err)
			}
			if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=31536000" {
				t.Errorf("Strict-Transport-Security %q for an app in HSTSApps", h)
			}
		})
	}
}

// TestUnboundHost: a host nobody bound gets a failed handshake and no
// order is placed for it; over HTTP it gets a plain 404, while a bound
// host is redirected to HTTPS.
func TestUnboundHost(t *testing.T) {
	p := edgetest.StartPebble(t)
	n := startNode(t, t.TempDir(), acmeConfig(p, t.TempDir(), "example.com"))
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	client := dialTo(n.edge.HTTPSAddr(), p.Issued)
	for _, host := range []string{"nobody.example.org", "nothing.example.com", "example.com"} {
		if code, _, _, err := get(t, client, "https://"+host+"/", nil); err == nil {
			t.Errorf("GET https://%s/: answered %d, want a failed handshake", host, code)
		} else if !strings.Contains(err.Error(), "tls") {
			t.Errorf("GET https://%s/: %v, want a TLS handshake error", host, err)
		}
	}
	if o := p.Orders.Load(); o != 0 {
		t.Errorf("Pebble saw %d orders for unbound hosts, want 0", o)
	}
	plain := dialTo(n.edge.HTTPAddr(), nil)
	code, body, _, err := get(t, plain, "http://nobody.example.org/x", nil)
	if err != nil || code != http.StatusNotFound || !strings.Contains(body, "no site") {
		t.Errorf("GET http://nobody.example.org/x: %d %q %v, want the plain 404", code, body, err)
	}
	n.deploy(t, "shop", map[string]string{"index.html": "shop"})
	n.waitServes(t, "shop.example.com", true)
	code, _, resp, err := get(t, plain, "http://shop.example.com/a/b?c=d", nil)
	if err != nil || code != http.StatusPermanentRedirect {
		t.Fatalf("GET http://shop.example.com/a/b?c=d: %d %v, want 308", code, err)
	}
	_, port, _ := strings.Cut(n.edge.HTTPSAddr(), ":")
	if want := "https://shop.example.com:" + port + "/a/b?c=d"; resp.Header.Get("Location") != want {
		t.Errorf("redirect to %q, want %q", resp.Header.Get("Location"), want)
	}
}

// TestAdminHost: the kernel's API answers at fazt.<domain> over HTTPS
// (its certificate obtained on demand at the first handshake), with the
// token; over HTTP it only redirects.
func TestAdminHost(t *testing.T) {
	p := edgetest.StartPebble(t)
	n := startNode(t, t.TempDir(), acmeConfig(p, t.TempDir(), "example.com"))
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	certs, err := n.edge.Certificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 || !slices.Equal(certs[0].Names, []string{"fazt.example.com"}) || !certs[0].Bound || !certs[0].NotAfter.IsZero() || certs[0].LastError != "" {
		t.Errorf("before any handshake, certificates %+v: want fazt.example.com bound, none yet", certs)
	}
	client := dialTo(n.edge.HTTPSAddr(), p.Issued)
	code, _, _, err := get(t, client, "https://fazt.example.com/v1/apps", nil)
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("GET https://fazt.example.com/v1/apps without the token: %d %v, want 401", code, err)
	}
	if p.Orders.Load() != 1 {
		t.Errorf("orders %d, want 1 (on demand, at the first handshake)", p.Orders.Load())
	}
	code, body, _, err := get(t, client, "https://fazt.example.com/v1/apps", map[string]string{"Authorization": "Bearer " + n.token})
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"apps"`) {
		t.Fatalf("GET https://fazt.example.com/v1/apps with the token: %d %q %v", code, body, err)
	}
	code, _, _, err = get(t, dialTo(n.edge.HTTPAddr(), nil), "http://fazt.example.com/v1/apps", map[string]string{"Authorization": "Bearer " + n.token})
	if err != nil || code != http.StatusPermanentRedirect {
		t.Fatalf("GET http://fazt.example.com/v1/apps: %d %v, want only a redirect", code, err)
	}

	// A connection made for an app's host cannot ask for the admin host.
	n.deploy(t, "site", map[string]string{"index.html": "site"})
	waitCert(t, n.edge, "site.example.com")
	fronted := dialTo(n.edge.HTTPSAddr(), p.Issued)
	fronted.Transport.(*http.Transport).TLSClientConfig.ServerName = "site.example.com"
	code, _, _, err = get(t, fronted, "https://fazt.example.com/v1/apps", map[string]string{"Authorization": "Bearer " + n.token})
	if err != nil || code != http.StatusMisdirectedRequest {
		t.Errorf("admin Host over a connection for site.example.com: %d %v, want 421", code, err)
	}
}

// TestRestartServesStoredCertificate: a restarted node serves the
// certificate it stored, without a new order.
func TestRestartServesStoredCertificate(t *testing.T) {
	p := edgetest.StartPebble(t)
	dir, store := t.TempDir(), t.TempDir()
	n := startNode(t, dir, acmeConfig(p, store, "example.com"))
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	n.deploy(t, "docs", map[string]string{"index.html": "docs v1"})
	domain := uniq("docs") + ".example.net"
	n.bind(t, "docs", domain)
	waitCert(t, n.edge, domain)
	orders := p.Orders.Load()
	n.close(t)

	n2 := startNode(t, dir, acmeConfig(p, store, "example.com"))
	p.Attach(n2.edge.HTTPAddr(), n2.edge.HTTPSAddr())
	code, body, resp, err := get(t, dialTo(n2.edge.HTTPSAddr(), p.Issued), "https://"+domain+"/", nil)
	if err != nil || code != http.StatusOK || body != "docs v1" {
		t.Fatalf("after restart GET https://%s/: %d %q %v", domain, code, body, err)
	}
	if !slices.Contains(resp.TLS.PeerCertificates[0].DNSNames, domain) {
		t.Errorf("served certificate for %v", resp.TLS.PeerCertificates[0].DNSNames)
	}
	if got := p.Orders.Load(); got != orders {
		t.Errorf("orders %d after restart, want %d (the stored certificate)", got, orders)
	}
}

// TestTwoEdgesOneOrder: two nodes sharing one certificate storage, a
// JetStream key-value bucket (KVStorage, as fazt serve keeps them), both
// told to serve a host at once, place one ACME order: the lock in the
// bucket lets one obtain it, and the other finds it stored. The CA
// validates only through the first edge's ports, which answer the
// other's challenges from the bucket too (distributed solving).
func TestTwoEdgesOneOrder(t *testing.T) {
	p := edgetest.StartPebble(t)
	var shared *eventlog.Log // node a's, whose server holds the bucket
	onShared := func(ctx context.Context) (certmagic.Storage, error) {
		return edge.OpenKVStorage(ctx, shared, "certs")
	}
	ca, cb := acmeConfig(p, "", "example.com"), acmeConfig(p, "", "example.com")
	ca.Storage, cb.Storage = nil, nil
	ca.OpenStorage, cb.OpenStorage = onShared, onShared
	a := startNode(t, t.TempDir(), ca, func(n *node) { shared = n.k.Log() })
	b := startNode(t, t.TempDir(), cb)
	p.Attach(a.edge.HTTPAddr(), a.edge.HTTPSAddr())
	var wg sync.WaitGroup
	for _, n := range []*node{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.deploy(t, "shared", map[string]string{"index.html": "shared"})
		}()
	}
	wg.Wait()
	waitCert(t, a.edge, "shared.example.com")
	for _, n := range []*node{a, b} {
		code, body, _, err := get(t, dialTo(n.edge.HTTPSAddr(), p.Issued), "https://shared.example.com/", nil)
		if err != nil || code != http.StatusOK || body != "shared" {
			t.Fatalf("GET https://shared.example.com/ through %s: %d %q %v", n.edge.HTTPSAddr(), code, body, err)
		}
	}
	if o := p.Orders.Load(); o != 1 {
		t.Errorf("Pebble saw %d orders, want 1", o)
	}
}

// TestFailureReportedAndRetried: when the CA cannot be reached, the
// certificate's last error is listed (fazt certs list, /metrics) and the
// reactor tries again later; once the CA answers, the certificate is
// obtained and the error cleared.
func TestFailureReportedAndRetried(t *testing.T) {
	p := edgetest.StartPebble(t) // not attached yet: its ACME server answers 503
	n := startNode(t, t.TempDir(), acmeConfig(p, t.TempDir(), "example.com"))
	n.deploy(t, "late", map[string]string{"index.html": "late"})
	deadline := time.Now().Add(60 * time.Second)
	for {
		certs, err := n.edge.Certificates(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(certs, func(c edge.Cert) bool { return slices.Contains(c.Names, "late.example.com") })
		if i >= 0 && certs[i].LastError != "" {
			if !certs[i].NotAfter.IsZero() || !certs[i].Bound {
				t.Errorf("failing name listed as %+v", certs[i])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error listed for late.example.com after 60s: %+v", certs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	c := waitCert(t, n.edge, "late.example.com") // the reactor's next attempt
	if c.LastError != "" {
		t.Errorf("error still listed after the certificate was obtained: %q", c.LastError)
	}
}

// TestOnDemandOutlastsHeaderTimeout: the handshake that waits for an
// order is not cut off by the header timeout (which net/http applies to
// handshakes too), though the order takes longer.
func TestOnDemandOutlastsHeaderTimeout(t *testing.T) {
	p := edgetest.StartPebble(t)
	cfg := acmeConfig(p, t.TempDir(), "example.com")
	cfg.ReadHeaderTimeout = 300 * time.Millisecond
	n := startNode(t, t.TempDir(), cfg)
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	start := time.Now()
	code, _, _, err := get(t, dialTo(n.edge.HTTPSAddr(), p.Issued), "https://fazt.example.com/healthz", nil)
	t.Logf("first request, with the order: %v", time.Since(start))
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET https://fazt.example.com/healthz: %d %v", code, err)
	}
	if o := p.Orders.Load(); o != 1 {
		t.Errorf("orders %d, want 1", o)
	}
}

// TestCloseEndsLiveStreams: a live event stream through the admin host
// ends when the edge closes, so that closing is graceful and prompt.
func TestCloseEndsLiveStreams(t *testing.T) {
	p := edgetest.StartPebble(t)
	n := startNode(t, t.TempDir(), acmeConfig(p, t.TempDir(), "example.com"))
	p.Attach(n.edge.HTTPAddr(), n.edge.HTTPSAddr())
	req, _ := http.NewRequest("GET", "https://fazt.example.com/v1/events/live", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := dialTo(n.edge.HTTPSAddr(), p.Issued).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live stream: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.edge.Close(ctx); err != nil {
		t.Fatalf("close with a live stream open: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
}
