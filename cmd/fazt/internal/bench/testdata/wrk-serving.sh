#!/usr/bin/env bash
# Serving bar with wrk: the kernel (`fazt serve`, the site deployed with
# `fazt deploy`) against nginx serving the same 9 KiB and 1 MiB files
# from disk, the server pinned to one core and wrk to another.
#
#   apt-get install -y nginx wrk      # Debian packages
#   go build -o fazt ./cmd/fazt
#   bash cmd/fazt/internal/bench/testdata/wrk-serving.sh ./fazt
#
# Environment: SERVER_CPU (default 0), WRK_CPU (1), CONNS (32),
# DURATION (5s), RUNS (1: alternated nginx/kernel runs per file).
set -eu
FAZT=$(realpath "${1:-./fazt}")
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
CONNS=${CONNS:-32}
DURATION=${DURATION:-5s}
RUNS=${RUNS:-1}
for t in nginx wrk taskset; do
	command -v "$t" >/dev/null || { echo "$t not found; install it (apt-get install -y nginx wrk util-linux)" >&2; exit 1; }
done
[ -x "$FAZT" ] || { echo "$FAZT: not an executable; build it with go build -o fazt ./cmd/fazt" >&2; exit 1; }

work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
trap 'echo "failed at line $LINENO; logs:" >&2; tail -n 5 "$work"/*.log "$work"/nginx/error.log >&2 2>/dev/null' ERR

mkdir -p "$work/site" "$work/nginx"
head -c 9216 /dev/urandom >"$work/site/small.bin"
head -c 1048576 /dev/urandom >"$work/site/large.bin"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { i=0; until (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; do i=$((i+1)); [ $i -lt 200 ] || { echo "nothing listening on $1" >&2; exit 1; }; sleep 0.05; done; }

kport=$(freeport)
taskset -c "$SERVER_CPU" "$FAZT" serve --data "$work/data" --addr "127.0.0.1:$kport" >"$work/serve.log" 2>&1 &
pids="$pids $!"
waitport "$kport"
"$FAZT" deploy "$work/site" --app benchsite --data "$work/data" >"$work/deploy.log" 2>&1

nport=$(freeport)
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    types { application/octet-stream bin; }
    server { listen 127.0.0.1:$nport; root $work/site; }
}
CONF
taskset -c "$SERVER_CPU" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids="$pids $!"
waitport "$nport"

# Both must answer the file whole before they are measured.
for f in small.bin large.bin; do
	curl -sf -H "Host: benchsite.localhost" "http://127.0.0.1:$kport/$f" | cmp -s "$work/site/$f" - ||
		{ echo "kernel does not serve $f whole" >&2; cat "$work/deploy.log" >&2; exit 1; }
	curl -sf "http://127.0.0.1:$nport/$f" | cmp -s "$work/site/$f" - || { echo "nginx does not serve $f whole" >&2; exit 1; }
done

wrkout="$work/wrk.out"
rate() { tee -a "$wrkout" | awk '/^Requests\/sec/ {print $2}'; }
lat() { awk '/ 50%/ {p50=$2} / 99%/ {p99=$2} END {print p50 " " p99}'; }
echo "server on cpu $SERVER_CPU, wrk -t1 -c$CONNS -d$DURATION on cpu $WRK_CPU, $(nproc) CPUs, $(date -u +%FT%TZ)"
printf '%-10s %-4s %12s %12s %7s   %s\n' file run nginx_req/s kernel_req/s ratio "p50 p99 (nginx | kernel)"
for f in small.bin large.bin; do
	r=1
	while [ $r -le "$RUNS" ]; do
		n=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$nport/$f")
		k=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Host: benchsite.localhost" "http://127.0.0.1:$kport/$f")
		nr=$(echo "$n" | rate); kr=$(echo "$k" | rate)
		printf '%-10s %-4s %12s %12s %7s   %s | %s\n' "$f" "$r" "$nr" "$kr" "$(awk "BEGIN {printf \"%.2fx\", $kr/$nr}")" "$(echo "$n" | lat)" "$(echo "$k" | lat)"
		r=$((r+1))
	done
done
# A rate of errors would be no figure: say so.
if grep -qE 'Non-2xx|Socket errors' "$wrkout"; then
	echo "warning: some requests failed or were not 200 (wrk):" >&2
	grep -E 'Non-2xx|Socket errors' "$wrkout" >&2
	exit 1
fi
