#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind, for Conduit with one access check or
# rate limit against the same binary without any: deterministic where wall-clock load tests on a
# shared machine are not (they vary by ±20 % round to round). Each configuration runs twice (300
# and 1800 keep-alive requests from one client, against a fixed-response nginx upstream), and the
# difference divided by 1500 cancels start-up and shutdown. With glibc malloc the counts repeat
# exactly; with mimalloc (the `standard` build) they vary by about ±2,000 per run, because its
# purging of free pages is time-based.
#
# Usage: bench/icount.sh        (after `cargo build --release --features standard`)
#        NAMES="none hs256" bench/icount.sh
# Names: none apikey basic hs256 rs256 ratelimit ratelimitq consumer (the default set), and
# clients, ratelimit64, ratelimit64q: each request names one of 64 clients in `X-Client`, with
# no limit, a limit keyed by that header, and the same without `RateLimit-*` headers.
# Needs valgrind, nginx, openssl, curl and python3. Loopback only. Note that valgrind does not
# run SHA extensions, so SHA-256 work (API keys, Basic) counts more than it costs on a real CPU.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONDUIT=${CONDUIT:-$ROOT/target/release/conduit}
T=$(mktemp -d "${TMPDIR:-/tmp}/conduit-icount.XXXXXX")
cat > $T/client.py <<'PY'
import http.client, sys
port, n, hdr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
h = {}
if hdr:
    k, v = hdr.split(": ", 1)
    h[k] = v
ok = 0
for i in range(n):
    # `{i}` in the header value names one of 64 clients in turn.
    c.request("GET", "/", headers={k: v.replace("{i}", str(i % 64)) for k, v in h.items()})
    r = c.getresponse()
    r.read()
    ok += r.status == 200
print(ok)
PY
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
UP=${UPSTREAM_PORT:-29181}; PORT=${PROXY_PORT:-29182}
mkdir -p $T/ng/tmp
cat > $T/ng/nginx.conf <<NG
worker_processes 1; daemon off; pid $T/ng/nginx.pid; error_log $T/ng/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $T/ng/tmp/b; proxy_temp_path $T/ng/tmp/p; fastcgi_temp_path $T/ng/tmp/f; uwsgi_temp_path $T/ng/tmp/u; scgi_temp_path $T/ng/tmp/s;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:$UP; location / { default_type text/plain; return 200 "ok"; } } }
NG
/usr/sbin/nginx -p $T/ng -c $T/ng/nginx.conf -e $T/ng/error.log & NG=$!
trap 'kill $NG 2>/dev/null; rm -rf $T' EXIT
sleep 0.5
NOW=$(date +%s)
CLAIMS=$(printf '{"sub":"bench-user","iat":%d,"exp":%d}' "$NOW" $((NOW + 86400)) | b64url)
SECRET=bench-secret-0123456789abcdef0123456789
HS_IN="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url).$CLAIMS"
HS="$HS_IN.$(printf '%s' "$HS_IN" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $T/rsa.key 2>/dev/null
openssl pkey -in $T/rsa.key -pubout -out $T/rsa.pub
RS_IN="$(printf '{"alg":"RS256","typ":"JWT"}' | b64url).$CLAIMS"
printf '%s' "$RS_IN" | openssl dgst -sha256 -sign $T/rsa.key -out $T/rs.sig
RS="$RS_IN.$(b64url < $T/rs.sig)"
base="global: {workers: 1, bind: 127.0.0.1, shutdownTimeoutSecs: 1}
sites:
  - port: $PORT
    proxy: http://127.0.0.1:$UP"
declare -A EXTRA HDR
EXTRA[none]=""; HDR[none]=""
EXTRA[apikey]="    apiKey: {keys: [bench-key-1, bench-key-2, bench-key-3]}"; HDR[apikey]="X-API-Key: bench-key-3"
EXTRA[basic]='    basicAuth: {users: {bench: "$$2b$$10$$yC2YbWBMNdkJL24KpbQu..nNojxNWEa81cvmNCznKRrzw9ExjcbPW"}}'; HDR[basic]="Authorization: Basic $(printf 'bench:bench-pass' | openssl base64 -A)"
EXTRA[hs256]="    jwtAuth: {secret: $SECRET, algorithms: [HS256]}"; HDR[hs256]="Authorization: Bearer $HS"
EXTRA[rs256]="    jwtAuth: {publicKey: $T/rsa.pub, algorithms: [RS256]}"; HDR[rs256]="Authorization: Bearer $RS"
EXTRA[ratelimit]="    rateLimit: {limit: 1000000, windowSecs: 1, keyBy: ip}"; HDR[ratelimit]=""
EXTRA[ratelimitq]="    rateLimit: {limit: 1000000, windowSecs: 1, keyBy: ip, headers: false}"; HDR[ratelimitq]=""
EXTRA[clients]=""; HDR[clients]="X-Client: client-{i}"
EXTRA[ratelimit64]='    rateLimit: {limit: 1000, windowSecs: 1, keyBy: "header:X-Client"}'; HDR[ratelimit64]="X-Client: client-{i}"
EXTRA[ratelimit64q]='    rateLimit: {limit: 1000, windowSecs: 1, keyBy: "header:X-Client", headers: false}'; HDR[ratelimit64q]="X-Client: client-{i}"
EXTRA[consumer]="    consumers: {consumers: [{username: acme, apiKey: bench-key-3, headers: {X-Plan: gold}}]}"; HDR[consumer]="X-API-Key: bench-key-3"
run() { # run NAME N -> total instructions
  local name=$1 n=$2
  printf '%s\n%s\n' "$base" "${EXTRA[$name]}" > $T/$name.yaml
  valgrind --tool=callgrind --callgrind-out-file=$T/cg.$name.$n -q $CONDUIT -c $T/$name.yaml > $T/$name.$n.log 2>&1 &
  local pid=$!
  for i in $(seq 1 200); do curl -s -o /dev/null ${HDR[$name]:+-H "${HDR[$name]}"} http://127.0.0.1:$PORT/ && break; sleep 0.2; done
  local ok; ok=$(python3 $T/client.py $PORT $n "${HDR[$name]}")
  [ "$ok" = "$n" ] || { echo "$name: only $ok of $n were 200" >&2; }
  kill -TERM $pid; wait $pid || true
  awk '/^summary:/ {print $2}' $T/cg.$name.$n
}
for name in ${NAMES:-none apikey basic hs256 rs256 ratelimit ratelimitq consumer}; do
  a=$(run $name 300); b=$(run $name 1800)
  echo "$name $(( (b - a) / 1500 )) instructions/request"
done
