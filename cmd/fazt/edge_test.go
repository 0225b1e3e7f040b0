package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fazt-sh/fazt/kernel/edge/edgetest"
)

// TestServeDomain: `fazt serve --domain` puts the edge in front: a
// deployed app is served over HTTPS at NAME.DOMAIN with a certificate
// from the CA given by --acme-ca, the admin host answers the API with
// the token, `fazt certs list` and /metrics show the certificate.
func TestServeDomain(t *testing.T) {
	edgetest.SetEnv()
	p := edgetest.StartPebble(t)
	root := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(root, p.APIPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := startServer(t, dir, "--domain", "example.com", "--email", "ops@example.com", "--acme-ca", p.Dir,
		"--acme-ca-root", root, "--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0")
	var st serveState
	waitFor(t, "the edge's addresses in serve.json", func() bool {
		var err error
		st, err = readState(dir)
		return err == nil && st.EdgeHTTPS != ""
	})
	p.Attach(st.EdgeHTTP, st.EdgeHTTPS)

	site := t.TempDir()
	writeTree(t, site, map[string]string{"index.html": "hello from the edge"})
	if _, errOut, err := fazt(t, nil, "", "deploy", site, "--app", "hello", "--data", dir); err != nil {
		t.Fatalf("deploy: %v\n%s", err, errOut)
	}
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, st.EdgeHTTPS)
		},
		TLSClientConfig: &tls.Config{RootCAs: p.Issued},
	}}
	fetch := func(url, token string) (int, string, error) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	// The edge serves the app once it has followed the deploy's event
	// (a fold after deploy returns): until then the handshake fails.
	var (
		code int
		body string
		err  error
	)
	deadline := time.Now().Add(30 * time.Second)
	for code, body, err = fetch("https://hello.example.com/", ""); err != nil && time.Now().Before(deadline); code, body, err = fetch("https://hello.example.com/", "") {
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || code != 200 || body != "hello from the edge" {
		t.Fatalf("GET https://hello.example.com/: %d %q %v", code, body, err)
	}
	if code, body, err := fetch("https://fazt.example.com/v1/apps", s.token); err != nil || code != 200 || !strings.Contains(body, `"hello"`) {
		t.Fatalf("GET https://fazt.example.com/v1/apps: %d %q %v", code, body, err)
	}
	out, errOut, err := fazt(t, nil, "", "certs", "list", "--data", dir)
	if err != nil {
		t.Fatalf("certs list: %v\n%s", err, errOut)
	}
	for _, want := range []string{"hello.example.com", "fazt.example.com", "Pebble"} {
		if !strings.Contains(out, want) {
			t.Errorf("certs list lacks %q:\n%s", want, out)
		}
	}
	_, metrics, _ := s.do(t, "GET", "/metrics", nil, nil)
	if !strings.Contains(metrics, `fazt_edge_certificate_expiry_timestamp_seconds{issuer=`) || !strings.Contains(metrics, `names="hello.example.com"`) {
		t.Errorf("/metrics lacks the certificate's expiry:\n%s", grepLines(metrics, "fazt_edge"))
	}
}

// TestServeDomainNeedsEmail: --domain without --email is a usage error,
// and so is an edge setting without --domain.
func TestServeDomainNeedsEmail(t *testing.T) {
	_, _, err := fazt(t, nil, "", "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--domain", "example.com")
	var u *usageError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "--email") {
		t.Fatalf("serve --domain without --email: %v", err)
	}
	_, _, err = fazt(t, nil, "", "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--email", "ops@example.com")
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "needs --domain") {
		t.Fatalf("serve --email without --domain: %v", err)
	}
	for _, bad := range [][]string{{"--site-rate", "0"}, {"--site-rate", "-5"}, {"--site-rate", "NaN"}, {"--site-burst", "0"}} {
		args := append([]string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--domain", "example.com", "--email", "ops@example.com"}, bad...)
		if _, _, err := fazt(t, nil, "", args...); !errors.As(err, &u) || !strings.Contains(err.Error(), "above 0") {
			t.Errorf("serve %v: %v, want a usage error", bad, err)
		}
	}
	if _, _, err := fazt(t, nil, "", "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--site-rate", "500"); !errors.As(err, &u) || !strings.Contains(err.Error(), "needs --domain") {
		t.Errorf("serve --site-rate without --domain: %v", err)
	}
}

// TestCertsListWithoutEdge: on a server started without --domain, certs
// list says how to turn the edge on.
func TestCertsListWithoutEdge(t *testing.T) {
	dir := t.TempDir()
	startServer(t, dir)
	_, _, err := fazt(t, nil, "", "certs", "list", "--data", dir)
	if err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Fatalf("certs list without an edge: %v", err)
	}
}
