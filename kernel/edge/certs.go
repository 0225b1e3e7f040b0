package edge

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/reactor"
)

// ReactorName names the reactor that obtains certificates as soon as a
// host is bound (its durable consumer is "reactor_edge_certs").
const ReactorName = "edge_certs"

// startTLS sets up certmagic: on-demand issuance decided by the routes
// table, challenges answered on the edge's own listeners.
func (e *Edge) startTLS() error {
	var magic *certmagic.Config
	e.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zap.NewNop(),
	})
	magic = certmagic.New(e.cache, certmagic.Config{
		Storage: e.store(),
		Logger:  zap.NewNop(),
		OnDemand: &certmagic.OnDemandConfig{
			DecisionFunc: e.decide,
		},
		OnEvent: e.onEvent,
	})
	host, httpPort := splitPort(e.httpLn.Addr().String())
	_, tlsPort := splitPort(e.httpsLn.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	e.issuer = certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:           e.cfg.CA,
		Email:        e.cfg.Email,
		Agreed:       true,
		TrustedRoots: e.cfg.CARoots,

		DisableHTTPChallenge:    e.cfg.DisableHTTPChallenge,
		DisableTLSALPNChallenge: e.cfg.DisableTLSALPNChallenge,
		// The solvers find these ports taken by the edge, which answers
		// the challenges itself (HandleHTTPChallenge, the TLS config).
		ListenHost:     host,
		AltHTTPPort:    httpPort,
		AltTLSALPNPort: tlsPort,
		Logger:         zap.NewNop(),
	})
	if e.cfg.CA == "" {
		e.issuer.CA = certmagic.LetsEncryptProductionCA
	}
	magic.Issuers = []certmagic.Issuer{e.issuer}
	e.magic.Store(magic)
	return nil
}

func splitPort(addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

// decide is the on-demand decision: a certificate only for a host bound
// now, so that no one can make the edge order certificates for names
// they point at it.
func (e *Edge) decide(_ context.Context, name string) error {
	if e.Serves(name) {
		return nil
	}
	return fmt.Errorf("%w: %s is not bound to any app", eventlog.ErrNotFound, name)
}

// certErrors keeps the last failure per name, until it succeeds.
type certErrors struct {
	mu sync.Mutex
	m  map[string]certError
}

type certError struct {
	msg string
	at  time.Time
}

func (c *certErrors) set(name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]certError{}
	}
	if err == nil {
		delete(c.m, name)
		return
	}
	c.m[name] = certError{msg: err.Error(), at: time.Now()}
}

func (c *certErrors) snapshot() map[string]certError {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]certError, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (e *Edge) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	switch event {
	case "cert_obtained":
		e.errs.set(name, nil)
		e.log.Info("certificate obtained", "name", name, "issuer", data["issuer"], "renewal", data["renewal"])
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		e.errs.set(name, err)
		e.log.Warn("obtaining a certificate failed: check that the name's DNS points at this server and ports 80 and 443 are reachable", "name", name, "err", err)
	}
	return nil
}

// Obtain gets a certificate for host now, unless one is cached or
// stored, and caches it: what the first visitor would otherwise wait
// for. The host must be bound.
func (e *Edge) Obtain(ctx context.Context, host string) error {
	magic := e.magic.Load()
	if magic == nil {
		return fmt.Errorf("edge: %w: not serving HTTPS yet", eventlog.ErrUnavailable)
	}
	if err := e.decide(ctx, host); err != nil {
		return err
	}
	if e.hasValidCert(host) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ObtainTimeout)
	defer cancel()
	if err := magic.ObtainCertSync(ctx, host); err != nil {
		return err
	}
	_, err := magic.CacheManagedCertificate(ctx, host)
	return err
}

// Reactor is the reactor that obtains certificates for the hosts an
// event binds, so that the first visitor does not wait for the CA. The
// kernel runs it (kernel.RegisterReactor); a host unbound again before
// its turn gets none. A failure is retried by the reactor and, once it
// gives up, visible in `fazt reactors status`; the first handshake
// then tries again.
func (e *Edge) Reactor() reactor.Reactor {
	return reactor.Reactor{
		Name:    ReactorName,
		Filter:  e.cfg.Routes.Filter(),
		Backoff: []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute},
		Handle:  e.react,
	}
}

func (e *Edge) react(ctx context.Context, ev eventlog.Event, _ string) error {
	if e.cfg.Plain {
		return nil
	}
	names := e.cfg.Routes.Bound(ev)
	if len(names) == 0 {
		return nil
	}
	if e.magic.Load() == nil {
		return fmt.Errorf("edge: %w: not serving HTTPS yet", eventlog.ErrUnavailable)
	}
	if err := e.Refresh(ctx, ev.Seq); err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		host := n
		if !strings.Contains(n, ".") {
			if e.cfg.Domain == "" {
				continue
			}
			host = n + "." + e.cfg.Domain
		}
		if !e.Serves(host) {
			continue // unbound since, or an app without a live deploy
		}
		if err := e.Obtain(ctx, host); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", host, err))
		}
	}
	return errors.Join(errs...)
}

// Cert is one certificate as `fazt certs list` and /metrics show it. A
// name whose last attempt failed and that has no certificate yet is
// listed with only Names and the error; a bound host with neither (its
// certificate comes at its first handshake) with only Names and Bound.
type Cert struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer,omitempty"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Bound     bool      `json:"bound"`
	LastError string    `json:"last_error,omitempty"`
	ErrorAt   time.Time `json:"error_at,omitzero"`
}

// Certificates lists the certificates in storage, with the last error
// of each name (this node's attempts).
func (e *Edge) Certificates(ctx context.Context) ([]Cert, error) {
	var out []Cert
	errs := e.errs.snapshot()
	if st := e.store(); st != nil {
		keys, err := st.List(ctx, "certificates", true)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !strings.HasSuffix(k, ".crt") {
				continue
			}
			b, err := st.Load(ctx, k)
			if err != nil {
				continue // removed meanwhile
			}
			blk, _ := pem.Decode(b)
			if blk == nil {
				continue
			}
			leaf, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				continue
			}
			var stored time.Time
			if info, err := st.Stat(ctx, k); err == nil {
				stored = info.Modified
			}
			c := Cert{Names: leaf.DNSNames, Issuer: issuerOf(k, leaf), NotAfter: leaf.NotAfter}
			for _, n := range c.Names {
				c.Bound = c.Bound || e.Serves(n)
				if ce, ok := errs[n]; ok {
					delete(errs, n)
					// A failure before this certificate was stored is
					// over (its success may not have been reported yet).
					if ce.at.After(stored) {
						c.LastError, c.ErrorAt = ce.msg, ce.at
					}
				}
			}
			out = append(out, c)
		}
	}
	for n, ce := range errs {
		out = append(out, Cert{Names: []string{n}, Bound: e.Serves(n), LastError: ce.msg, ErrorAt: ce.at})
	}
	if !e.cfg.Plain {
		// Bound hosts without a certificate yet: obtained at their first
		// handshake.
		covered := map[string]bool{}
		for _, c := range out {
			for _, n := range c.Names {
				covered[n] = true
			}
		}
		hosts := e.Hosts()
		slices.Sort(hosts)
		for _, h := range hosts {
			if !covered[h] {
				out = append(out, Cert{Names: []string{h}, Bound: true})
			}
		}
	}
	return out, nil
}

// issuerOf names the issuer: the certificate's issuer CN, and the ACME
// directory it came from (the storage key's second part).
func issuerOf(key string, leaf *x509.Certificate) string {
	parts := strings.Split(key, "/")
	iss := leaf.Issuer.CommonName
	if len(parts) > 1 && parts[1] != "" {
		iss += " (" + parts[1] + ")"
	}
	return iss
}

// Collector exports each certificate's expiry and whether its last
// attempt failed, for /metrics.
func (e *Edge) Collector() prometheus.Collector { return collector{e} }

var (
	expiryDesc = prometheus.NewDesc("fazt_edge_certificate_expiry_timestamp_seconds",
		"When each certificate the edge holds expires (Unix time).", []string{"names", "issuer"}, nil)
	failedDesc = prometheus.NewDesc("fazt_edge_certificate_failing",
		"1 for a name whose last attempt to obtain or renew its certificate failed (fazt certs list shows why).", []string{"name"}, nil)
	hostsDesc = prometheus.NewDesc("fazt_edge_hosts", "Hosts the edge serves now.", nil, nil)
)

type collector struct{ e *Edge }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- failedDesc
	ch <- hostsDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(hostsDesc, prometheus.GaugeValue, float64(len(c.e.table.Load().hosts)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	certs, err := c.e.Certificates(ctx)
	if err != nil {
		c.e.log.Warn("listing certificates for /metrics failed", "err", err)
		return
	}
	for _, ct := range certs {
		if !ct.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(ct.NotAfter.Unix()), strings.Join(ct.Names, ","), ct.Issuer)
		}
		if ct.LastError != "" {
			for _, n := range ct.Names {
				ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.GaugeValue, 1, n)
			}
		}
	}
}

// store is the certificate storage, nil before Start.
func (e *Edge) store() certmagic.Storage {
	if p := e.storage.Load(); p != nil {
		return *p
	}
	return nil
}
