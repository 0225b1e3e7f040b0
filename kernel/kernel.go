package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/fazt-sh/fazt/eventlog"
	"github.com/fazt-sh/fazt/kernel/reactor"
	"github.com/fazt-sh/fazt/projections"
	"github.com/fazt-sh/fazt/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the Kernel's tunables, which New sets.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultMaxBodyBytes    = 12 << 20 // above eventlog.MaxAppendBytes, for the JSON around the data
	DefaultPublicBodyBytes = 64 << 10
	DefaultPublicRate      = 20 // requests per second per client address
	DefaultPublicBurst     = 60
	DefaultShutdownTimeout = 10 * time.Second

	// Bounds of the HTTP server: how long a client may take to send a
	// request's headers, its body, to read the answer, and to keep an
	// idle connection; how many connections may be open in all and from
	// one client address; how many live event streams one address may
	// hold.
	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultBodyTimeout         = time.Minute
	DefaultWriteTimeout        = 2 * time.Minute
	DefaultIdleTimeout         = 2 * time.Minute
	DefaultMaxConns            = 1024
	DefaultMaxConnsPerClient   = 64
	DefaultMaxStreamsPerClient = 16
)

// Kernel wires the log, the schema registry, the projections runner,
// the reactors and the HTTP API into one lifecycle.
//
// Create one with New, adjust the exported fields (every one is preset
// to its default), let verticals register, then Open; Close stops it in
// reverse order. Open reads the fields: change them before Open, never
// after.
type Kernel struct {
	// Addr is the HTTP listen address (DefaultAddr); port 0 picks a free
	// port, and ListenAddr tells which. NoHTTP runs the kernel without one.
	Addr   string
	NoHTTP bool
	// Token is the admin API token. Empty (the default): Open loads the
	// one in DIR/token, creating it with mode 0600 at first start (see
	// LoadOrCreateToken), and sets Token to it.
	Token string
	// Durability of appends (eventlog.Strict).
	Durability eventlog.Durability
	// NATSURL connects to an existing NATS server instead of embedding
	// one. NATSListen exposes the embedded server, read-only unless
	// NATSWritable. See eventlog.Log.
	NATSURL      string
	NATSListen   string
	NATSWritable bool
	// Cluster makes the embedded server a node of a NATS cluster
	// (eventlog.Cluster); Replicas is the replicas of the stream and the
	// buckets (0: 3 with Cluster or a NATSURL listing several servers,
	// else 1). Each node keeps its own read models.
	Cluster  *eventlog.Cluster
	Replicas int
	// StoreLimit caps the log's storage in bytes (0, the default: no cap
	// but the disk); DiskReserve is the free space appends leave on the
	// data directory's disk (eventlog.DefaultDiskReserve; negative:
	// none). Appends past either fail with HTTP 507 (insufficient_storage)
	// and resume by themselves once there is room. See eventlog.Log.
	StoreLimit  int64
	DiskReserve int64
	// Logger receives the kernel's logs, and those of its log,
	// projections and reactors (slog.Default(); Open takes nil for it
	// too). Verticals log through it.
	Logger *slog.Logger
	// MaxBodyBytes bounds admin request bodies (DefaultMaxBodyBytes);
	// PublicBodyBytes those of public routes (DefaultPublicBodyBytes).
	MaxBodyBytes    int64
	PublicBodyBytes int64
	// PublicRate and PublicBurst rate-limit public routes per client
	// address, a token bucket each (DefaultPublicRate, DefaultPublicBurst).
	PublicRate  rate.Limit
	PublicBurst int
	// TrustProxy takes the client address of public requests from
	// X-Forwarded-For, for a kernel behind a reverse proxy on this
	// machine. Leave it off (the default) otherwise: clients could pick
	// their address.
	TrustProxy bool
	// ShutdownTimeout bounds Close's wait for HTTP handlers, reactors,
	// projections and the log's appends in flight
	// (DefaultShutdownTimeout); what it cuts short is reported
	// (eventlog.CloseError).
	ShutdownTimeout time.Duration

	// ReadHeaderTimeout bounds reading a request's headers
	// (DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, from when its handler
	// starts (DefaultBodyTimeout): a slower body is answered 408 (code
	// "timeout") and the connection closed. It covers only the body, so
	// long answers (live streams, builds) are not cut short by it.
	BodyTimeout time.Duration
	// WriteTimeout bounds the time from the end of a request's headers to
	// the end of its answer (DefaultWriteTimeout); live streams and
	// projection builds lift it. Keep it above BodyTimeout, or the 408
	// for a slow body cannot be written.
	// A handler of a vertical that answers for longer lifts it with
	// http.NewResponseController(w).SetWriteDeadline.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for that long
	// (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxConns caps the open HTTP connections (DefaultMaxConns): further
	// clients wait (in the listen backlog) until one closes.
	// MaxConnsPerClient caps those of one client address, IPv6: one /64
	// (DefaultMaxConnsPerClient): a connection past it is answered 429
	// and closed. With TrustProxy the per-client cap is off, since every
	// connection comes from the proxy.
	MaxConns          int
	MaxConnsPerClient int
	// MaxStreamsPerClient caps the live event streams (GET
	// /v1/events/live) one client address holds open
	// (DefaultMaxStreamsPerClient); one more is answered 429.
	MaxStreamsPerClient int

	dir    string
	reg    *schemas.Registry
	log    *eventlog.Log
	runner *projections.Runner
	api    *api
	// The writers of the kernel's reserved categories: only the code
	// paths that check their records first (schema registration, skips,
	// parked events) append there.
	schemaW, reactorW *eventlog.Writer

	mu          sync.Mutex
	state       int // stateNew, stateOpen, stateClosed
	projDefs    []projections.Projection
	reactorDefs []reactor.Reactor
	checkDefs   []func(context.Context) []Check // services' doctor checks (RegisterCheck)
	reactors    []*reactor.Runner
	tables      []schemas.Table
	regErr      error // the first registration error; Open returns it

	srv    *http.Server
	ln     net.Listener
	served chan error
	// caughtUp is closed when the projections have folded the log as it
	// was at Open (and stays open if Close comes first); criticalCaughtUp
	// is true once the critical ones have, which is what readiness needs.
	caughtUp         chan struct{}
	isCaughtUp       atomic.Bool
	criticalCaughtUp atomic.Bool
	stopWait         context.CancelFunc
}

const (
	stateNew = iota
	stateOpen
	stateClosed
)

// New returns a kernel keeping its data in dir (the log in
// DIR/jetstream, the read models in DIR/projections, the API token in
// DIR/token, and whatever verticals keep under DIR/<vertical>), with
// every tunable at its default. It registers the kernel's own event
// types; verticals register theirs before Open.
func New(dir string) *Kernel {
	k := &Kernel{
		Addr:                DefaultAddr,
		Durability:          eventlog.Strict,
		DiskReserve:         eventlog.DefaultDiskReserve,
		Logger:              slog.Default(),
		MaxBodyBytes:        DefaultMaxBodyBytes,
		PublicBodyBytes:     DefaultPublicBodyBytes,
		PublicRate:          DefaultPublicRate,
		PublicBurst:         DefaultPublicBurst,
		ShutdownTimeout:     DefaultShutdownTimeout,
		ReadHeaderTimeout:   DefaultReadHeaderTimeout,
		BodyTimeout:         DefaultBodyTimeout,
		WriteTimeout:        DefaultWriteTimeout,
		IdleTimeout:         DefaultIdleTimeout,
		MaxConns:            DefaultMaxConns,
		MaxConnsPerClient:   DefaultMaxConnsPerClient,
		MaxStreamsPerClient: DefaultMaxStreamsPerClient,
		dir:                 dir,
		reg:                 schemas.NewRegistry(),
		caughtUp:            make(chan struct{}),
	}
	k.regErr = registerKernelTypes(k.reg)
	k.log = eventlog.New(dir)
	k.log.Validate = k.reg.Validate // every append, from any route
	k.runner = projections.New(filepath.Join(dir, "projections"), k.log)
	var err error
	if k.schemaW, err = k.log.Reserve(schemas.Category); err == nil {
		if k.runner.Writer, err = k.log.Reserve(projections.Category); err == nil {
			k.reactorW, err = k.log.Reserve(reactor.Category)
		}
	}
	k.regErr = errors.Join(k.regErr, err)
	k.api = newAPI(k)
	return k
}

// configure checks the tunables and hands them to the parts New made;
// Open calls it before it opens anything.
func (k *Kernel) configure() error {
	var bad []string
	for _, t := range []struct {
		name string
		val  any
		ok   bool
	}{
		{"MaxBodyBytes", k.MaxBodyBytes, k.MaxBodyBytes > 0},
		{"PublicBodyBytes", k.PublicBodyBytes, k.PublicBodyBytes > 0},
		{"PublicRate", k.PublicRate, k.PublicRate > 0},
		{"PublicBurst", k.PublicBurst, k.PublicBurst > 0},
		{"ShutdownTimeout", k.ShutdownTimeout, k.ShutdownTimeout > 0},
		{"ReadHeaderTimeout", k.ReadHeaderTimeout, k.ReadHeaderTimeout > 0},
		{"BodyTimeout", k.BodyTimeout, k.BodyTimeout > 0},
		{"WriteTimeout", k.WriteTimeout, k.WriteTimeout > 0},
		{"IdleTimeout", k.IdleTimeout, k.IdleTimeout > 0},
		{"MaxConns", k.MaxConns, k.MaxConns > 0},
		{"MaxConnsPerClient", k.MaxConnsPerClient, k.MaxConnsPerClient > 0},
		{"MaxStreamsPerClient", k.MaxStreamsPerClient, k.MaxStreamsPerClient > 0},
	} {
		if !t.ok {
			bad = append(bad, fmt.Sprintf("%s %v", t.name, t.val))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: kernel tunables %s: want positive values (New presets the Default* constants)", eventlog.ErrInvalid, strings.Join(bad, ", "))
	}
	if k.Logger == nil {
		k.Logger = slog.Default()
	}
	k.log.URL = k.NATSURL
	k.log.Listen = k.NATSListen
	k.log.ListenWritable = k.NATSWritable
	k.log.Durability = k.Durability
	k.log.Cluster = k.Cluster
	k.log.Replicas = k.Replicas
	if k.log.Replicas == 0 {
		k.log.Replicas = 1
		if k.Cluster != nil || strings.Contains(k.NATSURL, ",") {
			k.log.Replicas = 3
		}
	}
	k.log.MaxStore = k.StoreLimit
	k.log.DiskReserve = k.DiskReserve
	k.log.Logger = k.Logger
	k.runner.Logger = k.Logger // reactors without a Logger use the log's
	// The API was made by New, for routes to register on; its limits are
	// the fields as they are now.
	k.api.logger = k.Logger
	k.api.limiter = newLimiter(k.PublicRate, k.PublicBurst)
	k.api.live = newPerClient(k.MaxStreamsPerClient)
	return nil
}

// Dir returns DIR/name, the place for a vertical's own files (created on
// demand by the vertical).
func (k *Kernel) Dir(name string) string { return filepath.Join(k.dir, name) }

// Log is the event log. Appends through it are validated against the
// registered schemas.
func (k *Kernel) Log() *eventlog.Log { return k.log }

// Schemas is the event-type registry.
func (k *Kernel) Schemas() *schemas.Registry { return k.reg }

// Projections is the read-model runner.
func (k *Kernel) Projections() *projections.Runner { return k.runner }

// Metrics is the registry GET /metrics serves: verticals register their
// own Prometheus collectors here (names prefixed fazt_<vertical>_).
func (k *Kernel) Metrics() prometheus.Registerer { return k.api.metrics }

// Catalog is every event schema and table registered so far: what
// `fazt schema check` holds against the committed ledger.
func (k *Kernel) Catalog() schemas.Catalog {
	k.mu.Lock()
	defer k.mu.Unlock()
	return schemas.Catalog{Events: k.reg, Tables: append([]schemas.Table(nil), k.tables...)}
}

// registering records err as a registration failure when the kernel is
// past registration, and returns the error to give the caller.
func (k *Kernel) registering(what string) error {
	if k.state != stateNew {
		return fmt.Errorf("%w: register %s before Open", eventlog.ErrInvalid, what)
	}
	return nil
}

func (k *Kernel) fail(err error) error {
	if err != nil && k.regErr == nil {
		k.regErr = err
	}
	return err
}

// RegisterEvent declares version v of an event type with its JSON
// Schema. Versions start at 1 and each must be a compatible extension
// of the one before (schemas.CheckCompatible).
func (k *Kernel) RegisterEvent(typ string, v int, schema []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.registering("event type " + typ); err != nil {
		return err
	}
	return k.fail(k.reg.Register(typ, v, schema))
}

// RegisterProjection declares a read model; Open opens it, back-filling
// it from the log when it is new or its version changed.
func (k *Kernel) RegisterProjection(p projections.Projection) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.registering("projection " + p.Name); err != nil {
		return err
	}
	if err := k.runner.Register(p); err != nil {
		return k.fail(err)
	}
	k.projDefs = append(k.projDefs, p)
	for _, t := range p.Tables {
		t.Name = p.Name + "." + t.Name // tables are per projection file
		k.tables = append(k.tables, t)
	}
	return nil
}

// RegisterReactor declares a side-effect consumer; Open starts it once
// the projections are open, Close stops it before them.
func (k *Kernel) RegisterReactor(r reactor.Reactor) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.registering("reactor " + r.Name); err != nil {
		return err
	}
	for _, have := range k.reactorDefs {
		if have.Name == r.Name {
			return k.fail(fmt.Errorf("%w: reactor %s is registered twice", eventlog.ErrInvalid, r.Name))
		}
	}
	k.reactorDefs = append(k.reactorDefs, r)
	return nil
}

// Handle serves an admin route: the caller must send the API token.
// pattern is a net/http ServeMux pattern with a method, such as
// "GET /v1/analytics/{site}/stats"; admin routes live under /v1/.
func (k *Kernel) Handle(pattern string, h http.Handler) error {
	return k.handle(pattern, h, false)
}

// HandleBody serves an admin route as Handle does, with request bodies of
// up to maxBytes instead of MaxBodyBytes: for uploads, such as a site's
// files. The handler bounds what it keeps of a body itself.
func (k *Kernel) HandleBody(pattern string, h http.Handler, maxBytes int64) error {
	if maxBytes <= 0 {
		return k.fail(fmt.Errorf("%w: route %q: body limit %d: want a positive number of bytes", eventlog.ErrInvalid, pattern, maxBytes))
	}
	if err := k.handle(pattern, h, false); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.api.bodyLimits == nil {
		k.api.bodyLimits = map[string]int64{}
	}
	k.api.bodyLimits[pattern] = maxBytes
	return nil
}

// HandlePublic serves a route anyone may call, without the token: it is
// rate limited per client address (PublicRate, PublicBurst) and its
// bodies are limited to PublicBodyBytes.
func (k *Kernel) HandlePublic(pattern string, h http.Handler) error {
	return k.handle(pattern, h, true)
}

func (k *Kernel) handle(pattern string, h http.Handler, public bool) (err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.registering("route " + pattern); err != nil {
		return err
	}
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || method == "" || !strings.HasPrefix(path, "/") {
		return k.fail(fmt.Errorf("%w: route %q: want \"METHOD /path\"", eventlog.ErrInvalid, pattern))
	}
	if !public && !strings.HasPrefix(path, "/v1/") {
		return k.fail(fmt.Errorf("%w: route %q: admin routes live under /v1/", eventlog.ErrInvalid, pattern))
	}
	defer func() {
		// ServeMux panics on a conflicting pattern.
		if p := recover(); p != nil {
			err = k.fail(fmt.Errorf("%w: route %q: %v", eventlog.ErrInvalid, pattern, p))
		}
	}()
	k.api.route(pattern, h, public)
	return nil
}

// HostRoute is the route label of the requests a RouteHost function
// took, in the HTTP metrics.
const HostRoute = "host"

// RouteHost sets fn to see every request before the API's routes do:
// when fn returns a handler, that handler answers the request, whatever
// its path; when it returns nil, the request goes on to the API exactly
// as without fn. It is how a vertical serves sites by Host (app.localhost,
// a custom domain) on the kernel's listener, without the kernel knowing
// of it. fn runs on every request, so it must be cheap and must return
// nil for the hosts of the API (127.0.0.1, localhost, ...). The handler
// it returns gets no token check and no rate limit, a request body of at
// most PublicBodyBytes, X-Content-Type-Options: nosniff, and is counted
// in the metrics under the route HostRoute. One function per kernel,
// set before Open.
func (k *Kernel) RouteHost(fn func(r *http.Request) http.Handler) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.registering("a host router"); err != nil {
		return err
	}
	if fn == nil {
		return k.fail(fmt.Errorf("%w: RouteHost: nil function", eventlog.ErrInvalid))
	}
	if k.api.hosts != nil {
		return k.fail(fmt.Errorf("%w: RouteHost: a host router is set already (one per kernel)", eventlog.ErrInvalid))
	}
	k.api.hosts = fn
	return nil
}

// Append appends events atomically (see eventlog.Log.Append), validated
// against the registered schemas.
func (k *Kernel) Append(ctx context.Context, events []eventlog.Event, expect ...eventlog.Expectation) (eventlog.Result, error) {
	return k.log.Append(ctx, events, expect...)
}

// ReadStream reads one stream from a version (see eventlog.Log.ReadStream).
func (k *Kernel) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventlog.Event, error) {
	return k.log.ReadStream(ctx, stream, from, limit)
}

// Query runs read-only SQL on a projection (see projections.Runner.Query).
func (k *Kernel) Query(ctx context.Context, projection, query string, args []any, opts projections.QueryOptions) (projections.QueryResult, error) {
	return k.runner.Query(ctx, projection, query, args, opts)
}

// ListenAddr returns the HTTP address clients can dial, such as
// "127.0.0.1:8080" (after Open; empty with NoHTTP).
func (k *Kernel) ListenAddr() string {
	if k.ln == nil {
		return ""
	}
	return dialable(k.ln.Addr())
}

// Handler is the kernel's HTTP handler, for embedding it in another
// server (with NoHTTP). Serve it once Open has returned.
func (k *Kernel) Handler() http.Handler { return k.api }

// Readiness is what /readyz answers: whether the node should get
// traffic. It covers the log and the critical projections
// (projections.Projection.Critical): they must have caught up with the
// log as it was at Open and not be halted. A halted projection that is
// not critical leaves the node ready; Degraded names it (and doctor,
// the projection status and metrics show it).
type Readiness struct {
	Ready bool `json:"-"`
	// Status is "ok", "unavailable" (the log is not open), "catching_up"
	// or "halted".
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Projections names the critical projections that keep the node
	// unready, and why.
	Projections []string `json:"projections,omitempty"`
	// Degraded names the projections that are halted but not critical.
	Degraded []string `json:"degraded,omitempty"`
}

// Readiness reports whether the node is ready, and what it waits for.
func (k *Kernel) Readiness() Readiness {
	if !k.api.open.Load() {
		return Readiness{Status: "unavailable", Reason: "the event log is not open: the server is starting or stopping"}
	}
	caughtUp := k.criticalCaughtUp.Load()
	var rd Readiness
	var halted, behind []string
	for _, st := range k.runner.Statuses() {
		switch {
		case st.Halted != nil && st.Critical:
			halted = append(halted, fmt.Sprintf("%s (halted at seq %d: %s)", st.Name, st.Halted.Seq, st.Halted.Error))
		case st.Halted != nil:
			rd.Degraded = append(rd.Degraded, fmt.Sprintf("%s (halted at seq %d, not critical: see fazt doctor)", st.Name, st.Halted.Seq))
		case st.Critical && !caughtUp && (st.Lag > 0 || st.ServingVersion != st.Version):
			behind = append(behind, fmt.Sprintf("%s (%s, seq %d of %d)", st.Name, st.State, st.Seq, st.Tail))
		}
	}
	switch {
	case len(halted) > 0:
		rd.Status, rd.Reason, rd.Projections = "halted", "a critical projection is halted at an event: see fazt doctor", halted
	case !caughtUp:
		rd.Status, rd.Reason, rd.Projections = "catching_up", "critical projections are catching up with the log", behind
	default:
		rd.Ready, rd.Status = true, "ok"
	}
	return rd
}

// Ready reports whether /readyz answers 200 (see Readiness).
func (k *Kernel) Ready() bool { return k.Readiness().Ready }

// WaitReady blocks until every projection, critical or not, has caught
// up with the log as it was at Open (more than readiness needs, which is
// the critical ones), ctx ends or the kernel closes (ErrClosed). A
// halted projection keeps it waiting until Retry or Skip.
func (k *Kernel) WaitReady(ctx context.Context) error {
	select {
	case <-k.caughtUp:
		if !k.isCaughtUp.Load() {
			return eventlog.ErrClosed
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Open starts the kernel in order: the HTTP listener (answering /healthz,
// and 503 elsewhere), the log, the registered schemas, the projections,
// the reactors; then the API serves. It returns once the API serves;
// /readyz turns ready when the critical projections have caught up
// (Readiness). Nothing the log holds makes it fail: records of the
// kernel's categories it cannot apply are skipped and reported.
// It reads the exported fields first, and refuses (ErrInvalid) a
// tunable it cannot use. On failure everything opened is closed again.
func (k *Kernel) Open(ctx context.Context) (err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state != stateNew {
		return fmt.Errorf("%w: a kernel opens once", eventlog.ErrInvalid)
	}
	k.state = stateOpen

	var closers []func(context.Context) error
	defer func() {
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.ShutdownTimeout)
		defer cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i](cctx))
		}
		k.state = stateClosed
		close(k.caughtUp)
	}()

	if k.regErr != nil {
		return fmt.Errorf("registration: %w", k.regErr)
	}
	if k.dir == "" {
		return fmt.Errorf("%w: the data directory is required: kernel.New(dir)", eventlog.ErrInvalid)
	}
	if err := k.configure(); err != nil {
		return err
	}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	k.warnExposure()
	if k.Token == "" {
		tok, created, err := LoadOrCreateToken(k.dir, k.Logger)
		if err != nil {
			return err
		}
		if created {
			k.Logger.Info("created the API token", "file", filepath.Join(k.dir, TokenFile))
		}
		k.Token = tok
	}
	k.api.token = []byte(k.Token)

	if !k.NoHTTP {
		ln, err := net.Listen("tcp", strings.TrimPrefix(k.Addr, "http://"))
		if err != nil {
			return fmt.Errorf("listen on %s: %w", k.Addr, err)
		}
		k.ln = ln
		perClient := k.MaxConnsPerClient
		if k.TrustProxy {
			perClient = 0
		}
		k.srv = &http.Server{
			Handler:           k.api,
			ReadHeaderTimeout: k.ReadHeaderTimeout,
			WriteTimeout:      k.WriteTimeout,
			IdleTimeout:       k.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(k.Logger.Handler(), slog.LevelWarn),
		}
		// Shutdown waits for handlers; live streams only end when told to.
		k.srv.RegisterOnShutdown(k.api.stopStreams)
		k.served = make(chan error, 1)
		limited := limitListener(ln, k.MaxConns, perClient)
		go func() { k.served <- k.srv.Serve(limited) }()
		closers = append(closers, k.shutdownHTTP)
	}

	// The HTTP server answers /healthz (and 503 on /readyz) while the log
	// opens, which can take a while on a big store.
	if err := k.log.Open(ctx); err != nil {
		return fmt.Errorf("open event log in %s: %w", k.dir, err)
	}
	closers = append(closers, k.closeLog)
	if err := k.reg.Load(ctx, k.log); err != nil {
		return err
	}
	// What the log holds never stops a start: a registration the kernel
	// refuses today is reported and skipped.
	for _, sk := range k.reg.Skipped() {
		k.Logger.Warn("schema registration in the log skipped: it is not applied", "seq", sk.Seq, "stream", sk.Stream,
			"type", sk.Type, "version", sk.Version, "err", sk.Error, "fix", "register the type's schema again (fazt schema register); see fazt doctor")
	}
	tail, err := k.log.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("read the log's tail: %w", err)
	}
	if err := k.runner.Open(ctx); err != nil {
		closers = append(closers, k.closeRunner) // Close is safe after a failed Open
		return fmt.Errorf("open projections: %w", err)
	}
	closers = append(closers, k.closeRunner)
	for _, def := range k.reactorDefs {
		def.Writer = k.reactorW
		h, err := reactor.Start(ctx, k.log, def)
		if err != nil {
			return fmt.Errorf("start reactor %s: %w", def.Name, err)
		}
		k.reactors = append(k.reactors, h)
	}
	closers = append(closers, k.stopReactors)

	k.api.open.Store(true)
	wctx, cancel := context.WithCancel(context.Background())
	k.stopWait = cancel
	go k.waitCaughtUp(wctx, tail)
	k.Logger.Info("kernel open", "data", k.dir, "addr", k.ListenAddr(), "durability", k.Durability.String(),
		"projections", len(k.projDefs), "reactors", len(k.reactorDefs), "log_tail", tail)
	return nil
}

// waitCaughtUp marks the kernel ready once every critical projection
// has folded the log up to tail, then caught up (WaitReady) once the
// others have too, logging which ones it waits for.
func (k *Kernel) waitCaughtUp(ctx context.Context, tail uint64) {
	defer close(k.caughtUp)
	start := time.Now()
	var critical, others []projections.Projection
	for _, p := range k.projDefs {
		if p.Critical {
			critical = append(critical, p)
		} else {
			others = append(others, p)
		}
	}
	if !k.waitProjections(ctx, critical, tail) {
		return
	}
	k.criticalCaughtUp.Store(true)
	if len(critical) > 0 {
		k.Logger.Info("ready: critical projections caught up", "log_tail", tail, "took", time.Since(start).Round(time.Millisecond))
	}
	if !k.waitProjections(ctx, others, tail) {
		return
	}
	k.isCaughtUp.Store(true)
	if len(others) > 0 {
		k.Logger.Info("projections caught up", "log_tail", tail, "took", time.Since(start).Round(time.Millisecond))
	}
}

// waitProjections waits until each of ps has folded the log up to tail
// at its registered version; false when ctx ended first.
func (k *Kernel) waitProjections(ctx context.Context, ps []projections.Projection, tail uint64) bool {
	for _, p := range ps {
		for {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			// After a version bump the old file serves, frozen, until the
			// new one is swapped in: not caught up at this version yet.
			err := k.runner.WaitForVersion(wctx, p.Name, tail)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			st := k.runner.Status(p.Name)
			k.Logger.Warn("waiting for a projection to catch up", "projection", p.Name, "critical", p.Critical,
				"state", st.State, "seq", st.Seq, "target", tail, "err", err)
			if errors.Is(err, projections.ErrHalted) {
				// Retry or Skip resumes it; check again in a while.
				select {
				case <-ctx.Done():
					return false
				case <-time.After(5 * time.Second):
				}
			}
		}
	}
	return true
}

// Serve blocks until ctx ends or the HTTP server fails, then closes the
// kernel: the usual main loop of a program that embeds it.
func (k *Kernel) Serve(ctx context.Context) error {
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-k.served: // nil channel with NoHTTP: never
		serveErr = fmt.Errorf("http server: %w", serveErr)
	}
	return errors.Join(serveErr, k.Close(context.WithoutCancel(ctx)))
}

// Close stops the kernel in reverse order of Open: readiness, HTTP
// (ending live streams), reactors, projections, the log.
func (k *Kernel) Close(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state != stateOpen {
		k.state = stateClosed
		return nil
	}
	k.state = stateClosed
	k.Logger.Info("kernel closing")
	ctx, cancel := context.WithTimeout(ctx, k.ShutdownTimeout)
	defer cancel()
	k.stopWait()
	var err error
	if k.srv != nil {
		err = errors.Join(err, k.shutdownHTTP(ctx))
	}
	k.api.open.Store(false)
	err = errors.Join(err, k.stopReactors(ctx))
	// The projections read the log: close them first.
	err = errors.Join(err, k.closeRunner(ctx), k.closeLog(ctx))
	return err
}

func (k *Kernel) shutdownHTTP(ctx context.Context) error {
	k.api.open.Store(false)
	if err := k.srv.Shutdown(ctx); err != nil {
		k.srv.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

func (k *Kernel) stopReactors(ctx context.Context) error {
	var err error
	for i := len(k.reactors) - 1; i >= 0; i-- {
		if e := k.reactors[i].Stop(ctx); e != nil {
			err = errors.Join(err, fmt.Errorf("stop reactor %s: %w", k.reactors[i].Name(), e))
		}
	}
	k.reactors = nil
	return err
}

func (k *Kernel) closeRunner(ctx context.Context) error {
	if err := k.runner.Close(ctx); err != nil {
		return fmt.Errorf("close projections: %w", err)
	}
	return nil
}

func (k *Kernel) closeLog(ctx context.Context) error {
	if err := k.log.Close(ctx); err != nil {
		return fmt.Errorf("close event log: %w", err)
	}
	return nil
}

// Reactors returns the running reactors (after Open).
func (k *Kernel) Reactors() []*reactor.Runner {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*reactor.Runner(nil), k.reactors...)
}

// warnExposure logs what a listener beyond loopback exposes.
func (k *Kernel) warnExposure() {
	if k.NATSListen != "" && !isLoopback(k.NATSListen) {
		k.Logger.Warn("the NATS listener has no authentication: anyone who reaches it can read the log (and write events into it with --nats-writable)", "nats_listen", k.NATSListen)
	}
	if !k.NoHTTP && !isLoopback(strings.TrimPrefix(k.Addr, "http://")) {
		k.Logger.Warn("serving HTTP without TLS beyond loopback: the API token travels in clear text; put a TLS proxy in front", "addr", k.Addr)
	}
}

// isLoopback reports whether a host:port listens only on this machine.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialable turns a listener's address into one a client can connect to:
// an unspecified address (0.0.0.0, ::) becomes the loopback one.
func dialable(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := ta.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port))
}
