// Package edge is Fazt's public front door: host-based routing to the
// apps, and automatic HTTPS for every bound host through
// github.com/caddyserver/certmagic.
//
// # Routing
//
// The routes are a read model of the log: a [Routes] implementation
// (the apps vertical's apps.Routes) loads them as of a log position, and
// names the event types that change them. The edge holds an immutable
// host → handler table in an atomic pointer and swaps it whole: a request
// sees the table before a change or after it, never half of it. It
// follows the log ([eventlog.Log.Subscribe] on [Routes.Filter]) and
// reloads once the read model has folded each change, so a host bound by
// an event is served within a fold's latency; changes arriving faster
// than a reload are taken together.
//
// With Config.Domain example.com the table holds:
//
//   - NAME.example.com for every app with a live deploy;
//   - ALIAS.example.com for every alias of an app;
//   - every custom domain bound to an app;
//   - the admin host (fazt.example.com, Config.AdminHost), serving
//     Config.Admin, the kernel's API, which checks the token. It is
//     served over HTTPS only and wins over an app of the same name.
//
// Any other host gets a plain 404 over HTTP and a failed handshake over
// TLS. The kernel's loopback listener is not the edge and stays as it is
// (NAME.localhost for local use).
//
// # Certificates
//
// Certificates are obtained and renewed by certmagic, from Let's
// Encrypt or the ACME CA at Config.CA, and kept in Config.Storage (a
// certmagic.Storage shared by every node, so that they share
// certificates, challenges and locks). Issuance is on demand, and the
// decision is the routes table: a handshake for a host that is not bound
// fails before certmagic looks anything up, so no one can make the edge
// order certificates for names they point at it. Both ACME challenges
// are answered by the edge's own listeners: HTTP-01 on the HTTP listener
// and TLS-ALPN-01 on the HTTPS one (its ALPN list keeps h2 and
// http/1.1 next to acme-tls/1). A handshake that has to wait for an
// order gets the order's time (Config.ObtainTimeout) rather than the
// header timeout net/http applies to handshakes. Renewals and OCSP
// stapling are certmagic's (on-demand certificates are renewed at a
// handshake once they are due).
//
// [Edge.Reactor] is a reactor (package kernel/reactor) that obtains the
// certificate of a host as soon as an event binds it (a live deploy, an
// alias, a custom domain: [Routes.Bound]), so that the first visitor
// does not wait for the CA; a failure is retried and parked like any
// reactor's, and the first handshake tries again. Unbinding a host drops
// its certificate from the cache: its handshakes fail from then on.
//
// [Edge.Certificates] lists the stored certificates with the last error
// of each name (`fazt certs list`); [Edge.Collector] exports their
// expiry and failures to /metrics.
//
// # Hardening
//
//   - ReadHeaderTimeout, WriteTimeout and IdleTimeout on both listeners
//     (slowloris), MaxHeaderBytes, and a cap on connections in all and
//     per client address (kernel.LimitListener).
//   - Public hosts: a token bucket per client address
//     (kernel.ClientLimiter, 429 past it), bodies up to MaxBodyBytes,
//     X-Content-Type-Options: nosniff.
//   - X-Forwarded-For is believed only from Config.TrustedProxies: the
//     client is the last address in it that is not a trusted proxy, and
//     the handlers behind see it as the request's RemoteAddr.
//   - A request whose Host differs from its connection's SNI is refused
//     (421), so that a certificate of one site cannot front another or
//     the admin host.
//   - HTTP requests to bound hosts are redirected to HTTPS (308), never
//     served in clear text. Strict-Transport-Security is off by default
//     and sent only for the apps in Config.HSTSApps.
//
// # Usage
//
// cmd/fazt wires it (`fazt serve --domain example.com --email
// you@example.com`):
//
//	e, err := edge.New(edge.Config{
//		Domain: "example.com", Email: "you@example.com",
//		Routes: apps.NewRoutes(k, files), Log: k.Log(), Admin: k.Handler(),
//		Storage: storage,
//	})
//	err = k.RegisterReactor(e.Reactor()) // before k.Open
//	...
//	err = e.Start(ctx) // after k.Open
//	defer e.Close(ctx) // before k.Close: ends live streams through the admin host
//
// Package edgetest runs the real ACME protocol on loopback for tests: an
// in-process Pebble CA and DNS server.
package edge
