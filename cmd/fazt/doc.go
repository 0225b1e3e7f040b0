// Command fazt runs the Fazt kernel and talks to it.
//
// Fazt is a personal cloud kernel: an append-only, event-sourced log on
// embedded NATS JetStream (package eventlog), SQLite read models built
// from it (package projections), and the verticals compiled in (page
// analytics), wired and served over HTTP by package kernel.
//
// The verticals compiled in are the list compiledIn returns (in
// verticals.go: add a new vertical's Register there). main hands that
// list to run, which registers it on the kernel that serve opens and on
// the catalog that schema check reads; tests run fazt in-process with
// their own list. The client commands know the verticals only by their
// exported names (routes, request and answer types, event types).
//
// Commands:
//
//	fazt serve [--data DIR] [--addr HOST:PORT] [--nats-listen HOST:PORT]
//	           [--nats-url URL] [--durability strict|relaxed] [--log-format text|json]
//
// Serve opens the log in DIR (default ./fazt-data, env FAZT_DATA) and
// serves the HTTP API on --addr (default 127.0.0.1:8080, env FAZT_ADDR;
// port 0 picks a free port) until SIGINT or SIGTERM, then shuts down
// gracefully. On first start it writes an API token to DIR/token (mode
// 0600) and prints it once. While running, DIR/serve.json holds the
// server's URL and pid so that the other commands find it.
//
//	fazt install [--domain D] [--email E] [--backup URL]... [--binary FILE] [--root DIR] [--dry-run]
//	fazt uninstall [--purge] [--root DIR] [--dry-run]
//
// Install makes the machine run fazt serve as a hardened systemd service
// (Type=notify, a dynamic user, data and binary in /var/lib/fazt,
// CAP_NET_BIND_SERVICE only), enabled and started; run again, it
// changes nothing, or shows the unit's difference. Uninstall removes the
// service and keeps the data unless --purge. Both need root and systemd;
// --root DIR stages the files in DIR instead. Under systemd, serve
// reports READY=1 once /readyz is ready, STOPPING=1 when it stops, and
// pings the watchdog (package provision).
//
//	fazt serve --cluster NAME --node N --cluster-listen HOST:PORT --peers H1:P1,H2:P2,H3:P3 [--replicas R]
//	          (--cluster-tls-cert F --cluster-tls-key F --cluster-tls-ca F | --cluster-insecure)
//	fazt cluster status [--json] | ready [--addr URL]
//	fazt cluster certs --out DIR --node NAME[=HOST,...]... [--host H]... [--keep-existing]
//
// With --cluster, serve runs one node of a NATS cluster of the same
// binary (FAZT_CLUSTER_SECRET or --cluster-secret-file is the secret the
// nodes authenticate their routes with): the log is a JetStream stream
// of --replicas (default 3) replicas, every node takes appends and keeps
// its own read models. The routes carry every event, so they are mutual
// TLS: each node has a certificate from the cluster's CA and verifies
// the others' against it (--cluster-tls-*; a missing, unreadable or
// mismatched file is a usage error before anything starts). Without
// them serve refuses to start, unless --cluster-insecure runs the routes
// in clear (logged as a warning at every start). Cluster certs makes a
// private CA and each node's certificate and key, 0600, never over an
// existing file (--keep-existing keeps the files there and issues the
// missing nodes' from the same CA). --nats-url with several
// comma-separated URLs uses an existing cluster instead. Cluster status
// shows the nodes, the stream's leader, each replica's lag and each
// node's read models; ready exits 0 when a node's /readyz answers 200
// (the image's health check).
//
//	fazt events append --stream S --type T [--data JSON|-] [--id ULID] [--expect N | --expect-new] [--json]
//	fazt events read STREAM [--from V] [--limit N] [--json]
//	fazt events tail [--after SEQ] [--type T]... [--category C]... [--json]
//
// The events commands are HTTP clients of a running server. They find it
// with --addr and --token, else FAZT_ADDR and FAZT_TOKEN, else the files
// in the data directory (--data, env FAZT_DATA, default ./fazt-data; in
// "events append", where --data is the event's data, --data-dir).
// Tail follows the log until interrupted.
//
//	fazt query --projection NAME SQL [--arg V]... [--min-seq N] [--json]
//	fazt projections status|rebuild|retry|skip|build ...
//	fazt reactors status | retry NAME --seq N
//	fazt schema check|lock|register|list|show ...
//	fazt analytics top SITE | sites | add-site ID --domain HOST
//	fazt deploy DIR --app NAME [--spa] [--jobs N]
//	fazt apps list | history NAME | rollback NAME [--to ID] | delete NAME
//	fazt apps alias add|remove NAME ALIAS | domain add|remove NAME DOMAIN
//	fazt demo [--views N] [--days N] [--sites a,b,c]
//	fazt bench [--json] ...
//	fazt doctor [--data DIR] [--json]
//
// Query runs read-only SQL over a projection (answers above 16 MiB are
// refused); projections operates them (build --as-of SEQ|TIME --out NAME
// builds one as of a past point into the server's DIR/builds/NAME); demo
// loads a sample of page views into a running server; deploy sends a
// folder as an app (dotfiles and .faztignore patterns left out, only the
// files the server lacks uploaded) and prints its URL,
// http://NAME.localhost:PORT/; apps manages the apps; bench measures
// the kernel against raw JetStream and SQLite; doctor checks a data
// directory and its server and says what to fix (with no server running
// it only reads the directory, and reports what it could not check).
// Each has --help.
//
//	fazt upgrade [--from URL|FILE] [--key KEY] [--data DIR] [--ready-timeout D] [--dry-run]
//	fazt release keygen [--out PREFIX] | manifest --version V [--out DIR] GOOS/GOARCH=BINARY...
//
// Upgrade replaces the binary of the server running for DIR with a
// newer signed release (package kernel/provision): it refuses anything
// unsigned, signed by another key, for another platform, not newer, or
// whose bytes differ from the manifest, before anything changes; swaps
// the binary atomically, keeping the old one as NAME.prev; restarts the
// server (systemctl under systemd, else SIGUSR2, on which serve re-execs
// itself); and puts the old binary back and starts it when the new one
// is not ready within --ready-timeout. -ldflags "-X main.releaseKey=...
// -X main.releaseURL=..." build in the release key and source. Release
// makes the key pair and the signed manifest (the release workflow runs
// it).
//
//	fazt version [--json]
//
// Version prints the module version, the commit, its time and whether
// the tree was modified, as go build records them in a git clone, and
// the Go version. go run, go test, -buildvcs=false and git worktrees
// record no commit; -ldflags "-X main.commit=... -X main.commitTime=...
// -X main.version=..." sets them at link time.
//
// Every command prints data from the server with control characters
// (C0, DEL, C1), line separators and bidirectional formatting
// characters visibly escaped (\x1b, \n, \u202e); --json prints JSON,
// with those characters as \u escapes.
//
// HTTP API (every /v1 route needs "Authorization: Bearer <token>", except
// the public routes verticals declare, such as the analytics collector):
//
//	GET  /healthz, /readyz                 liveness; readiness (503 until the critical projections caught up, or while one is halted)
//	POST /v1/events                        append events atomically, with optional expectations
//	GET  /v1/streams/{stream}?from=&limit= one stream's events
//	GET  /v1/events?after=&limit=&type=&category=   the whole log, a page at a time
//	GET  /v1/events/live?after=&type=&category=     Server-Sent Events, resumable with Last-Event-ID
//
// and the schema, query, projection, doctor, metrics and analytics
// routes listed in the README.
//
// Errors are JSON: {"error":{"code":"...","message":"..."}}.
//
// Exit status: 0 on success, 1 on failure, 2 on a usage error.
package main
