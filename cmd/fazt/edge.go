package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"sync"

	"github.com/caddyserver/certmagic"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"

	"github.com/fazt-sh/fazt/kernel"
	"github.com/fazt-sh/fazt/kernel/edge"
	"github.com/fazt-sh/fazt/verticals/apps"
)

// EdgeCertsPath lists the edge's certificates (fazt certs list).
const EdgeCertsPath = "/v1/edge/certs"

// edgeOptions are serve's flags for the public edge (kernel/edge).
type edgeOptions struct {
	domain    string
	email     string
	acmeCA    string
	acmeRoot  string
	adminHost string
	httpAddr  string
	httpsAddr string
	proxies   []string
	hsts      []string
	rate      float64
	burst     int
}

func (a *app) edgeFlags(f *pflag.FlagSet, o *edgeOptions) {
	f.StringVar(&o.domain, "domain", a.envOr("FAZT_DOMAIN", ""), "serve the apps publicly at NAME.DOMAIN, over HTTPS with certificates obtained automatically; DNS: point *.DOMAIN (and each custom domain) at this machine (env FAZT_DOMAIN)")
	f.StringVar(&o.email, "email", a.envOr("FAZT_EMAIL", ""), "contact email of the ACME account, for expiry warnings from the CA; required with --domain (env FAZT_EMAIL)")
	f.StringVar(&o.acmeCA, "acme-ca", a.envOr("FAZT_ACME_CA", ""), "ACME directory URL of the CA (default Let's Encrypt; its staging CA is https://acme-staging-v02.api.letsencrypt.org/directory)")
	f.StringVar(&o.acmeRoot, "acme-ca-root", "", "PEM file of the root that signs the --acme-ca server's own HTTPS certificate (a private CA)")
	f.StringVar(&o.adminHost, "admin-host", "", "host serving the API over HTTPS through the edge, with the token (default fazt.DOMAIN)")
	f.StringVar(&o.httpAddr, "http-addr", edge.DefaultHTTPAddr, "the edge's HTTP listener (ACME challenges, redirects to HTTPS); port 0 picks a free one")
	f.StringVar(&o.httpsAddr, "https-addr", edge.DefaultHTTPSAddr, "the edge's HTTPS listener; port 0 picks a free one")
	f.StringSliceVar(&o.proxies, "trusted-proxy", nil, "address or CIDR of a proxy in front of the edge whose X-Forwarded-For is believed (repeatable)")
	f.Float64Var(&o.rate, "site-rate", edge.DefaultRate, "requests per second each client address may make to the public hosts, sustained (a token bucket; more get 429)")
	f.IntVar(&o.burst, "site-burst", edge.DefaultBurst, "requests a client address may make to the public hosts at once, above --site-rate")
	f.StringSliceVar(&o.hsts, "hsts", nil, "app whose HTTPS answers carry Strict-Transport-Security (repeatable; off by default, since browsers remember it for a year)")
}

// CertsBucket is the JetStream key-value bucket of the edge's
// certificates, keys, ACME accounts and locks.
const CertsBucket = "fazt_edge_certs"

// siteRoutes holds the routes the apps vertical registration made for
// each kernel, until serve hands them to the edge (serve takes them out
// again: see setupEdge).
var siteRoutes sync.Map // *kernel.Kernel → *apps.Routes

// setupEdge declares the edge on k before Open: its reactor, its route
// and its metrics. nil without --domain.
func (a *app) setupEdge(k *kernel.Kernel, dir string, o edgeOptions, changed func(flag string) bool) (*edge.Edge, error) {
	r, ok := siteRoutes.LoadAndDelete(k)
	if o.domain == "" {
		for _, f := range []string{"email", "acme-ca", "acme-ca-root", "admin-host", "http-addr", "https-addr", "trusted-proxy", "hsts", "site-rate", "site-burst"} {
			if changed(f) {
				return nil, fmt.Errorf("--%s is a setting of the public edge, which needs --domain", f)
			}
		}
		return nil, nil
	}
	if !ok {
		return nil, fmt.Errorf("--domain: this binary has no apps vertical for the edge to serve")
	}
	if !(o.rate > 0) || o.burst <= 0 {
		return nil, fmt.Errorf("--site-rate %v and --site-burst %d: both must be above 0", o.rate, o.burst)
	}
	if o.email == "" && o.acmeCA == "" {
		return nil, fmt.Errorf("--domain needs --email: the CA's contact for this server's certificates")
	}
	cfg := edge.Config{
		Domain:    o.domain,
		AdminHost: o.adminHost,
		Admin:     k.Handler(),
		Routes:    r.(*apps.Routes),
		Log:       k.Log(),
		Logger:    k.Logger,
		HTTPAddr:  o.httpAddr,
		HTTPSAddr: o.httpsAddr,
		Email:     o.email,
		CA:        o.acmeCA,
		// Certificates live beside the log, shared by every node of a
		// cluster: the bucket is opened once the log is (edge Start).
		OpenStorage: func(ctx context.Context) (certmagic.Storage, error) {
			return edge.OpenKVStorage(ctx, k.Log(), CertsBucket)
		},
		HSTSApps: o.hsts,
		Rate:     rate.Limit(o.rate),
		Burst:    o.burst,
	}
	if o.acmeRoot != "" {
		b, err := os.ReadFile(o.acmeRoot)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-root: %w", err)
		}
		cfg.CARoots = x509.NewCertPool()
		if !cfg.CARoots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--acme-ca-root %s holds no PEM certificate", o.acmeRoot)
		}
	}
	for _, p := range o.proxies {
		pre, err := netip.ParsePrefix(p)
		if err != nil {
			ip, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxy %q: want an address or a CIDR such as 10.0.0.0/8", p)
			}
			pre = netip.PrefixFrom(ip, ip.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pre)
	}
	e, err := edge.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := k.RegisterReactor(e.Reactor()); err != nil {
		return nil, err
	}
	if err := k.Handle("GET "+EdgeCertsPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		certs, err := e.Certificates(r.Context())
		if err != nil {
			k.WriteError(w, r, err)
			return
		}
		kernel.WriteJSON(w, http.StatusOK, map[string]any{"certificates": append([]edge.Cert{}, certs...)})
	})); err != nil {
		return nil, err
	}
	if err := k.Metrics().Register(e.Collector()); err != nil {
		return nil, err
	}
	return e, nil
}

// serveEdge runs the kernel with the edge in front until ctx ends: the
// edge stops first, so that no public request reaches a closing kernel.
func (a *app) serveEdge(ctx context.Context, k *kernel.Kernel, e *edge.Edge, st *serveState, statePath string, serve func(context.Context) error) error {
	if e == nil {
		return serve(ctx)
	}
	if err := e.Start(ctx); err != nil {
		return errors.Join(err, k.Close(context.WithoutCancel(ctx)))
	}
	st.EdgeHTTP, st.EdgeHTTPS = e.HTTPAddr(), e.HTTPSAddr()
	if err := writeFileAtomic(statePath, st); err != nil {
		return errors.Join(err, e.Close(context.WithoutCancel(ctx)), k.Close(context.WithoutCancel(ctx)))
	}
	fmt.Fprintf(a.stdout, "edge serving https://NAME.%s/ on %s (http on %s)\n", e.Domain(), st.EdgeHTTPS, st.EdgeHTTP)
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop, res := make(chan struct{}), make(chan error, 1)
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case <-stop: // the kernel's server failed first
		case err = <-e.Failed():
			err = fmt.Errorf("edge: %w", err)
		}
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer ccancel()
		res <- errors.Join(err, e.Close(cctx))
		cancel()
	}()
	err := serve(kctx)
	close(stop)
	return errors.Join(err, <-res)
}
