// Package edgetest runs the real ACME protocol on loopback for tests of
// the edge: an in-process Pebble CA (github.com/letsencrypt/pebble/v2)
// whose validation authority resolves every name to 127.0.0.1 through an
// in-process DNS server (github.com/miekg/dns) and connects to the
// edge's ports.
//
// Pebble reads its tunables from the environment when a validation
// authority is made: call SetEnv in TestMain first.
package edgetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// SetEnv makes Pebble fit for loopback tests: no random validation
// delays, no rejected nonces, no reuse of an earlier authorization (each
// order is validated against the test's own listeners). Pebble's
// front end logs to the standard logger: SetEnv silences it.
func SetEnv() {
	os.Setenv("PEBBLE_VA_NOSLEEP", "1")
	os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	os.Setenv("PEBBLE_AUTHZREUSE", "0")
	log.SetOutput(io.Discard)
}

// pebble is an in-process Pebble ACME CA whose validation authority
// resolves names through an in-process DNS server answering 127.0.0.1
// and connects to an edge's ports (Attach).
type Pebble struct {
	Dir    string         // the ACME directory URL
	API    *x509.CertPool // trusts the ACME server itself
	APIPEM []byte         // the same root in PEM (for --acme-ca-root)
	Issued *x509.CertPool // trusts what Pebble issues
	Orders atomic.Int64   // new-order requests seen

	dns       string
	logger    *log.Logger
	store     *db.MemoryStore
	authority *ca.CAImpl
	h         atomic.Pointer[http.Handler]
}

func StartPebble(t testing.TB) *Pebble {
	t.Helper()
	p := &Pebble{dns: StartDNS(t), logger: log.New(io.Discard, "", 0), store: db.NewMemoryStore()}
	p.authority = ca.New(p.logger, p.store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := p.h.Load()
		if h == nil {
			http.Error(w, "pebble is not attached to an edge yet", http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.Orders.Add(1)
		}
		(*h).ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = p.logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.Dir = srv.URL + wfe.DirectoryPath
	p.API = x509.NewCertPool()
	p.API.AddCert(srv.Certificate())
	p.APIPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	p.Issued = x509.NewCertPool()
	p.Issued.AddCert(p.authority.GetRootCert(0).Cert)
	return p
}

// Attach points Pebble's validation authority at an edge's listeners.
func (p *Pebble) Attach(httpAddr, httpsAddr string) {
	_, hp, _ := net.SplitHostPort(httpAddr)
	_, tp, _ := net.SplitHostPort(httpsAddr)
	httpPort, _ := strconv.Atoi(hp)
	tlsPort, _ := strconv.Atoi(tp)
	validator := va.New(p.logger, httpPort, tlsPort, false, p.dns, p.store)
	front := wfe.New(p.logger, p.store, validator, p.authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	p.h.Store(&h)
}

// StartDNS serves A 127.0.0.1 for every name, over TCP (what Pebble's
// validation authority asks with), and returns its address.
func StartDNS(t testing.TB) string {
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
