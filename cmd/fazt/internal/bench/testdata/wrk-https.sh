#!/usr/bin/env bash
# HTTPS serving bar with wrk: an app served through the edge (`fazt serve
# --domain`, its certificate from a local Pebble ACME CA) against Caddy
# serving the same 9 KiB and 1 MiB files with its internal CA, and
# against the same app over plain HTTP (the kernel's listener), all
# pinned to one core and wrk to another, keep-alive, in the same run;
# then new connections (a handshake per request). The edge's per-client
# rate limit is raised: wrk is one client.
#
#   apt-get install -y caddy wrk util-linux    # Debian packages
#   go build -o fazt ./cmd/fazt
#   bash cmd/fazt/internal/bench/testdata/wrk-https.sh ./fazt
#
# Pebble (the ACME test CA) is installed with go install when missing;
# it validates nothing (PEBBLE_VA_ALWAYS_VALID), so no DNS is needed.
# wrk sends the URL's host as SNI, so it runs in a private mount
# namespace (unshare, as root) whose /etc/hosts names the site: the
# machine's own file is not touched.
#
# Environment: SERVER_CPU (default 0), WRK_CPU (1), CONNS (32),
# DURATION (5s), RUNS (1: alternated Caddy/edge runs per file).
set -eu
FAZT=$(realpath "${1:-./fazt}")
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
CONNS=${CONNS:-32}
DURATION=${DURATION:-5s}
RUNS=${RUNS:-1}
PEBBLE_VERSION=v2.10.3
for t in caddy wrk taskset unshare curl go; do
	command -v "$t" >/dev/null || { echo "$t not found; install it (apt-get install -y caddy wrk util-linux curl)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root: wrk runs in a private mount namespace with its own /etc/hosts" >&2; exit 1; }
[ -x "$FAZT" ] || { echo "$FAZT: not an executable; build it with go build -o fazt ./cmd/fazt" >&2; exit 1; }
export PATH="$(go env GOPATH)/bin:$PATH"
command -v pebble >/dev/null || go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION"
certs="$(go env GOMODCACHE)/github.com/letsencrypt/pebble/v2@$PEBBLE_VERSION/test/certs"
[ -f "$certs/pebble.minica.pem" ] || go mod download "github.com/letsencrypt/pebble/v2@$PEBBLE_VERSION"

work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
trap 'echo "failed at line $LINENO; logs:" >&2; tail -n 5 "$work"/*.log >&2 2>/dev/null' ERR

mkdir -p "$work/site" "$work/caddy"
head -c 9216 /dev/urandom >"$work/site/small.bin"
head -c 1048576 /dev/urandom >"$work/site/large.bin"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { i=0; until (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; do i=$((i+1)); [ $i -lt 400 ] || { echo "nothing listening on $1" >&2; exit 1; }; sleep 0.05; done; }

# The ACME CA.
pport=$(freeport); pmgmt=$(freeport)
cat >"$work/pebble.json" <<CONF
{"pebble": {"listenAddress": "127.0.0.1:$pport", "managementListenAddress": "127.0.0.1:$pmgmt",
 "certificate": "$certs/localhost/cert.pem", "privateKey": "$certs/localhost/key.pem",
 "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
CONF
PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$work/pebble.json" >"$work/pebble.log" 2>&1 &
pids="$pids $!"
waitport "$pport"

# The kernel with its edge.
kport=$(freeport); hport=$(freeport); sport=$(freeport)
taskset -c "$SERVER_CPU" "$FAZT" serve --data "$work/data" --addr "127.0.0.1:$kport" \
	--domain bench.test --email ops@bench.test --acme-ca "https://127.0.0.1:$pport/dir" --acme-ca-root "$certs/pebble.minica.pem" \
	--http-addr "127.0.0.1:$hport" --https-addr "127.0.0.1:$sport" --site-rate 1000000 --site-burst 1000000 >"$work/serve.log" 2>&1 &
pids="$pids $!"
waitport "$kport"
"$FAZT" deploy "$work/site" --app s --data "$work/data" >"$work/deploy.log" 2>&1

# Caddy, its own CA.
cport=$(freeport)
cat >"$work/caddy/Caddyfile" <<CONF
{
	admin off
	auto_https disable_redirects
	skip_install_trust
	storage file_system $work/caddy/data
	log {
		output discard
	}
}
https://s.bench.test:$cport {
	tls internal
	root * $work/site
	file_server
}
CONF
HOME="$work/caddy" taskset -c "$SERVER_CPU" caddy run --config "$work/caddy/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids="$pids $!"
waitport "$cport"

# Both must answer the file whole over TLS before they are measured (the
# edge's certificate is ordered when the deploy goes live).
for f in small.bin large.bin; do
	i=0
	until curl -sfk --resolve "s.bench.test:$sport:127.0.0.1" "https://s.bench.test:$sport/$f" | cmp -s "$work/site/$f" -; do
		i=$((i+1)); [ $i -lt 200 ] || { echo "the edge does not serve $f whole over HTTPS" >&2; exit 1; }; sleep 0.1
	done
	curl -sfk --resolve "s.bench.test:$cport:127.0.0.1" "https://s.bench.test:$cport/$f" | cmp -s "$work/site/$f" - || { echo "caddy does not serve $f whole" >&2; exit 1; }
done
echo "127.0.0.1 s.bench.test" >"$work/hosts"
wrkns() { unshare -m sh -c 'mount --bind "$0" /etc/hosts && shift && exec "$@"' "$work/hosts" _ taskset -c "$WRK_CPU" wrk "$@"; }

wrkout="$work/wrk.out"
rate() { tee -a "$wrkout" | awk '/^Requests\/sec/ {print $2}'; }
ratio() { awk "BEGIN {printf \"%.2fx\", $1/$2}"; }
echo "servers on cpu $SERVER_CPU, wrk -t1 -c$CONNS -d$DURATION on cpu $WRK_CPU, $(nproc) CPUs, $(date -u +%FT%TZ); caddy $(caddy version | cut -d' ' -f1)"
echo "keep-alive: Caddy over HTTPS, the edge over HTTPS, the same app over plain HTTP (the kernel's listener, Host s.localhost)"
printf '%-10s %-4s %12s %12s %12s %9s %9s\n' file run caddy_req/s edge_req/s http_req/s edge/caddy edge/http
for f in small.bin large.bin; do
	r=1
	while [ $r -le "$RUNS" ]; do
		cr=$(wrkns -t1 -c"$CONNS" -d"$DURATION" "https://s.bench.test:$cport/$f" | rate)
		kr=$(wrkns -t1 -c"$CONNS" -d"$DURATION" "https://s.bench.test:$sport/$f" | rate)
		pr=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" -H "Host: s.localhost" "http://127.0.0.1:$kport/$f" | rate)
		printf '%-10s %-4s %12s %12s %12s %9s %9s\n' "$f" "$r" "$cr" "$kr" "$pr" "$(ratio "$kr" "$cr")" "$(ratio "$kr" "$pr")"
		r=$((r+1))
	done
done
echo "new TLS connection per request (Connection: close), small.bin: handshakes and requests per second"
printf '%-10s %-4s %12s %12s %9s\n' file run caddy_conn/s edge_conn/s edge/caddy
r=1
while [ $r -le "$RUNS" ]; do
	cr=$(wrkns -t1 -c"$CONNS" -d"$DURATION" -H "Connection: close" "https://s.bench.test:$cport/small.bin" | rate)
	kr=$(wrkns -t1 -c"$CONNS" -d"$DURATION" -H "Connection: close" "https://s.bench.test:$sport/small.bin" | rate)
	printf '%-10s %-4s %12s %12s %9s\n' small.bin "$r" "$cr" "$kr" "$(ratio "$kr" "$cr")"
	r=$((r+1))
done
# A rate of errors would be no figure: say so.
if grep -qE 'Non-2xx|Socket errors' "$wrkout"; then
	echo "warning: some requests failed or were not 200 (wrk):" >&2
	grep -E 'Non-2xx|Socket errors' "$wrkout" >&2
	exit 1
fi
