// Command fazt runs the Fazt event log and talks to it.
//
// Fazt is a personal cloud kernel: an append-only, event-sourced log on
// embedded NATS JetStream (package eventlog), served over HTTP.
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
//	fazt events append --stream S --type T [--data JSON|-] [--id ULID] [--expect N | --expect-new] [--json]
//	fazt events read STREAM [--from V] [--limit N] [--json]
//	fazt events tail [--after SEQ] [--type T]... [--category C]... [--json]
//
// The events commands are HTTP clients of a running server. They find it
// with --addr and --token, else FAZT_ADDR and FAZT_TOKEN, else the files
// in the data directory (--data-dir, env FAZT_DATA, default ./fazt-data).
// Tail follows the log until interrupted.
//
//	fazt version [--json]
//
// Version prints the module version, VCS revision and Go version.
//
// HTTP API (every /v1 route needs "Authorization: Bearer <token>"):
//
//	GET  /healthz, /readyz                 liveness; readiness (503 while the log is closed)
//	POST /v1/events                        append events atomically, with optional expectations
//	GET  /v1/streams/{stream}?from=&limit= one stream's events
//	GET  /v1/events?after=&limit=&type=&category=   the whole log, a page at a time
//	GET  /v1/events/live?after=&type=&category=     Server-Sent Events, resumable with Last-Event-ID
//
// Errors are JSON: {"error":{"code":"...","message":"..."}}.
//
// Exit status: 0 on success, 1 on failure, 2 on a usage error.
package main
