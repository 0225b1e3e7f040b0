// Package kernel is the Cartridge Kernel: one embeddable SDK that wires
// the event log, the schema registry, the projections and reactors, and
// the HTTP API into one lifecycle, and that verticals (business modules)
// plug into.
//
// # Overview
//
// A Kernel owns a data directory. Open starts, in order: the HTTP
// listener (answering /healthz, 503 elsewhere), the event log (embedded
// NATS JetStream, a node of a NATS cluster of the same binary with
// Cluster, or an existing server), the schemas registered at run
// time, the projections (SQLite read models, back-filled from the log),
// the reactors; then the API serves. /readyz turns 200 once the
// critical projections (projections.Projection.Critical) have caught up
// with the log as it was at Open; until then the admin API already
// answers, so rebuild progress can be watched. Close stops everything
// in reverse order.
//
// Readiness covers the log and the critical projections only: a halted
// critical projection makes /readyz answer 503 with the reason, which
// takes the node out of a load balancer; a halted projection that is not
// critical (analytics) leaves it ready and shows in GET
// /v1/projections, doctor, /metrics and /readyz's "degraded" list.
// WaitReady waits for every projection, critical or not.
//
// # The kernel's own records
//
// The kernel keeps records of its own in the log: run-time schema
// registrations ("schemas"), skip decisions ("projections") and parked
// events ("reactors"). New registers their event types, in one place
// (schemas.TypeRegistered, projections.TypeEventSkipped,
// reactor.TypeEventParked and reactor.TypeEventUnparked, each with the
// schema its writing package exports; the committed ledger holds them),
// and reserves these categories (eventlog.Log.Reserve), so only the
// kernel's code paths write there,
// each after its own checks: an append through POST /v1/events, the CLI
// or the SDK into such a stream, or with such an event type, is refused
// with 400. Nothing read from the log stops a start: a record there that
// the kernel cannot apply (written before the reservation, or published
// around the kernel) is logged, skipped, and reported by doctor, GET
// /v1/schemas (a type's "status": "skipped"), /metrics
// (fazt_schema_registrations_skipped, fazt_reactor_records_unreadable)
// and the reactor's status.
//
// # Usage
//
// Create a kernel on its data directory, tune it, let verticals
// register, open it, serve:
//
//	k := kernel.New("./data")  // every tunable preset to its Default*
//	k.Addr = "127.0.0.1:9090" // tunables are exported fields, read by Open
//	k.Logger = logger
//	if err := analytics.Register(k, analytics.Config{}); err != nil { ... }
//	if err := k.Open(ctx); err != nil { ... }
//	return k.Serve(ctx) // until ctx ends, then Close
//
// This is the shape of every long-lived component: required arguments
// in New, exported tunables preset to the Default* constants, then
// Open and Close (eventlog.New, projections.New and sqlitedb.New work
// the same way). Open refuses a tunable set to a value it cannot use.
// One default logger: the Logger of the kernel, the log and the
// projections runner is preset to slog.Default(), and their Open takes
// nil for it too; a reactor without one uses the log's. The kernel hands
// its Logger to all of them. Logs put an error under the key "err".
//
// A vertical registers, before Open:
//
//   - event types with their JSON Schemas: RegisterEvent (versions only
//     grow, each a compatible extension of the one before);
//   - read models: RegisterProjection;
//   - side-effect consumers: RegisterReactor (see package reactor);
//   - HTTP routes: Handle for admin routes under /v1/ (the bearer token
//     is required), HandlePublic for routes anyone may call (rate limited
//     per client address, small bodies); HandleBody for an admin route
//     with a body limit of its own (uploads);
//   - serving by Host: RouteHost, one function that sees each request
//     first and returns the handler for the hosts it serves (sites at
//     NAME.localhost, custom domains) or nil to leave the request to the
//     API.
//
// Verticals never import each other; they share only the log. Command
// handlers use Decide: load a stream, fold it to a state, decide the new
// events or refuse (Refusef), append expecting the version read, retry a
// bounded number of times on conflict, each time from a new state made
// by the Decider's Init.
//
// # Reactors
//
// Every service is a reactor, and so is any part of a vertical that acts
// on the world (sends a mail, calls an API, writes files). A reactor,
// described by a reactor.Reactor, gets each matching event at least
// once, in log order, with the event's ID as an idempotency key; a
// failing event is retried with backoff and then parked, visibly, never
// dropped. Register it before Open:
//
//	err := k.RegisterReactor(reactor.Reactor{
//		Name:   "welcome", // names its durable consumer: keep it, use it on every node
//		Filter: eventlog.Filter{Categories: []string{"users"}, Types: []string{"users.signed_up"}},
//		Handle: func(ctx context.Context, e eventlog.Event, key string) error {
//			return mailer.Send(ctx, welcomeMail(e), key) // key: the side effect happens once
//		},
//	})
//
// Open starts the reactors after the projections (a new reactor handles
// the events appended from then on, unless FromBeginning), and Close
// stops them before the projections, letting a handler call in flight
// finish. Reactors returns the running ones; GET /v1/reactors and
// `fazt reactors status` show their progress and parked events, POST
// /v1/reactors/{name}/retry and `fazt reactors retry` try a parked event
// again. Package reactor's doc has the rules for writing Handle.
//
// # Errors
//
// One vocabulary, mapped to HTTP statuses in one place (WriteError):
// eventlog.ErrInvalid 400, the missing token 401, eventlog.ErrNotFound
// 404, a body slower than Kernel.BodyTimeout 408 (code "timeout"),
// eventlog.ErrConflict and ErrRefused 409, a too-large body or query
// answer (projections.ErrTooLarge) 413, schemas.ErrEDDViolation 422,
// ErrRateLimited 429, an unavailable log or halted projection 503.
//
// # Limits
//
// Every resource a client can hold has a bound, each a Kernel field
// preset by New to a Default constant: the time to send headers
// (ReadHeaderTimeout, 10 s) and a body (BodyTimeout, 1 min, counted
// from the handler's start and lifted once the body is read, so long
// answers are not cut), the time to take an answer (WriteTimeout, 2 min;
// live streams and builds lift it), idle keep-alive connections
// (IdleTimeout, 2 min), body sizes (MaxBodyBytes 12 MiB, PublicBodyBytes
// 64 KiB), open connections in all (MaxConns, 1024: more wait in the
// listen backlog) and per client address (MaxConnsPerClient, 64: one
// more is answered 429 and closed; off with TrustProxy, where the proxy
// is the only client), live event streams per client address
// (MaxStreamsPerClient, 16: one more is 429), requests to public routes
// per address (PublicRate, PublicBurst), and queries (time, rows and
// bytes: see projections.Runner.Query). Projection builds
// (POST /v1/projections/{name}/build) write only into DIR/builds
// (BuildsDir), under a plain file name, created exclusively with mode
// 0600.
//
// # Operations
//
// GET /metrics serves Prometheus metrics (token required); Doctor, also
// at GET /v1/doctor, checks the data directory, the event stream's
// configuration, SQLite and every projection and reactor, and the checks
// services add with RegisterCheck (the backup's replicas), and says what
// to fix. DiagnoseStopped checks a data directory no server has open
// without writing to it: what is on disk, and, as skipped, what only an
// open log can tell.
//
// # Testing
//
// Test a vertical against a real kernel: New on a t.TempDir() with Addr
// "127.0.0.1:0", register, Open, and call the API with package
// kerneltest (kerneltest.Client{Base: "http://" + k.ListenAddr(), Token:
// k.Token}). Package eventlogtest opens a bare log for tests below the
// kernel.
package kernel
