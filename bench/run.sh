#!/usr/bin/env bash
# Load test: Conduit vs nginx (proxy_pass with upstream keepalive) vs a bare Pingora proxy (the
# floor, bench/floor.rs), each alone on one pinned CPU with one worker, in front of the same
# fixed-response nginx upstream. Prints requests/s, p50/p99, proxy CPU µs per request, idle RSS,
# the ratios, start-to-first-request and the binary size. Loopback (127.0.0.1) only.
#
# Usage: bench/run.sh            (from anywhere; builds release binaries first)
# Environment knobs (all optional):
#   DURATION=10s      measured wrk run per proxy          WARMUP=2s   wrk warm-up before it
#   ROUNDS=5          rounds (conduit, nginx, floor, repeat); the median round is reported
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
case $SCENARIO in
    single) ;;
    least-conn4) PROXIES=${PROXIES/floor/} ;;
    *) die "unknown SCENARIO '$SCENARIO' (expected single or least-conn4)" ;;
esac

# --- prerequisites -----------------------------------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v pgrep >/dev/null 2>&1 || need_pkgs+=(procps)
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
read -r LOAD1 _ </proc/loadavg
awk -v l="$LOAD1" 'BEGIN {exit !(l > 0.5)}' &&
    log "warning: load average is $LOAD1; other work on this machine skews the numbers"

# --- build -------------------------------------------------------------------------------------

CONDUIT=$TARGET_DIR/release/conduit
FLOOR=$TARGET_DIR/release/examples/floor
if [ "$SKIP_BUILD" != 1 ]; then
    log "building release binaries (cargo build --release --bin conduit --example floor)"
    (cd "$ROOT" && cargo build --release --bin conduit --example floor) || die "release build failed"
fi
[ -x "$CONDUIT" ] || die "$CONDUIT not found (build it, or unset SKIP_BUILD)"
[ -x "$FLOOR" ] || die "$FLOOR not found (build it, or unset SKIP_BUILD)"

# From here on this script (and what it starts without its own taskset: curl, the start-up probes)
# runs on the load CPU, away from the proxy.
taskset -cp "$LOAD_CPU" $$ >/dev/null || die "taskset -cp $LOAD_CPU failed"

# --- process bookkeeping -----------------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/conduit-bench.XXXXXX")
PIDS=()

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

# wait_ok PORT PID TIMEOUT_S: polls GET / until it answers 200 "ok"; fails if PID dies.
wait_ok() {
    local port=$1 pid=$2 deadline=$(($(date +%s) + $3))
    while true; do
        if taskset -c "$LOAD_CPU" curl -s -o /dev/null --max-time 1 -w '%{http_code}' \
            "http://127.0.0.1:$port/" 2>/dev/null | grep -qx 200; then
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

# --- upstream ----------------------------------------------------------------------------------

UPSTREAM_LISTEN="        listen 127.0.0.1:$UPSTREAM_PORT;"
if [ "$SCENARIO" = least-conn4 ]; then
    for k in 1 2 3; do
        UPSTREAM_LISTEN="$UPSTREAM_LISTEN
        listen 127.0.0.1:$((UPSTREAM_PORT + k));"
    done
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
    NGINX_SERVERS="        server 127.0.0.1:$UPSTREAM_PORT;"
fi
"$CONDUIT" validate -c "$TMP/conduit.yaml" >"$TMP/validate.log" 2>&1 ||
    die "conduit rejected the bench config: $(cat "$TMP/validate.log")"

nginx_conf "$TMP/nginx-proxy" "    upstream up {
$NGINX_SERVERS
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
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
        floor)
            # shellcheck disable=SC2086
            start_proc "$PROXY_CPU" "$TMP/floor.log" env TMPDIR="$TMP" $PROXY_ENV "$FLOOR" "$PROXY_PORT" \
                "127.0.0.1:$UPSTREAM_PORT" 1 "$FLOOR_WORK_STEALING"
            ;;
        nginx)
            start_proc "$PROXY_CPU" "$TMP/nginx-proxy.log" "$NGINX" -e "$TMP/nginx-proxy/error.log" -p "$TMP/nginx-proxy" \
                -c "$TMP/nginx-proxy/nginx.conf"
            ;;
        *) die "unknown proxy '$name' in PROXIES (expected conduit, nginx, floor)" ;;
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

# run_wrk DURATION OUTFILE
run_wrk() {
    # In the background + wait, so that Ctrl-C / TERM reach the trap at once.
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$1" --latency "http://127.0.0.1:$PROXY_PORT/" >"$2" 2>&1 &
    local w=$! rc=0
    PIDS+=("$w")
    wait "$w" || rc=$?
    forget_pid "$w"
    [ "$rc" -eq 0 ] || die "wrk failed (exit $rc): $(cat "$2")"
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
declare -A RPS P50 P99 CPU_US CPU_PCT OTHER_PCT STEAL_PCT RSS RSS_AFTER START_MS

# measure NAME ROUND: one warm-up and one measured wrk run against a fresh NAME.
measure() {
    local name=$1 k=$1#$2 out=$TMP/wrk-$1-$2.txt
    log "$name (round $2): starting on CPU $PROXY_CPU"
    start_proxy "$name"
    wait_ok "$PROXY_PORT" "$PROXY_MAIN" 10 || die "$name did not start or does not proxy (see its log in $TMP)"
    if [ "$name" = nginx ]; then
        # The master only supervises; the worker does the work.
        PROXY_PID=$(pgrep -P "$PROXY_MAIN" | head -n1)
        [ -n "$PROXY_PID" ] || die "no nginx worker under pid $PROXY_MAIN"
    fi
    sleep 0.5
    RSS[$k]=$(rss_kb "$PROXY_PID")
    run_wrk "$WARMUP" "$TMP/warmup-$name.txt"
    local t0 t1 c0 c1 b0 b1 s0 s1 reqs secs
    t0=$(cpu_ticks "$PROXY_PID")
    [ "$name" != nginx ] || t0=$((t0 + $(cpu_ticks "$PROXY_MAIN")))
    c0=$(cpu_line "$PROXY_CPU")
    log "$name (round $2): wrk -t1 -c$CONNECTIONS -d$DURATION"
    run_wrk "$DURATION" "$out"
    t1=$(cpu_ticks "$PROXY_PID")
    [ "$name" != nginx ] || t1=$((t1 + $(cpu_ticks "$PROXY_MAIN")))
    c1=$(cpu_line "$PROXY_CPU")
    RSS_AFTER[$k]=$(rss_kb "$PROXY_PID")

    reqs=$(awk '/requests in/ {print $1; exit}' "$out")
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "$name: wrk completed no requests: $(cat "$out")"
    if grep -qE 'Non-2xx|Socket errors' "$out"; then
        log "warning: $name: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | paste -sd';')"
    fi
    secs=$(awk '/requests in/ {v = $4; sub(/,$/, "", v); n = v + 0; if (v ~ /ms$/) n /= 1000;
        else if (v ~ /m$/) n *= 60; print n; exit}' "$out")
    RPS[$k]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    P50[$k]=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")
    P99[$k]=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")
    CPU_US[$k]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
    CPU_PCT[$k]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN {printf "%.0f", d / hz / s * 100}')
    # Work on the proxy's CPU that the proxy was not charged for (other processes, interrupts not
    # billed to it), and hypervisor steal: both say how clean the run was.
    read -r b0 s0 <<<"$c0"
    read -r b1 s1 <<<"$c1"
    OTHER_PCT[$k]=$(awk -v b=$((b1 - b0)) -v p=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$secs" \
        'BEGIN {v = (b - p) / hz / s * 100; if (v < 0) v = 0; printf "%.0f", v}')
    STEAL_PCT[$k]=$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN {printf "%.0f", d / hz / s * 100}')
    stop_proxy
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

log "load-side ceiling: wrk straight at the upstream for $DURATION"
taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$UPSTREAM_PORT/" >"$TMP/wrk-direct.txt" 2>&1 &
DIRECT_WRK=$!
PIDS+=("$DIRECT_WRK")
wait "$DIRECT_WRK" || die "wrk against the upstream failed: $(cat "$TMP/wrk-direct.txt")"
forget_pid "$DIRECT_WRK"
DIRECT_RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/wrk-direct.txt")

for round in $(seq 1 "$ROUNDS"); do
    for name in $PROXIES; do measure "$name" "$round"; done
done
for name in $PROXIES; do
    [ "$name" = nginx ] || { log "$name: start-to-first-request x$STARTUP_RUNS"; startup "$name"; }
done

# --- report ------------------------------------------------------------------------------------

ratio() { # ratio NAME_A NAME_B -> median CPU µs/request of A / that of B
    if [ -n "${MED[$1]:-}" ] && [ -n "${MED[$2]:-}" ]; then
        awk -v a="${MED[$1]}" -v b="${MED[$2]}" 'BEGIN {printf "%.2fx", a / b}'
    else echo "n/a"; fi
}
# round_ratios NAME_A NAME_B -> "median (r1 r2 ...)": A/B within each round, which cancels the drift
# of a shared machine between rounds better than a ratio of medians.
round_ratios() {
    [ -n "${CPU_US[$1#1]:-}" ] && [ -n "${CPU_US[$2#1]:-}" ] || { echo "n/a"; return; }
    local r all=()
    for r in $(seq 1 "$ROUNDS"); do
        all+=("$(awk -v a="${CPU_US[$1#$r]}" -v b="${CPU_US[$2#$r]}" 'BEGIN {printf "%.2f", a / b}')")
    done
    printf '%s\n' "${all[@]}" | sort -n | awk -v list="${all[*]}" '{a[NR] = $1}
        END {printf "%.2fx (rounds: %s)", a[int((NR + 1) / 2)], list}'
}

echo
echo "Conduit load test — $(date -u '+%Y-%m-%d %H:%M UTC'), $NCPU CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
echo "wrk -t1 -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up) on CPU $LOAD_CPU with the upstream nginx; proxy alone on CPU $PROXY_CPU, 1 worker;"
echo "$ROUNDS rounds, each proxy freshly started per round; the row is the round with the median CPU us/req"
[ -z "$PROXY_ENV" ] || echo "PROXY_ENV for conduit and floor: $PROXY_ENV"
[ "$FLOOR_WORK_STEALING" = 0 ] || echo "floor with tokio work stealing"
echo
# The round with the median CPU µs/request stands for each proxy; the range is shown beside it.
declare -A MED
printf '%-8s %9s %8s %8s %11s %15s %9s %9s %6s %9s %10s\n' proxy "req/s" "p50 us" "p99 us" "CPU us/req" \
    "(min-max)" "proxy CPU" "other CPU" steal "idle RSS" "loaded RSS"
for name in $PROXIES; do
    sorted=$(for r in $(seq 1 "$ROUNDS"); do echo "${CPU_US[$name#$r]} $r"; done | sort -n)
    med=$(awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) {print $2}' <<<"$sorted")
    range=$(awk 'NR == 1 {lo = $1} {hi = $1} END {printf "(%s-%s)", lo, hi}' <<<"$sorted")
    k=$name#$med
    MED[$name]=${CPU_US[$k]}
    printf '%-8s %9s %8s %8s %11s %15s %8s%% %8s%% %5s%% %6s KiB %6s KiB\n' "$name" "${RPS[$k]}" "${P50[$k]}" \
        "${P99[$k]}" "${CPU_US[$k]}" "$range" "${CPU_PCT[$k]}" "${OTHER_PCT[$k]}" "${STEAL_PCT[$k]}" \
        "${RSS[$k]}" "${RSS_AFTER[$k]}"
done
echo "load-side ceiling (wrk straight at the upstream, same CPU): $DIRECT_RPS req/s"
echo
echo "CPU µs/request ratios of the medians: conduit/floor $(ratio conduit floor)   conduit/nginx $(ratio conduit nginx)   floor/nginx $(ratio floor nginx)"
echo "median of per-round ratios: conduit/floor $(round_ratios conduit floor)"
echo "                            conduit/nginx $(round_ratios conduit nginx)"
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
echo " not charged to the proxy: other processes or unattributed interrupts; steal = hypervisor steal.)"
