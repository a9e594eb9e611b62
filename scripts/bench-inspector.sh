#!/usr/bin/env bash
# Benchmark the inspector against the alternatives, side by side in one run:
#
#   direct     wrk -> upstream
#   nginx      wrk -> nginx (plain reverse proxy, keepalive upstream) -> upstream
#   mitmdump   wrk -> mitmdump --mode reverse -> upstream
#   inspector  wrk -> fedilab inspect (recording everything) -> upstream
#   insp+rules the same with three fault rules loaded that match nothing
#   insp+delay the same with one matching delay rule (DELAY_MS, default 0:
#              the cost of matching and marking, not of waiting)
#
# Every run POSTs a ~1.3 KB Create activity with a Signature header to an
# inbox path with Host: mastodon2.fediverse.local. The upstream is an nginx
# server block that answers 202. Prints requests/s, p50 and p99 for each and
# the inspector's ratios against nginx (target: >= 0.8x req/s, p99 <= 2x).
#
# Installs what it needs: wrk and nginx-light (Debian), mitmproxy (pip, in a
# venv under $BENCH_DIR). Builds fedilab in release mode unless FEDILAB_BIN
# points at a binary.
#
# Environment: DURATION (10s), CONNECTIONS (16), THREADS (1), BASE_PORT
# (19080), BENCH_DIR (/tmp/fedilab-bench), SKIP_MITM=1 to leave mitmdump out,
# SKIP_FAULTS=1 to leave the two fault-rule runs out, DELAY_MS (0).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
BASE_PORT=${BASE_PORT:-19080}
BENCH_DIR=${BENCH_DIR:-/tmp/fedilab-bench}
REPO=$(cd "$(dirname "$0")/.." && pwd)

UPSTREAM_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
MITM_PORT=$((BASE_PORT + 2))
INSPECT_PORT=$((BASE_PORT + 3))
UI_PORT=$((BASE_PORT + 4))
HOST_HEADER=mastodon2.fediverse.local

mkdir -p "$BENCH_DIR"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  if [ -f "$BENCH_DIR/nginx.pid" ]; then
    kill "$(cat "$BENCH_DIR/nginx.pid")" 2>/dev/null || true
  fi
}
trap cleanup EXIT

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "${SKIP_MITM:-0}" != 1 ] && [ ! -x "$BENCH_DIR/venv/bin/mitmdump" ]; then
  echo "installing mitmproxy (pip, venv in $BENCH_DIR/venv)" >&2
  python3 -m venv "$BENCH_DIR/venv"
  "$BENCH_DIR/venv/bin/pip" install -q mitmproxy
fi

if [ -z "${FEDILAB_BIN:-}" ]; then
  echo "building fedilab (release)" >&2
  (cd "$REPO" && cargo build --release -q -p fedilab)
  FEDILAB_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/fedilab"
fi

# --- the request ------------------------------------------------------------
content=$(printf 'Hello from the lab! %.0s' $(seq 1 38))
body=$(printf '{"@context":"https://www.w3.org/ns/activitystreams","id":"https://mastodon1.fediverse.local/users/alice/statuses/1/activity","type":"Create","actor":"https://mastodon1.fediverse.local/users/alice","published":"2026-01-01T00:00:00Z","to":["https://www.w3.org/ns/activitystreams#Public"],"cc":["https://mastodon2.fediverse.local/users/bob"],"object":{"id":"https://mastodon1.fediverse.local/users/alice/statuses/1","type":"Note","attributedTo":"https://mastodon1.fediverse.local/users/alice","content":"<p>%s</p>","to":["https://www.w3.org/ns/activitystreams#Public"]}}' "$content")
digest=$(printf '%s' "$body" | openssl dgst -sha256 -binary | base64)
sig=$(head -c 256 /dev/urandom | base64 -w0)
cat > "$BENCH_DIR/post.lua" <<EOF
wrk.method = "POST"
wrk.body = [==[$body]==]
wrk.headers["Host"] = "$HOST_HEADER"
wrk.headers["Content-Type"] = "application/activity+json"
wrk.headers["Date"] = "Sun, 01 Jan 2026 00:00:00 GMT"
wrk.headers["Digest"] = "SHA-256=$digest"
wrk.headers["Signature"] = 'keyId="https://mastodon1.fediverse.local/users/alice#main-key",algorithm="rsa-sha256",headers="(request-target) host date digest content-type",signature="$sig"'
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT %d %.1f %.3f %.3f %d\n", summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
path = "/users/bob/inbox"
request = function() return wrk.format(nil, path) end
EOF
echo "request body: ${#body} bytes" >&2

# --- nginx: the upstream and the plain reverse proxy -----------------------
cat > "$BENCH_DIR/nginx.conf" <<EOF
worker_processes 1;
pid $BENCH_DIR/nginx.pid;
error_log $BENCH_DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_buffer_size 64k;
  upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    location / { return 202; }
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
/usr/sbin/nginx -c "$BENCH_DIR/nginx.conf" -p "$BENCH_DIR"

# --- the others -------------------------------------------------------------
if [ "${SKIP_MITM:-0}" != 1 ]; then
  "$BENCH_DIR/venv/bin/mitmdump" -q --mode "reverse:http://127.0.0.1:$UPSTREAM_PORT@127.0.0.1:$MITM_PORT" \
    --set keep_host_header=true --set connection_strategy=lazy >"$BENCH_DIR/mitm.log" 2>&1 &
  PIDS+=($!)
fi
"$FEDILAB_BIN" inspect --listen "127.0.0.1:$INSPECT_PORT" --ui "127.0.0.1:$UI_PORT" \
  --route "$HOST_HEADER=http://127.0.0.1:$UPSTREAM_PORT" --max-exchanges 100000 --max-bytes 1GiB \
  2>"$BENCH_DIR/inspector.log" &
PIDS+=($!)

wait_port() {
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" -H "Host: $HOST_HEADER"; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}
for p in $UPSTREAM_PORT $NGINX_PORT $INSPECT_PORT; do wait_port "$p"; done
[ "${SKIP_MITM:-0}" != 1 ] && wait_port "$MITM_PORT"

run() { # name port
  wrk -t1 -c4 -d2s -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$2" >/dev/null 2>&1 || true # warm-up
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$2" | grep '^RESULT')
  echo "$1 $out"
}

results=()
results+=("$(run direct $UPSTREAM_PORT)")
results+=("$(run nginx $NGINX_PORT)")
[ "${SKIP_MITM:-0}" != 1 ] && results+=("$(run mitmdump $MITM_PORT)")
results+=("$(run inspector $INSPECT_PORT)")

fault_api() { # method path [json]
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X "$1" "http://127.0.0.1:$UI_PORT$2" \
    -H 'content-type: application/json' ${3:+--data "$3"})
  case "$code" in 2*) ;; *) echo "fault API $1 $2 answered $code" >&2; exit 1 ;; esac
}
if [ "${SKIP_FAULTS:-0}" != 1 ]; then
  fault_api POST /api/faults '{"match":{"host":"nowhere.example"},"action":{"status":503}}'
  fault_api POST /api/faults '{"match":{"path_prefix":"/nothing/here"},"action":{"reset":true}}'
  fault_api POST /api/faults '{"match":{"method":"DELETE","activity":"Follow"},"action":{"delay_ms":1000}}'
  results+=("$(run insp+rules $INSPECT_PORT)")
  fault_api DELETE /api/faults
  fault_api POST /api/faults "{\"match\":{\"host\":\"mastodon2\",\"path_prefix\":\"/users/bob/inbox\"},\"action\":{\"delay_ms\":${DELAY_MS:-0}}}"
  results+=("$(run insp+delay $INSPECT_PORT)")
  fault_api DELETE /api/faults
fi

recorded=$(curl -s "http://127.0.0.1:$UI_PORT/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["recorded"])')

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, POST ${#body}-byte Create with a Signature header; $(nproc) cores (shared)"
printf '%-10s %12s %10s %10s %8s\n' proxy "req/s" "p50 ms" "p99 ms" errors
for r in "${results[@]}"; do
  set -- $r
  printf '%-10s %12s %10s %10s %8s\n' "$1" "$4" "$5" "$6" "$7"
done
nginx_line=$(printf '%s\n' "${results[@]}" | grep '^nginx ')
insp_line=$(printf '%s\n' "${results[@]}" | grep '^inspector ')
variants=$(printf '%s\n' "${results[@]}" | grep '^insp+' || true)
python3 - "$nginx_line" "$insp_line" "$recorded" "$variants" <<'EOF'
import sys
n = sys.argv[1].split(); i = sys.argv[2].split(); recorded = int(sys.argv[3])
rps = float(i[3]) / float(n[3]); p99 = float(i[5]) / float(n[5])
print()
print(f"inspector vs nginx: {rps:.2f}x req/s (target >= 0.8x), p99 {p99:.2f}x (target <= 2x)")
for line in filter(None, sys.argv[4].splitlines()):
    v = line.split()
    print(f"{v[0]} vs nginx: {float(v[3]) / float(n[3]):.2f}x req/s, p99 {float(v[5]) / float(n[5]):.2f}x")
print(f"inspector recorded {recorded} exchanges (its timed run sent {i[2]} plus warm-up)")
print("verdict:", "meets the target" if rps >= 0.8 and p99 <= 2.0 else "misses the target")
EOF
