#!/usr/bin/env bash
# Load test: Conduit vs nginx (proxy_pass with upstream keepalive) vs a bare Pingora proxy (the
# floor, bench/floor.rs), each alone on one pinned CPU with one worker, in front of the same
# fixed-response nginx upstream. Prints requests/s, p50/p99, proxy CPU µs per request, idle RSS,
# the ratios, start-to-first-request and the binary size. Loopback (127.0.0.1) only.
#
# Usage: bench/run.sh            (from anywhere; builds release binaries first)
# Environment knobs (all optional):
#   DURATION=10s      measured wrk run per proxy          WARMUP=2s   wrk warm-up before it
#   ROUNDS=5          rounds (conduit, nginx, floor; then reversed); the median round is reported
#   CONNECTIONS=50    wrk connections (-c)                 STARTUP_RUNS=5
#   PROXY_CPU=0       CPU for the proxy under test        LOAD_CPU=1  CPU for wrk + upstream
#   PROXY_PORT, UPSTREAM_PORT       default: free ports picked at random in 20000-29999
#   PROXIES="conduit nginx floor"   which proxies to run, in order
#   PROXY_ENV="MALLOC_ARENA_MAX=1"  extra environment for conduit and floor (allocator knobs)
#   FLOOR_WORK_STEALING=0           1 = Pingora's own default (tokio work stealing)
#   SKIP_BUILD=1                    use the binaries already in target/release
#   SCENARIO=single                 single: one upstream target;
#                                   least-conn4: four upstream targets (one nginx listening on four
#                                   ports), Conduit `strategy: least-conn` vs nginx `least_conn`
#                                   (the floor has one target only, so it is left out)
#                                   tls-keepalive: wrk over https (HTTP/1.1, keep-alive); Conduit and
#                                   nginx terminate TLS with the same ECDSA P-256 certificate
#                                   (made by the script) and proxy to the plain upstream
#                                   tls-handshake: one new TCP connection and one full TLS handshake
#                                   per request (HTTP/1.1): h2load --h1 opening HANDSHAKE_RATE
#                                   connections a second, one request each (open loop: req/s is the
#                                   offered rate while the proxy keeps up; h2load keeps no TLS
#                                   sessions, so no handshake is resumed)
#                                   tls-resume: wrk -H 'Connection: close', a new connection per
#                                   request (closed loop); wrk offers the session ticket of the
#                                   previous connection, and both proxies accept it, so these are
#                                   TLS 1.3 resumptions (PSK + ECDHE, no certificate signature)
#                                   h2: h2load over TLS, ALPN h2, -c H2_CONNECTIONS -m H2_STREAMS
#                                   (the floor has no TLS, so the TLS scenarios leave it out)
#                                   auth-apikey, auth-basic, auth-jwt-hs256, auth-jwt-rs256,
#                                   auth-jwt-es256, ratelimit: the cost of one access check (or of a
#                                   memory-store rate limit that never refuses) per request: Conduit
#                                   with the check ("conduit") against the same binary without it
#                                   ("conduit-base"), both over plain HTTP with wrk sending the
#                                   credential on every request; auth-basic uses a bcrypt hash
#                                   (verified once, then cached); the tokens are minted by the
#                                   script with openssl and do not expire during the run
#   PAIRED=1                        check scenarios (auth-*, ratelimit) only, and their default: run
#                                   Conduit with and without the check at the same time, both on
#                                   PROXY_CPU, each loaded by its own wrk with CONNECTIONS/2
#                                   connections; every round swaps which one starts first and which
#                                   port it gets. Both see the same machine at the same moment, so
#                                   the per-round ratio holds to about ±1 % on a shared VM where
#                                   one-after-the-other runs drift by ±20 %. PAIRED=0: one after
#                                   the other, each alone on PROXY_CPU, like the other scenarios
#   CONTROL=1                       check scenarios: give "conduit" the base config too (an A/A
#                                   run: the ratios then show the method's own bias and spread)
#   RATELIMIT="{limit: 1000000, windowSecs: 1, keyBy: ip}"
#                                   SCENARIO=ratelimit: the limit under test (a limit no request
#                                   reaches; add `headers: false` to leave the RateLimit-* headers out)
#   WRK_SCRIPT=bench/clients.lua    a wrk Lua script for the keep-alive HTTP scenarios (clients.lua:
#                                   64 clients named in X-Client, for a limit keyed by that header)
#   SITE_EXTRA="securityHeaders: true"
#                                   check scenarios: more site fields (one per line) for both configs
#   HANDSHAKE_RATE=500              new connections (= requests) per second (SCENARIO=tls-handshake;
#                                   on 2 vCPUs h2load cannot open many more with full handshakes)
#   H2_CONNECTIONS=10 H2_STREAMS=5  h2load -c and -m (SCENARIO=h2): 50 requests in flight like the
#                                   other scenarios, fewer than nginx's 64 (`keepalive 64`) and
#                                   Conduit's 128 (pool.maxIdle) idle upstream connections; with more
#                                   in flight both proxies open and close upstream connections all
#                                   the time (conn/req in the report shows it)
#
# Prerequisites (installed with apt-get when missing): wrk, nginx, curl, taskset, pgrep; for the TLS
# scenarios openssl, and h2load (Debian package nghttp2-client) for h2 and tls-handshake. They need an
# nginx built with http_ssl_module and http_v2_module (checked with `nginx -V`): on Debian 12
# `nginx-light` is a transitional package that pulls in `nginx` (1.22.1), which has both; where an
# nginx without them is installed, install Debian's `nginx` package (or nginx-core/nginx-full).
set -euo pipefail

die() { echo "bench/run.sh: error: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-50}
STARTUP_RUNS=${STARTUP_RUNS:-5}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PROXY_PORT=${PROXY_PORT:-}
UPSTREAM_PORT=${UPSTREAM_PORT:-}
PROXIES=${PROXIES:-conduit nginx floor}
PROXY_ENV=${PROXY_ENV:-}
FLOOR_WORK_STEALING=${FLOOR_WORK_STEALING:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
SCENARIO=${SCENARIO:-single}
H2_CONNECTIONS=${H2_CONNECTIONS:-10}
H2_STREAMS=${H2_STREAMS:-5}
HANDSHAKE_RATE=${HANDSHAKE_RATE:-500}
TLS=0
H2LOAD=0 # 1: the load generator is h2load (h2, tls-handshake), else wrk
CHECK=0  # 1: an access-check / rate-limit scenario (conduit vs conduit-base)
case $SCENARIO in
    single) ;;
    auth-apikey | auth-basic | auth-jwt-hs256 | auth-jwt-rs256 | auth-jwt-es256 | ratelimit)
        CHECK=1 PROXIES="conduit conduit-base" ;;
    least-conn4) PROXIES=${PROXIES/floor/} ;;
    tls-keepalive | tls-resume) TLS=1 PROXIES=${PROXIES/floor/} ;;
    tls-handshake | h2) TLS=1 H2LOAD=1 PROXIES=${PROXIES/floor/} ;;
    *) die "unknown SCENARIO '$SCENARIO' (expected single, least-conn4, tls-keepalive, tls-resume, tls-handshake, h2, auth-apikey, auth-basic, auth-jwt-hs256, auth-jwt-rs256, auth-jwt-es256 or ratelimit)" ;;
esac
PAIRED=${PAIRED:-$CHECK}
CONTROL=${CONTROL:-0}
RATELIMIT=${RATELIMIT:-"{limit: 1000000, windowSecs: 1, keyBy: ip}"}
SITE_EXTRA=${SITE_EXTRA:-}
WRK_SCRIPT=${WRK_SCRIPT:-}
if [ -n "$WRK_SCRIPT" ]; then
    [ -f "$WRK_SCRIPT" ] || die "WRK_SCRIPT $WRK_SCRIPT: no such file"
    WRK_SCRIPT=$(cd "$(dirname "$WRK_SCRIPT")" && pwd)/$(basename "$WRK_SCRIPT")
fi
[ -z "$SITE_EXTRA" ] || [ "$CHECK" = 1 ] || die "SITE_EXTRA is for the check scenarios (auth-*, ratelimit) only"
[ "$PAIRED" = 0 ] || [ "$CHECK" = 1 ] || die "PAIRED=1 is for the check scenarios (auth-*, ratelimit) only"
[ "$CONTROL" = 0 ] || [ "$CHECK" = 1 ] || die "CONTROL=1 is for the check scenarios (auth-*, ratelimit) only"
if [ "$PAIRED" = 1 ]; then
    [ "$CONNECTIONS" -ge 2 ] || die "PAIRED=1 needs CONNECTIONS >= 2 (it is split between the two proxies)"
    CONNECTIONS=$((CONNECTIONS / 2))
fi
[ "$HANDSHAKE_RATE" -ge 100 ] 2>/dev/null || die "HANDSHAKE_RATE must be an integer >= 100"

# --- prerequisites -----------------------------------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
if [ "$TLS" = 1 ] || [ "$CHECK" = 1 ]; then
    command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
    [ "$H2LOAD" != 1 ] || command -v h2load >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${need_pkgs[*]} and no apt-get to install them"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing ${need_pkgs[*]}"
    $SUDO apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null ||
        die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ "$TLS" = 1 ]; then
    NGINX_V=$("$NGINX" -V 2>&1) || die "$NGINX -V failed: $NGINX_V"
    for m in http_ssl_module http_v2_module; do
        grep -q -- "--with-$m" <<<"$NGINX_V" ||
            die "$NGINX is built without $m (SCENARIO=$SCENARIO needs it): install Debian's nginx package"
    done
fi
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
[ "$PROXY_CPU" -lt "$NCPU" ] && [ "$LOAD_CPU" -lt "$NCPU" ] ||
    die "PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU but this machine has $NCPU CPUs"
[ "$PROXY_CPU" != "$LOAD_CPU" ] || log "warning: proxy and load share CPU $PROXY_CPU; numbers mean little"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a port in 20000-29999 that nothing listens on and that is not $1
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 10000))
        [ "$p" != "${1:-}" ] && ! port_busy "$p" && { echo "$p"; return 0; }
    done
    die "no free port found on 127.0.0.1"
}
[ -n "$PROXY_PORT" ] || PROXY_PORT=$(free_port)
[ -n "$UPSTREAM_PORT" ] || UPSTREAM_PORT=$(free_port "$PROXY_PORT")
if [ "$SCENARIO" = least-conn4 ] && [ "$PROXY_PORT" -gt "$UPSTREAM_PORT" ] &&
    [ "$PROXY_PORT" -le $((UPSTREAM_PORT + 3)) ]; then
    UPSTREAM_PORT=$((PROXY_PORT + 1))
fi
for p in "$PROXY_PORT" "$UPSTREAM_PORT"; do
    ! port_busy "$p" || die "port $p on 127.0.0.1 is in use (set PROXY_PORT / UPSTREAM_PORT)"
done
# PAIRED=1: the second proxy's port.
PAIR_PORT=""
if [ "$PAIRED" = 1 ]; then
    PAIR_PORT=$(free_port "$PROXY_PORT")
    while [ "$PAIR_PORT" = "$UPSTREAM_PORT" ]; do PAIR_PORT=$(free_port "$PROXY_PORT"); done
fi
# TLS scenarios: the upstream nginx also terminates TLS on this port, for the load-side ceiling only.
UPSTREAM_TLS_PORT=""
if [ "$TLS" = 1 ]; then
    UPSTREAM_TLS_PORT=$(free_port "$PROXY_PORT")
    while [ "$UPSTREAM_TLS_PORT" = "$UPSTREAM_PORT" ]; do UPSTREAM_TLS_PORT=$(free_port "$PROXY_PORT"); done
fi
read -r LOAD1 _ </proc/loadavg
awk -v l="$LOAD1" 'BEGIN {exit !(l > 0.5)}' &&
    log "warning: load average is $LOAD1; other work on this machine skews the numbers"

# --- build -------------------------------------------------------------------------------------

CONDUIT=$TARGET_DIR/release/conduit
FLOOR=$TARGET_DIR/release/examples/floor
if [ "$SKIP_BUILD" != 1 ]; then
    log "building release binaries (cargo build --release --features standard --bin conduit --example floor)"
    (cd "$ROOT" && cargo build --release --features standard --bin conduit --example floor) || die "release build failed"
fi
[ -x "$CONDUIT" ] || die "$CONDUIT not found (build it, or unset SKIP_BUILD)"
[ -x "$FLOOR" ] || die "$FLOOR not found (build it, or unset SKIP_BUILD)"

# From here on this script (and what it starts without its own taskset: curl, the start-up probes)
# runs on the load CPU, away from the proxy.
taskset -cp "$LOAD_CPU" $$ >/dev/null || die "taskset -cp $LOAD_CPU failed"

# --- process bookkeeping -----------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/conduit-bench.XXXXXX")
PIDS=()
SCHEME=http

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ "$rc" -ne 0 ] && [ -d "$TMP" ]; then
        echo "bench/run.sh: failed (exit $rc); logs:" >&2
        tail -n 5 "$TMP"/*.log "$TMP"/*/*.log 2>/dev/null >&2 || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# start_proc CPU LOGFILE CMD... : starts CMD pinned on CPU in the background; sets STARTED_PID.
start_proc() {
    local cpu=$1 logf=$2
    shift 2
    taskset -c "$cpu" "$@" >"$logf" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

now_us() { echo "${EPOCHREALTIME/./}"; } # no fork

# http_ok PORT: one GET / over bash's /dev/tcp (no fork, so it can poll every few µs); true on 200.
http_ok() {
    local line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3 2>/dev/null || true
    read -t 2 -r line <&3 2>/dev/null || true
    exec 3<&- 3>&-
    [[ $line == "HTTP/1."?" 200"* ]]
}

# wait_ok PORT PID TIMEOUT_S [SCHEME]: polls GET / until it answers 200 "ok"; fails if PID dies.
wait_ok() {
    local port=$1 pid=$2 deadline=$(($(date +%s) + $3)) scheme=${4:-http}
    while true; do
        if taskset -c "$LOAD_CPU" curl -sk -o /dev/null --max-time 1 -w '%{http_code}' \
            ${LOAD_HEADER:+-H "$LOAD_HEADER"} "$scheme://127.0.0.1:$port/" 2>/dev/null | grep -qx 200; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        [ "$(date +%s)" -lt "$deadline" ] || return 1
    done
}

cpu_ticks() { # utime + stime (fields 14, 15) of the whole process, in clock ticks
    local stat rest
    stat=$(cat "/proc/$1/stat") || die "process $1 is gone"
    rest=${stat##*) } # fields from 3 on (the name in field 2 may contain spaces)
    awk '{print $12 + $13}' <<<"$rest"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

nginx_conf() { # nginx_conf DIR BODY -> writes DIR/nginx.conf
    local dir=$1 body=$2
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
$body
}
EOF
    "$NGINX" -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" 2>"$dir/check.log" ||
        die "nginx config in $dir rejected: $(cat "$dir/check.log")"
}

# --- TLS certificate (TLS scenarios) ------------------------------------------------------------

# One self-signed ECDSA P-256 certificate, served by Conduit, by nginx as a proxy and by the
# upstream's TLS listener (ceiling only). The load generators do not verify it.
NGINX_TLS=""
if [ "$TLS" = 1 ]; then
    SCHEME=https
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/openssl.log" 2>&1 ||
        die "openssl req failed: $(cat "$TMP/openssl.log")"
    # The same protocol versions as Conduit's default; both offer h2 and http/1.1 by ALPN.
    NGINX_TLS="        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;"
fi

# --- upstream ----------------------------------------------------------------------------------

UPSTREAM_LISTEN="        listen 127.0.0.1:$UPSTREAM_PORT;"
if [ "$SCENARIO" = least-conn4 ]; then
    for k in 1 2 3; do
        UPSTREAM_LISTEN="$UPSTREAM_LISTEN
        listen 127.0.0.1:$((UPSTREAM_PORT + k));"
    done
fi
if [ "$TLS" = 1 ]; then
    UPSTREAM_LISTEN="$UPSTREAM_LISTEN
        listen 127.0.0.1:$UPSTREAM_TLS_PORT ssl http2;
$NGINX_TLS"
fi
nginx_conf "$TMP/upstream" "    server {
$UPSTREAM_LISTEN
        location / { default_type text/plain; return 200 \"ok\"; }
    }"
start_proc "$LOAD_CPU" "$TMP/upstream.log" "$NGINX" -e "$TMP/upstream/error.log" -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf"
UPSTREAM_PID=$STARTED_PID
wait_ok "$UPSTREAM_PORT" "$UPSTREAM_PID" 5 || die "upstream nginx did not start (see $TMP/upstream)"
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT (CPU $LOAD_CPU, pid $UPSTREAM_PID)"

# --- the proxies -------------------------------------------------------------------------------

if [ "$SCENARIO" = least-conn4 ]; then
    cat >"$TMP/conduit.yaml" <<EOF
global: {workers: 1, bind: 127.0.0.1}
sites:
  - port: $PROXY_PORT
    proxy:
      /:
        strategy: least-conn
        targets:
          - http://127.0.0.1:$UPSTREAM_PORT
          - http://127.0.0.1:$((UPSTREAM_PORT + 1))
          - http://127.0.0.1:$((UPSTREAM_PORT + 2))
          - http://127.0.0.1:$((UPSTREAM_PORT + 3))
EOF
    NGINX_SERVERS="        least_conn;"
    for k in 0 1 2 3; do
        NGINX_SERVERS="$NGINX_SERVERS
        server 127.0.0.1:$((UPSTREAM_PORT + k));"
    done
else
    cat >"$TMP/conduit.yaml" <<EOF
global: {workers: 1, bind: 127.0.0.1}
sites:
  - port: $PROXY_PORT
    proxy: http://127.0.0.1:$UPSTREAM_PORT
EOF
    if [ "$TLS" = 1 ]; then
        # HTTP/2 by ALPN is on by default (http2.enabled), like `http2` on nginx's listen below.
        cat >>"$TMP/conduit.yaml" <<EOF
    tls: {cert: $TMP/cert.pem, key: $TMP/key.pem}
EOF
    fi
    NGINX_SERVERS="        server 127.0.0.1:$UPSTREAM_PORT;"
fi
# Access-check scenarios: conduit.yaml = the plain config + the check; wrk sends the credential.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
LOAD_HEADER=""
if [ "$CHECK" = 1 ]; then
    # SITE_EXTRA: more site fields for both (e.g. `securityHeaders: true`), one per line.
    [ -z "$SITE_EXTRA" ] || printf '%s\n' "$SITE_EXTRA" | sed 's/^/    /' >>"$TMP/conduit.yaml"
    cp "$TMP/conduit.yaml" "$TMP/conduit-base.yaml"
    NOW=$(date +%s)
    CLAIMS=$(printf '{"sub":"bench-user","iat":%d,"exp":%d}' "$NOW" $((NOW + 86400)) | b64url)
    case $SCENARIO in
        auth-apikey)
            echo "    apiKey: {keys: [bench-key-1, bench-key-2, bench-key-3]}" >>"$TMP/conduit.yaml"
            LOAD_HEADER="X-API-Key: bench-key-3"
            ;;
        auth-basic)
            # bcrypt (cost 10) of "bench-pass"; `$` doubled for the config's variable syntax.
            echo '    basicAuth: {users: {bench: "$$2b$$10$$yC2YbWBMNdkJL24KpbQu..nNojxNWEa81cvmNCznKRrzw9ExjcbPW"}}' >>"$TMP/conduit.yaml"
            LOAD_HEADER="Authorization: Basic $(printf 'bench:bench-pass' | openssl base64 -A)"
            ;;
        auth-jwt-hs256)
            SECRET=bench-secret-0123456789abcdef0123456789
            echo "    jwtAuth: {secret: $SECRET, algorithms: [HS256]}" >>"$TMP/conduit.yaml"
            INPUT="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url).$CLAIMS"
            SIG=$(printf '%s' "$INPUT" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
            LOAD_HEADER="Authorization: Bearer $INPUT.$SIG"
            ;;
        auth-jwt-rs256 | auth-jwt-es256)
            if [ "$SCENARIO" = auth-jwt-rs256 ]; then
                ALG=RS256
                openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/jwt.key" 2>/dev/null
            else
                ALG=ES256
                openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/jwt.key" 2>/dev/null
            fi
            openssl pkey -in "$TMP/jwt.key" -pubout -out "$TMP/jwt.pub" 2>/dev/null || die "openssl key generation failed"
            echo "    jwtAuth: {publicKey: $TMP/jwt.pub, algorithms: [$ALG]}" >>"$TMP/conduit.yaml"
            INPUT="$(printf '{"alg":"%s","typ":"JWT"}' "$ALG" | b64url).$CLAIMS"
            printf '%s' "$INPUT" | openssl dgst -sha256 -sign "$TMP/jwt.key" -out "$TMP/sig.der" ||
                die "openssl signing failed"
            if [ "$ALG" = RS256 ]; then
                SIG=$(b64url <"$TMP/sig.der")
            else
                # JWS wants ES256 as r || s (32 bytes each), openssl writes DER: convert.
                SIG=$(openssl asn1parse -inform DER -in "$TMP/sig.der" |
                    awk -F: '/INTEGER/ {v = $NF; while (length(v) < 64) v = "0" v; printf "%s", substr(v, length(v) - 63)}' |
                    sed 's/../\\x&/g' | { read -r esc; printf '%b' "$esc"; } | b64url)
            fi
            LOAD_HEADER="Authorization: Bearer $INPUT.$SIG"
            ;;
        ratelimit)
            # A memory-store limit no request reaches: the cost of the decision and its headers.
            echo "    rateLimit: $RATELIMIT" >>"$TMP/conduit.yaml"
            ;;
    esac
    # The check must let wrk's requests through: one request with the credential, one without.
    "$CONDUIT" validate -c "$TMP/conduit-base.yaml" >"$TMP/validate.log" 2>&1 ||
        die "conduit rejected the base bench config: $(cat "$TMP/validate.log")"
fi
"$CONDUIT" validate -c "$TMP/conduit.yaml" >"$TMP/validate.log" 2>&1 ||
    die "conduit rejected the bench config: $(cat "$TMP/validate.log")"
if [ "$CONTROL" = 1 ]; then
    cp "$TMP/conduit.yaml" "$TMP/conduit-check.yaml"
    cp "$TMP/conduit-base.yaml" "$TMP/conduit.yaml"
fi

nginx_conf "$TMP/nginx-proxy" "    upstream up {
$NGINX_SERVERS
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT${NGINX_TLS:+ ssl http2};
$NGINX_TLS
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

# start_proxy NAME: starts it on PROXY_CPU; sets PROXY_PID (the process that does the work).
start_proxy() {
    local name=$1
    case $name in
        conduit)
            # shellcheck disable=SC2086
            start_proc "$PROXY_CPU" "$TMP/conduit.log" env TMPDIR="$TMP" $PROXY_ENV "$CONDUIT" -c "$TMP/conduit.yaml"
            ;;
        conduit-base)
            # shellcheck disable=SC2086
            start_proc "$PROXY_CPU" "$TMP/conduit-base.log" env TMPDIR="$TMP" $PROXY_ENV "$CONDUIT" -c "$TMP/conduit-base.yaml"
            ;;
        floor)
            # shellcheck disable=SC2086
            start_proc "$PROXY_CPU" "$TMP/floor.log" env TMPDIR="$TMP" $PROXY_ENV "$FLOOR" "$PROXY_PORT" \
                "127.0.0.1:$UPSTREAM_PORT" 1 "$FLOOR_WORK_STEALING"
            ;;
        nginx)
            start_proc "$PROXY_CPU" "$TMP/nginx-proxy.log" "$NGINX" -e "$TMP/nginx-proxy/error.log" -p "$TMP/nginx-proxy" \
                -c "$TMP/nginx-proxy/nginx.conf"
            ;;
        *) die "unknown proxy '$name' in PROXIES (expected conduit, conduit-base, nginx, floor)" ;;
    esac
    PROXY_MAIN=$STARTED_PID
    PROXY_PID=$STARTED_PID
}

stop_proxy() {
    stop_pid "$PROXY_MAIN"
    forget_pid "$PROXY_MAIN"
    local i
    for i in $(seq 1 100); do port_busy "$PROXY_PORT" || return 0; sleep 0.05; done
    die "port $PROXY_PORT still answers after stopping the proxy"
}

# dur_secs DURATION (wrk style: 10, 10s, 2m, 1h) -> whole seconds
dur_secs() {
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "" || u == "s") m = 1; else if (u == "m") m = 60; else if (u == "h") m = 3600; else m = -1;
        if (m < 0 || n <= 0) exit 1; s = int(n * m + 0.5); print (s < 1 ? 1 : s) }' ||
        die "cannot read duration '$1' (use e.g. 10s or 2m)"
}

# The scenario's load generator, as the log and the report show it.
case $SCENARIO in
    h2) LOAD_DESC="h2load -t1 -c$H2_CONNECTIONS -m$H2_STREAMS -D$DURATION (TLS, ALPN h2)" ;;
    tls-handshake) LOAD_DESC="h2load --h1 -t1, $HANDSHAKE_RATE new TLS connections/s for $DURATION, 1 request each (full handshakes)" ;;
    tls-resume) LOAD_DESC="wrk -t1 -c$CONNECTIONS -d$DURATION -H 'Connection: close' (https, HTTP/1.1, resumed TLS sessions)" ;;
    tls-keepalive) LOAD_DESC="wrk -t1 -c$CONNECTIONS -d$DURATION (https, HTTP/1.1 keep-alive)" ;;
    *) LOAD_DESC="wrk -t1 -c$CONNECTIONS -d$DURATION" ;;
esac
[ "$PAIRED" = 0 ] || LOAD_DESC="two wrk -t1 -c$CONNECTIONS -d$DURATION at once, one per proxy"

# run_load PORT DURATION OUTFILE: the scenario's load generator against 127.0.0.1:PORT, on LOAD_CPU.
run_load() {
    local url="$SCHEME://127.0.0.1:$1/" cmd per n
    case $SCENARIO in
        h2) cmd=(h2load -t1 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D"$2" "$url") ;;
        tls-handshake)
            # Open loop: every 10 ms h2load opens HANDSHAKE_RATE/100 new connections (small batches:
            # larger ones queue behind each other's handshakes), each sends one request and is
            # closed; -c = -n = all the connections of the run.
            per=$(((HANDSHAKE_RATE + 50) / 100))
            n=$((per * 100 * $(dur_secs "$2")))
            cmd=(h2load --h1 -t1 -c"$n" -n"$n" -r"$per" --rate-period=10ms "$url")
            ;;
        # wrk reconnects after each response that ends its connection: one handshake per request.
        tls-resume) cmd=(wrk -t1 -c"$CONNECTIONS" -d"$2" --latency -H "Connection: close" "$url") ;;
        *) cmd=(wrk -t1 -c"$CONNECTIONS" -d"$2" --latency ${LOAD_HEADER:+-H "$LOAD_HEADER"} ${WRK_SCRIPT:+-s "$WRK_SCRIPT"} "$url") ;;
    esac
    # In the background + wait, so that Ctrl-C / TERM reach the trap at once.
    taskset -c "$LOAD_CPU" "${cmd[@]}" >"$3" 2>&1 &
    local w=$! rc=0
    PIDS+=("$w")
    wait "$w" || rc=$?
    forget_pid "$w"
    [ "$rc" -eq 0 ] || die "${cmd[0]} failed (exit $rc): $(cat "$3")"
}

# parse_load OUTFILE NAME: reads run_load's output into L_REQS (responses), L_SECS (measured
# seconds), L_RPS, L_LAT1 and L_LAT2 (µs: wrk p50 and p99; h2load, which has no percentiles, the
# mean and the standard deviation), L_TLS (h2load); warns about errors.
parse_load() {
    local out=$1 name=$2 bad
    if [ "$H2LOAD" = 1 ]; then
        local proto=h2
        [ "$SCENARIO" = h2 ] || proto=http/1.1
        grep -q "^Application protocol: $proto\$" "$out" ||
            die "$name: h2load did not negotiate $proto: $(grep -E 'protocol|No protocol' "$out" | paste -sd';')"
        L_REQS=$(awk '/^requests:/ {for (i = 2; i < NF; i++) if ($(i + 1) ~ /^done/) print $i; exit}' "$out")
        [ -n "$L_REQS" ] && [ "$L_REQS" -gt 0 ] || die "$name: h2load completed no requests: $(cat "$out")"
        bad=$(awk '/^requests:/ {for (i = 2; i < NF; i++) if ($(i + 1) ~ /^(failed|errored|timeout)/ && $i > 0)
            printf "%s %s ", $i, $(i + 1)} /^status codes:/ {for (i = 3; i < NF; i++)
            if ($(i + 1) ~ /^[345]xx/ && $i > 0) printf "%s %s ", $i, $(i + 1)}' "$out")
        [ -z "$bad" ] || log "warning: $name: h2load: $bad"
        L_SECS=$(awk '/^finished in/ {v = $3; sub(/,$/, "", v); n = v + 0; if (v ~ /ms$/) n /= 1000;
            else if (v ~ /m$/) n *= 60; print n; exit}' "$out")
        L_RPS=$(awk '/^finished in/ {printf "%.0f", $4; exit}' "$out")
        # Request time; with a connection per request, time to the first byte from the start of
        # the connection (connect + handshake + request).
        local line="time for request:"
        [ "$SCENARIO" != tls-handshake ] || line="time to 1st byte:"
        L_LAT1=$(to_us "$(awk -v l="$line" 'index($0, l) == 1 {$0 = substr($0, length(l) + 1); print $3; exit}' "$out")")
        L_LAT2=$(to_us "$(awk -v l="$line" 'index($0, l) == 1 {$0 = substr($0, length(l) + 1); print $4; exit}' "$out")")
        L_TLS=$(awk -F': ' '/^TLS Protocol:/ {p = $2} /^Cipher:/ {c = $2} /^Server Temp Key:/ {k = $2}
            /^Application protocol:/ {a = $2} END {printf "%s / %s / %s, ALPN %s", p, c, k, a}' "$out")
        if [ "$SCENARIO" = tls-handshake ] &&
            awk -v r="$L_RPS" -v want="$HANDSHAKE_RATE" 'BEGIN {exit !(r < 0.95 * want)}'; then
            log "warning: $name: $L_RPS req/s, below the offered $HANDSHAKE_RATE/s: it (or the load side) is saturated"
        fi
    else
        L_REQS=$(awk '/requests in/ {print $1; exit}' "$out")
        [ -n "$L_REQS" ] && [ "$L_REQS" -gt 0 ] || die "$name: wrk completed no requests: $(cat "$out")"
        if grep -qE 'Non-2xx|Socket errors' "$out"; then
            log "warning: $name: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd';')"
        fi
        L_SECS=$(awk '/requests in/ {v = $4; sub(/,$/, "", v); n = v + 0; if (v ~ /ms$/) n /= 1000;
            else if (v ~ /m$/) n *= 60; print n; exit}' "$out")
        L_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
        L_LAT1=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")
        L_LAT2=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")
    fi
}

# tcp_passive_opens -> connections accepted so far on this machine (all sockets; /proc/net/snmp)
tcp_passive_opens() {
    awk '$1 == "Tcp:" {if (!h) {for (i = 2; i <= NF; i++) if ($i == "PassiveOpens") c = i; h = 1}
        else {print $c; exit}}' /proc/net/snmp
}

# tls_info PORT -> "TLSv1.3 / TLS_AES_256_GCM_SHA384, ALPN h2" as curl negotiates it (wrk uses the
# same OpenSSL defaults but offers no ALPN, so it speaks HTTP/1.1)
tls_info() {
    taskset -c "$LOAD_CPU" curl -skv -o /dev/null --max-time 2 "https://127.0.0.1:$1/" 2>&1 |
        awk '/SSL connection using/ {sub(/.*SSL connection using /, ""); t = $0}
            /ALPN: server accepted/ || /ALPN, server accepted/ {a = $NF}
            END {printf "%s, ALPN %s", t, (a == "" ? "none" : a)}'
}

# to_us VALUE_WITH_UNIT (wrk's 1.23ms / 456.00us / 1.02s) -> microseconds
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000;
        else if (u == "m") m = 60000000; else m = -1;
        if (m < 0) print "?"; else printf "%.0f", n * m }'
}

# cpu_line CPU -> "busy steal" ticks of one CPU from /proc/stat (busy = user+nice+system+irq+softirq)
cpu_line() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }

# Results, keyed "name#round".
declare -A RPS P50 P99 CPU_US CPU_PCT OTHER_PCT STEAL_PCT RSS RSS_AFTER START_MS CONN TLS_INFO

# measure NAME ROUND: one warm-up and one measured load run against a fresh NAME.
measure() {
    local name=$1 k=$1#$2 out=$TMP/load-$1-$2.txt
    log "$name (round $2): starting on CPU $PROXY_CPU"
    start_proxy "$name"
    wait_ok "$PROXY_PORT" "$PROXY_MAIN" 10 "$SCHEME" ||
        die "$name did not start or does not proxy (see its log in $TMP)"
    [ "$TLS" != 1 ] || [ -n "${TLS_INFO[$name]:-}" ] || TLS_INFO[$name]="$(tls_info "$PROXY_PORT") (curl)"
    if [ "$name" = nginx ]; then
        # The master only supervises; the worker does the work.
        PROXY_PID=$(pgrep -P "$PROXY_MAIN" | head -n1)
        [ -n "$PROXY_PID" ] || die "no nginx worker under pid $PROXY_MAIN"
    fi
    sleep 0.5
    RSS[$k]=$(rss_kb "$PROXY_PID")
    run_load "$PROXY_PORT" "$WARMUP" "$TMP/warmup-$name.txt"
    local t0 t1 c0 c1 b0 b1 s0 s1 o0 o1
    t0=$(cpu_ticks "$PROXY_PID")
    [ "$name" != nginx ] || t0=$((t0 + $(cpu_ticks "$PROXY_MAIN")))
    c0=$(cpu_line "$PROXY_CPU")
    o0=$(tcp_passive_opens)
    log "$name (round $2): $LOAD_DESC"
    run_load "$PROXY_PORT" "$DURATION" "$out"
    o1=$(tcp_passive_opens)
    t1=$(cpu_ticks "$PROXY_PID")
    [ "$name" != nginx ] || t1=$((t1 + $(cpu_ticks "$PROXY_MAIN")))
    c1=$(cpu_line "$PROXY_CPU")
    RSS_AFTER[$k]=$(rss_kb "$PROXY_PID")

    parse_load "$out" "$name"
    [ "$H2LOAD" != 1 ] || TLS_INFO[$name]="$L_TLS (h2load)"
    read -r b0 s0 <<<"$c0"
    read -r b1 s1 <<<"$c1"
    record_run "$k" $((t1 - t0)) $((o1 - o0)) $((b1 - b0)) $((s1 - s0)) $((t1 - t0))
    stop_proxy
}

# record_run KEY PROXY_TICKS OPENS CPU_BUSY_TICKS STEAL_TICKS CHARGED_TICKS: the results of one
# measured run (after parse_load) under KEY. CHARGED_TICKS is what the proxies on PROXY_CPU were
# charged; the rest of the CPU's busy time is "other" work.
record_run() {
    local k=$1 ticks=$2 opens=$3 busy=$4 steal=$5 charged=$6
    RPS[$k]=$L_RPS P50[$k]=$L_LAT1 P99[$k]=$L_LAT2
    # New TCP connections (client->proxy and proxy->upstream) per request: ~1 when every request
    # handshakes, ~0 with keep-alive on both sides.
    CONN[$k]=$(awk -v d="$opens" -v n="$L_REQS" 'BEGIN {printf "%.3f", d / n}')
    CPU_US[$k]=$(awk -v d="$ticks" -v hz="$CLK_TCK" -v n="$L_REQS" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
    CPU_PCT[$k]=$(awk -v d="$ticks" -v hz="$CLK_TCK" -v s="$L_SECS" 'BEGIN {printf "%.0f", d / hz / s * 100}')
    # Work on the proxy's CPU that no proxy was charged for (other processes, interrupts not
    # billed to it), and hypervisor steal: both say how clean the run was.
    OTHER_PCT[$k]=$(awk -v b="$busy" -v p="$charged" -v hz="$CLK_TCK" -v s="$L_SECS" \
        'BEGIN {v = (b - p) / hz / s * 100; if (v < 0) v = 0; printf "%.0f", v}')
    STEAL_PCT[$k]=$(awk -v d="$steal" -v hz="$CLK_TCK" -v s="$L_SECS" 'BEGIN {printf "%.0f", d / hz / s * 100}')
}

# load_both PORT_A PORT_B DURATION OUT_A OUT_B: run_load against both ports at the same time.
load_both() {
    local w1 w2
    run_load "$1" "$3" "$4" &
    w1=$!
    run_load "$2" "$3" "$5" &
    w2=$!
    PIDS+=("$w1" "$w2")
    wait "$w1" && wait "$w2" || die "the load on ports $1 and $2 failed"
    forget_pid "$w1"
    forget_pid "$w2"
}

# measure_pair ROUND (PAIRED=1): Conduit with and without the check, started together on
# PROXY_CPU, warmed up and loaded at the same time by one wrk each. Odd rounds start "conduit"
# first on PROXY_PORT, even rounds "conduit-base", so an edge of the start order or of the port
# cancels over the rounds.
measure_pair() {
    local r=$1 first=conduit second=conduit-base name c0 c1 b0 b1 s0 s1 o0 o1
    [ $((r % 2)) = 1 ] || { first=conduit-base; second=conduit; }
    local -A port pid t0 t1
    port[$first]=$PROXY_PORT
    port[$second]=$PAIR_PORT
    for name in "$first" "$second"; do
        sed "s/^  - port: $PROXY_PORT\$/  - port: ${port[$name]}/" "$TMP/$name.yaml" >"$TMP/$name-pair.yaml"
        log "$name (round $r): starting on CPU $PROXY_CPU, port ${port[$name]}"
        # shellcheck disable=SC2086
        start_proc "$PROXY_CPU" "$TMP/$name.log" env TMPDIR="$TMP" $PROXY_ENV "$CONDUIT" -c "$TMP/$name-pair.yaml"
        pid[$name]=$STARTED_PID
    done
    for name in "$first" "$second"; do
        wait_ok "${port[$name]}" "${pid[$name]}" 10 || die "$name did not start or does not proxy (see its log in $TMP)"
    done
    sleep 0.5
    for name in "$first" "$second"; do RSS[$name#$r]=$(rss_kb "${pid[$name]}"); done
    load_both "${port[$first]}" "${port[$second]}" "$WARMUP" "$TMP/warmup-$first.txt" "$TMP/warmup-$second.txt"
    for name in "$first" "$second"; do t0[$name]=$(cpu_ticks "${pid[$name]}"); done
    c0=$(cpu_line "$PROXY_CPU")
    o0=$(tcp_passive_opens)
    log "both (round $r): $LOAD_DESC"
    load_both "${port[$first]}" "${port[$second]}" "$DURATION" "$TMP/load-$first-$r.txt" "$TMP/load-$second-$r.txt"
    o1=$(tcp_passive_opens)
    for name in "$first" "$second"; do t1[$name]=$(cpu_ticks "${pid[$name]}"); done
    c1=$(cpu_line "$PROXY_CPU")
    read -r b0 s0 <<<"$c0"
    read -r b1 s1 <<<"$c1"
    local both=$((t1[$first] - t0[$first] + t1[$second] - t0[$second]))
    for name in "$first" "$second"; do
        RSS_AFTER[$name#$r]=$(rss_kb "${pid[$name]}")
        parse_load "$TMP/load-$name-$r.txt" "$name"
        record_run "$name#$r" $((t1[$name] - t0[$name])) $((o1 - o0)) $((b1 - b0)) $((s1 - s0)) "$both"
    done
    for name in "$first" "$second"; do
        stop_pid "${pid[$name]}"
        forget_pid "${pid[$name]}"
    done
}

# startup NAME: median and min ms from exec to the first proxied 200, over STARTUP_RUNS starts.
# Polls with http_ok rather than curl: one curl run costs ~13 ms on a small VM, more than the
# quantity measured.
startup() {
    local name=$1 i t0 t1 samples=()
    for i in $(seq 1 "$STARTUP_RUNS"); do
        t0=$(now_us)
        start_proxy "$name"
        until http_ok "$PROXY_PORT"; do
            kill -0 "$PROXY_MAIN" 2>/dev/null || die "$name exited during the startup test"
            [ $(($(now_us) - t0)) -lt 10000000 ] || die "$name not serving 10 s after start"
        done
        t1=$(now_us)
        samples+=("$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", d / 1e3}')")
        stop_proxy
    done
    START_MS[$name]=$(printf '%s\n' "${samples[@]}" | sort -n |
        awk '{a[NR] = $1} END {printf "%s (min %s)", a[int((NR + 1) / 2)], a[1]}')
}

# TLS scenarios: the same load generator against the upstream nginx's own TLS listener.
DIRECT_PORT=$UPSTREAM_PORT
[ "$TLS" != 1 ] || DIRECT_PORT=$UPSTREAM_TLS_PORT
log "load-side ceiling: $LOAD_DESC straight at the upstream (port $DIRECT_PORT)"
run_load "$DIRECT_PORT" "$DURATION" "$TMP/load-direct.txt"
parse_load "$TMP/load-direct.txt" "upstream"
DIRECT_RPS=$L_RPS

# Odd rounds run the proxies in the given order, even rounds in reverse, so that a drift within a
# round (the first proxy of a round was seen to measure ~10 % lower than the second) cancels.
REVERSED=$(printf '%s\n' $PROXIES | tac | tr '\n' ' ')
for round in $(seq 1 "$ROUNDS"); do
    if [ "$PAIRED" = 1 ]; then
        measure_pair "$round"
        continue
    fi
    order=$PROXIES
    [ $((round % 2)) = 1 ] || order=$REVERSED
    for name in $order; do measure "$name" "$round"; done
done
# (Start-up is measured over plain HTTP only: http_ok speaks no TLS.)
for name in $PROXIES; do
    [ "$name" = nginx ] || [ "$TLS" = 1 ] || [ "$CHECK" = 1 ] || { log "$name: start-to-first-request x$STARTUP_RUNS"; startup "$name"; }
done

# --- report ------------------------------------------------------------------------------------

ratio() { # ratio NAME_A NAME_B -> median CPU µs/request of A / that of B
    if [ -n "${MED[$1]:-}" ] && [ -n "${MED[$2]:-}" ]; then
        awk -v a="${MED[$1]}" -v b="${MED[$2]}" 'BEGIN {printf "%.2fx", a / b}'
    else echo "n/a"; fi
}
# round_ratios NAME_A NAME_B -> "median (r1 r2 ...)": A/B within each round, which cancels the drift
# of a shared machine between rounds better than a ratio of medians.
# Of CPU µs/request, or of the results array named by a third argument (e.g. RPS).
round_ratios() {
    local -n of=${3:-CPU_US}
    [ -n "${of[$1#1]:-}" ] && [ -n "${of[$2#1]:-}" ] || { echo "n/a"; return; }
    local r all=()
    for r in $(seq 1 "$ROUNDS"); do
        all+=("$(awk -v a="${of[$1#$r]}" -v b="${of[$2#$r]}" 'BEGIN {printf "%.3f", a / b}')")
    done
    printf '%s\n' "${all[@]}" | sort -n | awk -v list="${all[*]}" '{a[NR] = $1}
        END {printf "%.3fx (rounds: %s)", a[int((NR + 1) / 2)], list}'
}

echo
echo "Conduit load test — $(date -u '+%Y-%m-%d %H:%M UTC'), $NCPU CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
echo "SCENARIO=$SCENARIO: $LOAD_DESC (after $WARMUP warm-up) on CPU $LOAD_CPU with the upstream nginx;"
if [ "$PAIRED" = 1 ]; then
    echo "PAIRED: conduit and conduit-base at the same time on CPU $PROXY_CPU, 1 worker each, one wrk each;"
    echo "$ROUNDS rounds, both freshly started per round (start order and ports swapped every round); the row is the round with the median CPU us/req"
    [ "$CONTROL" = 0 ] || echo "CONTROL: \"conduit\" runs the base config too (A/A: the ratios show the method's bias and spread)"
else
    echo "proxy alone on CPU $PROXY_CPU, 1 worker;"
    echo "$ROUNDS rounds, each proxy freshly started per round; the row is the round with the median CPU us/req"
fi
[ -z "$PROXY_ENV" ] || echo "PROXY_ENV for conduit and floor: $PROXY_ENV"
[ "$FLOOR_WORK_STEALING" = 0 ] || echo "floor with tokio work stealing"
if [ "$TLS" = 1 ]; then
    for name in $PROXIES; do echo "TLS negotiated with $name: ${TLS_INFO[$name]:-?}"; done
    echo "certificate: self-signed ECDSA P-256, the same file for every server; wrk offers no ALPN (HTTP/1.1)"
    [ "$SCENARIO" != tls-handshake ] ||
        echo "open loop: req/s is the offered $HANDSHAKE_RATE/s unless a warning above says otherwise; latency includes connect + handshake"
fi
echo
# The round with the median CPU µs/request stands for each proxy; the range is shown beside it.
declare -A MED
LAT1_LABEL="p50 us" LAT2_LABEL="p99 us"
[ "$H2LOAD" != 1 ] || LAT1_LABEL="mean us" LAT2_LABEL="sd us"
printf '%-8s %9s %8s %8s %11s %15s %9s %9s %6s %9s %10s %8s\n' proxy "req/s" "$LAT1_LABEL" "$LAT2_LABEL" \
    "CPU us/req" "(min-max)" "proxy CPU" "other CPU" steal "idle RSS" "loaded RSS" "conn/req"
for name in $PROXIES; do
    sorted=$(for r in $(seq 1 "$ROUNDS"); do echo "${CPU_US[$name#$r]} $r"; done | sort -n)
    med=$(awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) {print $2}' <<<"$sorted")
    range=$(awk 'NR == 1 {lo = $1} {hi = $1} END {printf "(%s-%s)", lo, hi}' <<<"$sorted")
    k=$name#$med
    MED[$name]=${CPU_US[$k]}
    printf '%-8s %9s %8s %8s %11s %15s %8s%% %8s%% %5s%% %6s KiB %6s KiB %8s\n' "$name" "${RPS[$k]}" "${P50[$k]}" \
        "${P99[$k]}" "${CPU_US[$k]}" "$range" "${CPU_PCT[$k]}" "${OTHER_PCT[$k]}" "${STEAL_PCT[$k]}" \
        "${RSS[$k]}" "${RSS_AFTER[$k]}" "${CONN[$k]}"
done
if [ "$TLS" = 1 ]; then
    echo "load-side ceiling (the same load straight at the upstream nginx's TLS listener, same CPU): $DIRECT_RPS req/s"
else
    echo "load-side ceiling (wrk straight at the upstream, same CPU): $DIRECT_RPS req/s"
fi
echo
if [ "$CHECK" = 1 ]; then
    echo "CPU µs/request with the check / without (SCENARIO=$SCENARIO): median ratio $(ratio conduit conduit-base)"
    echo "median of per-round ratios: conduit/conduit-base $(round_ratios conduit conduit-base)"
    echo "throughput with the check / without, per round: $(round_ratios conduit conduit-base RPS)"
    check_yaml=$TMP/conduit.yaml
    [ "$CONTROL" = 0 ] || check_yaml=$TMP/conduit-check.yaml
    echo "check config: $(tail -n 1 "$check_yaml" | sed 's/^ *//')"
    [ -z "$SITE_EXTRA" ] || echo "both configs also have: $(printf %s "$SITE_EXTRA" | tr "\n" " ")"
else
    echo "CPU µs/request ratios of the medians: conduit/floor $(ratio conduit floor)   conduit/nginx $(ratio conduit nginx)   floor/nginx $(ratio floor nginx)"
    echo "median of per-round ratios: conduit/floor $(round_ratios conduit floor)"
    echo "                            conduit/nginx $(round_ratios conduit nginx)"
fi
for name in $PROXIES; do
    for r in $(seq 1 "$ROUNDS"); do
        awk -v o="${OTHER_PCT[$name#$r]}" -v st="${STEAL_PCT[$name#$r]}" 'BEGIN {exit !(o + st > 5)}' &&
            echo "warning: $name round $r: ${OTHER_PCT[$name#$r]}% other work and ${STEAL_PCT[$name#$r]}% steal on the proxy CPU (${CPU_US[$name#$r]} us/req)"
    done
done
for name in $PROXIES; do
    [ -z "${START_MS[$name]:-}" ] || echo "start to first proxied request, $name: ${START_MS[$name]} ms (median of $STARTUP_RUNS)"
done
echo "release binary size: conduit $(stat -c %s "$CONDUIT") bytes ($(awk -v b="$(stat -c %s "$CONDUIT")" 'BEGIN {printf "%.1f", b / 1048576}') MiB), floor $(stat -c %s "$FLOOR") bytes"
echo "(nginx RSS is its worker's; CPU for nginx is worker + master. other CPU = busy time on the proxy's CPU"
echo " not charged to the proxy: other processes or unattributed interrupts; steal = hypervisor steal."
echo " conn/req = TCP connections accepted on this machine during the run / requests: ~1 when every request"
echo " opens a connection, ~0 with keep-alive both sides.)"
