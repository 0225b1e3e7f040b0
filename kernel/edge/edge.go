package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"golang.org/x/time/rate"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel"
)

// Defaults of Config.
const (
	DefaultHTTPAddr          = ":80"
	DefaultHTTPSAddr         = ":443"
	DefaultAdminLabel        = "fazt" // the admin host is fazt.<domain>
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxBodyBytes      = 1 << 20
	DefaultRate              = 100 // requests per second per client, public hosts
	DefaultBurst             = 200
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerClient = 256
	DefaultObtainTimeout     = 3 * time.Minute
	DefaultHSTSMaxAge        = 365 * 24 * time.Hour
)

// Table is the routes as the read model holds them.
type Table struct {
	// Apps are the apps that exist: NAME.<domain> serves app NAME.
	Apps []string
	// Aliases: ALIAS.<domain> serves the app.
	Aliases map[string]string
	// Domains: a custom domain (a full host name) serves the app.
	Domains map[string]string
}

// Routes is the read model the edge serves from. A vertical implements
// it (the apps vertical does) and cmd/fazt hands it to the edge: the
// edge knows nothing of apps but this.
type Routes interface {
	// Load returns the routes once the read model has folded the log up
	// to minSeq at least.
	Load(ctx context.Context, minSeq uint64) (Table, error)
	// Handler serves one app.
	Handler(app string) http.Handler
	// Filter selects the events that change the routes.
	Filter() eventlog.Filter
	// Bound returns the names an event of Filter binds: an app or alias
	// name (served at NAME.<domain>) or a custom domain (has a dot).
	// Nothing for events that unbind.
	Bound(e eventlog.Event) []string
}

// Config configures an Edge. Routes, Log and (unless Plain) Storage
// and Email or CA are required.
type Config struct {
	// Domain is the base domain: NAME.<Domain> serves app NAME. Empty:
	// only custom domains are served.
	Domain string
	// AdminHost serves Admin (the kernel's API, which checks the token)
	// over HTTPS only. Default "fazt.<Domain>"; none without Domain.
	AdminHost string
	Admin     http.Handler
	Routes    Routes
	Log       *eventlog.Log
	Logger    *slog.Logger

	// HTTPAddr and HTTPSAddr are the listen addresses
	// (DefaultHTTPAddr, DefaultHTTPSAddr); port 0 picks a free one.
	HTTPAddr, HTTPSAddr string
	// Plain serves the apps over HTTP only: no HTTPS listener, no
	// certificates, no redirect, no admin host. For a TLS-terminating
	// proxy in front, and for measuring.
	Plain bool

	// Email is the ACME account's contact. CA is the ACME directory URL
	// (Let's Encrypt's when empty); CARoots, when set, are the roots
	// trusted for talking to the CA (a private CA).
	Email   string
	CA      string
	CARoots *x509.CertPool
	// DisableHTTPChallenge and DisableTLSALPNChallenge turn one of the
	// two ACME challenges off (both are on by default: HTTP-01 on the
	// HTTP listener, TLS-ALPN-01 on the HTTPS one).
	DisableHTTPChallenge    bool
	DisableTLSALPNChallenge bool
	// Storage keeps certificates, keys and locks: shared by every node.
	Storage certmagic.Storage
	// OpenStorage, when Storage is nil, opens the storage at Start: for
	// a storage on the log (OpenKVStorage), which is open only by then.
	OpenStorage func(ctx context.Context) (certmagic.Storage, error)
	// ObtainTimeout bounds one certificate order (DefaultObtainTimeout).
	ObtainTimeout time.Duration

	// TrustedProxies are the addresses whose X-Forwarded-For is believed;
	// the client is the last address in it that is not a trusted proxy.
	// Requests from anyone else keep their peer address.
	TrustedProxies []netip.Prefix
	// Rate and Burst limit public hosts per client address
	// (DefaultRate, DefaultBurst).
	Rate  rate.Limit
	Burst int
	// MaxBodyBytes bounds request bodies on public hosts
	// (DefaultMaxBodyBytes); the admin host has the kernel's limits.
	MaxBodyBytes int64
	// HSTSApps are the apps whose HTTPS answers carry
	// Strict-Transport-Security (HSTSMaxAge, DefaultHSTSMaxAge); none by
	// default, since it cannot be taken back for the max-age.
	HSTSApps   []string
	HSTSMaxAge time.Duration

	ReadHeaderTimeout time.Duration // DefaultReadHeaderTimeout
	WriteTimeout      time.Duration // DefaultWriteTimeout
	IdleTimeout       time.Duration // DefaultIdleTimeout
	MaxHeaderBytes    int           // DefaultMaxHeaderBytes
	MaxConns          int           // DefaultMaxConns, per listener
	MaxConnsPerClient int           // DefaultMaxConnsPerClient; negative: no cap
}

// Edge is the public front door: see the package doc.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	table   atomic.Pointer[table]
	storage atomic.Pointer[certmagic.Storage] // set by Start
	lim     *kernel.ClientLimiter
	hsts    map[string]bool

	loadMu    sync.Mutex
	loadedSeq uint64

	// TLS: nil with Plain, set by Start.
	magic  atomic.Pointer[certmagic.Config]
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
	errs   certErrors

	httpLn, httpsLn   net.Listener
	httpSrv, httpsSrv *http.Server
	running           context.Context // ends when Close starts
	stop              context.CancelFunc
	done              sync.WaitGroup
	closeOnce         sync.Once
	served            chan error
}

// route is what one host serves.
type route struct {
	h     http.Handler
	app   string
	admin bool
	hsts  bool
}

// table is the immutable host → route map the edge serves from.
type table struct {
	hosts map[string]*route
}

// New checks cfg and returns an edge; Start opens its listeners.
func New(cfg Config) (*Edge, error) {
	if cfg.Routes == nil || cfg.Log == nil {
		return nil, fmt.Errorf("edge: %w: Routes and Log are required", eventlog.ErrInvalid)
	}
	cfg.Domain = strings.TrimSuffix(strings.ToLower(cfg.Domain), ".")
	if cfg.AdminHost == "" && cfg.Domain != "" {
		cfg.AdminHost = DefaultAdminLabel + "." + cfg.Domain
	}
	cfg.AdminHost = strings.TrimSuffix(strings.ToLower(cfg.AdminHost), ".")
	if !cfg.Plain {
		if cfg.Storage == nil && cfg.OpenStorage == nil {
			return nil, fmt.Errorf("edge: %w: no certificate storage: give Config.Storage or Config.OpenStorage", eventlog.ErrInvalid)
		}
		if cfg.Email == "" && cfg.CA == "" {
			return nil, fmt.Errorf("edge: %w: an ACME contact email is required (--email you@example.com), so the CA can warn you of expiring certificates", eventlog.ErrInvalid)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.HTTPSAddr == "" {
		cfg.HTTPSAddr = DefaultHTTPSAddr
	}
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.ObtainTimeout, DefaultObtainTimeout)
	def(&cfg.HSTSMaxAge, DefaultHSTSMaxAge)
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerClient == 0 {
		cfg.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if len(cfg.TrustedProxies) > 0 {
		cfg.MaxConnsPerClient = -1 // every connection comes from the proxy
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Edge{cfg: cfg, log: cfg.Logger.With("service", "edge"), lim: kernel.NewClientLimiter(cfg.Rate, cfg.Burst), hsts: map[string]bool{}}
	for _, a := range cfg.HSTSApps {
		e.hsts[a] = true
	}
	e.table.Store(&table{hosts: map[string]*route{}})
	return e, nil
}

// Start loads the routes, opens the listeners and serves until Close.
func (e *Edge) Start(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.running, e.stop = ctx, cancel
	defer func() {
		if err != nil {
			_ = e.Close(context.Background())
		}
	}()
	last, err := e.cfg.Log.LastSeq(ctx)
	if err != nil {
		return err
	}
	loaded := true
	if err := e.Refresh(ctx, last); err != nil {
		// The read model is catching up or halted: serve no host until
		// it can be read (the watcher keeps trying), rather than not at all.
		e.log.Warn("the routes cannot be read yet; no host is served until they can", "err", err)
		loaded = false
	}
	if e.httpLn, err = net.Listen("tcp", e.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("edge: listen on %s for HTTP: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE; --http-addr picks another)", e.cfg.HTTPAddr, err)
	}
	if !e.cfg.Plain {
		if e.httpsLn, err = net.Listen("tcp", e.cfg.HTTPSAddr); err != nil {
			return fmt.Errorf("edge: listen on %s for HTTPS: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE; --https-addr picks another)", e.cfg.HTTPSAddr, err)
		}
		st := e.cfg.Storage
		if st == nil {
			if st, err = e.cfg.OpenStorage(ctx); err != nil {
				return fmt.Errorf("edge: certificate storage: %w", err)
			}
		}
		e.storage.Store(&st)
		if err := e.startTLS(); err != nil {
			return err
		}
	}
	e.served = make(chan error, 2)
	e.httpSrv = e.server(http.HandlerFunc(e.serveHTTP))
	e.serve(func() error {
		return e.httpSrv.Serve(kernel.LimitListener(e.httpLn, e.cfg.MaxConns, e.cfg.MaxConnsPerClient))
	})
	if e.httpsLn != nil {
		e.httpsSrv = e.server(http.HandlerFunc(e.serveHTTPS))
		e.httpsSrv.TLSConfig = e.tlsConfig()
		e.serve(func() error {
			return e.httpsSrv.ServeTLS(kernel.LimitListener(e.httpsLn, e.cfg.MaxConns, e.cfg.MaxConnsPerClient), "", "")
		})
	}
	e.done.Add(1)
	go func() {
		defer e.done.Done()
		e.watch(ctx, last, !loaded)
	}()
	return nil
}

func (e *Edge) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: e.cfg.ReadHeaderTimeout,
		WriteTimeout:      e.cfg.WriteTimeout,
		IdleTimeout:       e.cfg.IdleTimeout,
		MaxHeaderBytes:    e.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

func (e *Edge) serve(fn func() error) {
	go func() {
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.served <- err
		}
	}()
}

// Domain is the base domain (Config.Domain, normalised).
func (e *Edge) Domain() string { return e.cfg.Domain }

// Failed yields an error when a listener stops serving by itself.
func (e *Edge) Failed() <-chan error { return e.served }

// HTTPAddr and HTTPSAddr are the addresses the listeners got ("" when
// not listening).
func (e *Edge) HTTPAddr() string  { return addrOf(e.httpLn) }
func (e *Edge) HTTPSAddr() string { return addrOf(e.httpsLn) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Close stops the listeners (letting requests in flight finish until ctx
// ends, then cutting them), the routes watcher and certificate
// maintenance.
func (e *Edge) Close(ctx context.Context) error {
	var err error
	e.closeOnce.Do(func() {
		if e.stop != nil {
			e.stop()
		}
		for _, s := range []*http.Server{e.httpSrv, e.httpsSrv} {
			if s != nil {
				if serr := s.Shutdown(ctx); serr != nil {
					// Requests still running (live streams through the
					// admin host): cut them.
					err = errors.Join(err, serr, s.Close())
				}
			}
		}
		for _, ln := range []net.Listener{e.httpLn, e.httpsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		e.done.Wait()
		if e.cache != nil {
			e.cache.Stop()
		}
	})
	return err
}

// watch follows the log for route changes and swaps the table once the
// read model has folded each. Changes coming faster than a reload are
// taken together.
func (e *Edge) watch(ctx context.Context, after uint64, reload bool) {
	var latest atomic.Uint64
	latest.Store(after)
	kick := make(chan struct{}, 1)
	if reload {
		kick <- struct{}{}
	}
	e.done.Add(1)
	go func() {
		defer e.done.Done()
		for ctx.Err() == nil {
			err := e.cfg.Log.Subscribe(ctx, after, e.cfg.Routes.Filter(), func(ev eventlog.Event) error {
				after = ev.Seq
				latest.Store(ev.Seq)
				select {
				case kick <- struct{}{}:
				default:
				}
				return nil
			})
			if ctx.Err() == nil {
				e.log.Warn("following the log for route changes failed; trying again", "err", err)
				sleep(ctx, time.Second)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		for ctx.Err() == nil {
			err := e.Refresh(ctx, latest.Load())
			if err == nil {
				break
			}
			e.log.Warn("reloading the routes failed; serving the previous ones and trying again", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Refresh loads the routes as of minSeq at least and swaps them in. A
// request sees the table before or after, never a mix.
func (e *Edge) Refresh(ctx context.Context, minSeq uint64) error {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	if minSeq != 0 && minSeq <= e.loadedSeq {
		return nil
	}
	t, err := e.cfg.Routes.Load(ctx, minSeq)
	if err != nil {
		return err
	}
	old := e.table.Swap(e.build(t))
	if magic := e.magic.Load(); magic != nil {
		// Unbound hosts leave the certificate cache: their handshakes
		// fail from now on, and certmagic stops renewing them here.
		var gone []certmagic.SubjectIssuer
		for h := range old.hosts {
			if !e.Serves(h) {
				gone = append(gone, certmagic.SubjectIssuer{Subject: h})
			}
		}
		if len(gone) > 0 {
			e.cache.RemoveManaged(gone)
		}
	}
	if minSeq > e.loadedSeq {
		e.loadedSeq = minSeq
	}
	return nil
}

// build makes the host → route map of t.
func (e *Edge) build(t Table) *table {
	hosts := map[string]*route{}
	handlers := map[string]*route{}
	get := func(app string) *route {
		r := handlers[app]
		if r == nil {
			r = &route{h: e.cfg.Routes.Handler(app), app: app, hsts: e.hsts[app]}
			handlers[app] = r
		}
		return r
	}
	if e.cfg.Domain != "" {
		for _, a := range t.Apps {
			hosts[a+"."+e.cfg.Domain] = get(a)
		}
		for alias, a := range t.Aliases {
			hosts[alias+"."+e.cfg.Domain] = get(a)
		}
	}
	for d, a := range t.Domains {
		hosts[d] = get(a)
	}
	if e.cfg.AdminHost != "" && e.cfg.Admin != nil && !e.cfg.Plain {
		// The admin host wins over an app of the same name.
		hosts[e.cfg.AdminHost] = &route{h: e.cfg.Admin, admin: true}
	}
	return &table{hosts: hosts}
}

// Hosts returns the hosts the edge serves now.
func (e *Edge) Hosts() []string {
	m := e.table.Load().hosts
	out := make([]string, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	return out
}

// Serves reports whether host is bound now.
func (e *Edge) Serves(host string) bool {
	_, ok := e.table.Load().hosts[host]
	return ok
}

// hostOf reads a Host header: port dropped, lower case, no trailing dot.
func hostOf(raw string) string {
	h := raw
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// serveHTTP answers the plain HTTP listener: ACME HTTP-01 challenges,
// then a redirect to HTTPS for bound hosts (Plain: the app itself), and
// a plain 404 for the rest.
func (e *Edge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if e.issuer != nil && e.issuer.HandleHTTPChallenge(w, r) {
		return
	}
	host := hostOf(r.Host)
	rt := e.table.Load().hosts[host]
	switch {
	case rt == nil:
		notFound(w)
	case e.cfg.Plain:
		e.serveRoute(w, r, rt, false)
	default:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// A body sent in clear text is already exposed; do not let
			// clients get used to it working.
			w.Header().Set("Connection", "close")
		}
		target := "https://" + host
		if _, port, err := net.SplitHostPort(e.HTTPSAddr()); err == nil && port != "443" {
			target += ":" + port
		}
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
	}
}

// serveHTTPS answers the TLS listener. Unbound hosts never get here
// (their handshake fails), unless the Host differs from the SNI.
func (e *Edge) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	host := hostOf(r.Host)
	rt := e.table.Load().hosts[host]
	if rt == nil {
		notFound(w)
		return
	}
	if r.TLS != nil && r.TLS.ServerName != "" && !strings.EqualFold(strings.TrimSuffix(r.TLS.ServerName, "."), host) {
		// One connection, one host: no fronting another site (or the
		// admin host) through a certificate of this one.
		http.Error(w, "misdirected request: the Host header names another site than the TLS connection", http.StatusMisdirectedRequest)
		return
	}
	e.serveRoute(w, r, rt, true)
}

func (e *Edge) serveRoute(w http.ResponseWriter, r *http.Request, rt *route, secure bool) {
	client := e.clientIP(r)
	if rt.admin {
		// The kernel's API: the token, its own limits. Its long answers
		// (live event streams) end when the edge closes, as they do when
		// the kernel's own listener closes.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(e.running, cancel)()
		rt.h.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	if !e.lim.Allow(client) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests from this address: slow down", http.StatusTooManyRequests)
		return
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	if secure && rt.hsts {
		hdr.Set("Strict-Transport-Security", "max-age="+strconv.Itoa(int(e.cfg.HSTSMaxAge/time.Second)))
	}
	if r.ContentLength != 0 {
		r.Body = http.MaxBytesReader(w, r.Body, e.cfg.MaxBodyBytes)
	}
	rt.h.ServeHTTP(w, r)
}

func notFound(w http.ResponseWriter) {
	http.Error(w, "404 not found: no site is bound to this host", http.StatusNotFound)
}

// clientIP is the request's client: the peer, or behind a trusted proxy
// the last address of X-Forwarded-For that is not a trusted proxy. It
// sets r.RemoteAddr to it, so that the handlers behind see the client.
func (e *Edge) clientIP(r *http.Request) string {
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peer = r.RemoteAddr
	}
	if len(e.cfg.TrustedProxies) == 0 || !e.trusted(peer) {
		return peer
	}
	client := peer
	xff := r.Header.Values("X-Forwarded-For")
walk:
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a := strings.TrimSpace(parts[j])
			if _, err := netip.ParseAddr(a); err != nil {
				break walk // garbage: stop at the last address we could read
			}
			client = a
			if !e.trusted(a) {
				break walk
			}
		}
	}
	r.RemoteAddr = net.JoinHostPort(client, "0")
	return client
}

// hasValidCert reports whether the cache holds an unexpired certificate
// for name.
func (e *Edge) hasValidCert(name string) bool {
	now := time.Now()
	for _, c := range e.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && now.Before(c.Leaf.NotAfter) {
			return true
		}
	}
	return false
}

func (e *Edge) trusted(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range e.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// tlsConfig keeps h2 and http/1.1 next to certmagic's ACME protocol.
// A handshake for a host that is not bound fails before certmagic looks
// anything up, unless it is an ACME TLS-ALPN-01 challenge (which
// certmagic answers only for a challenge it has under way).
func (e *Edge) tlsConfig() *tls.Config {
	magic := e.magic.Load()
	tc := magic.TLSConfig()
	tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := hostOf(hello.ServerName)
		if slices.Contains(hello.SupportedProtos, acmez.ACMETLS1Protocol) {
			return magic.GetCertificate(hello)
		}
		if !e.Serves(name) {
			return nil, fmt.Errorf("no site is bound to %q", hello.ServerName)
		}
		if hello.Conn != nil && !e.hasValidCert(name) {
			// The certificate may have to be obtained (or renewed, once
			// expired) now, which takes longer than the header timeout
			// net/http also applies to handshakes: give this one
			// handshake the time of an order. Only a bound host without
			// a valid certificate gets here, and only until it has one.
			_ = hello.Conn.SetDeadline(time.Now().Add(e.cfg.ObtainTimeout))
			// The rest of the handshake is as bounded as any other.
			defer func() { _ = hello.Conn.SetDeadline(time.Now().Add(e.cfg.ReadHeaderTimeout)) }()
		}
		return magic.GetCertificate(hello)
	}
	tc.NextProtos = append([]string{"h2", "http/1.1"}, tc.NextProtos...)
	tc.MinVersion = tls.VersionTLS12
	return tc
}
