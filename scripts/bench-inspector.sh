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
# Each variant runs ROUNDS times (default 3), the order rotating between
# rounds, every inspector variant in a fresh process; the table shows
# medians. Every run POSTs a ~1.3 KB Create activity with a Signature header to an
# inbox path with Host: mastodon2.fediverse.local. The upstream is an nginx
# of its own that answers 202; the nginx proxy runs in another process
# beside it, as the inspector does, so neither proxy shares its worker
# with the upstream's work. Prints requests/s, p50 and p99 for each and
# the inspector's ratios against nginx (target: >= 1.0x req/s, p99 <= 1x):
# of the medians, and each round's against that round's nginx run, whose
# spread shows how far apart runs of the same thing land on this machine.
#
# Installs what it needs: wrk and nginx-light (Debian), mitmproxy (pip, in a
# venv under $BENCH_DIR). Builds fedilab in release mode unless FEDILAB_BIN
# points at a binary.
#
# Environment: DURATION (10s), CONNECTIONS (16), THREADS (1), BASE_PORT
# (19080), ROUNDS (3), BENCH_DIR (/tmp/fedilab-bench), SKIP_MITM=1 to leave mitmdump out,
# SKIP_FAULTS=1 to leave the two fault-rule runs out, DELAY_MS (0).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
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
  for f in "$BENCH_DIR/upstream.pid" "$BENCH_DIR/nginx.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
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

# Every port must be free: a proxy left over from another run would be
# measured in place of the one started here.
for p in $(seq "$BASE_PORT" $((BASE_PORT + 4))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use (another benchmark?): stop what listens there or set BASE_PORT" >&2
    exit 1
  fi
done

# --- nginx: the upstream, and the plain reverse proxy ------------------------
# Two processes of one worker each. In one process the proxy and the
# upstream would share a worker: no hop between processes for nginx, but
# one core for both; on this 2-core VM that held nginx at about 0.86 of
# the requests per second it reaches in two (six alternating rounds).
nginx_conf() { # name server-block
  cat <<EOF
worker_processes 1;
pid $BENCH_DIR/$1.pid;
error_log $BENCH_DIR/$1-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_buffer_size 64k;
$2
}
EOF
}
nginx_conf upstream "  server { listen 127.0.0.1:$UPSTREAM_PORT; location / { return 202; } }" \
  > "$BENCH_DIR/upstream.conf"
nginx_conf nginx "  upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }" > "$BENCH_DIR/nginx.conf"
/usr/sbin/nginx -c "$BENCH_DIR/upstream.conf" -p "$BENCH_DIR"
/usr/sbin/nginx -c "$BENCH_DIR/nginx.conf" -p "$BENCH_DIR"

# --- the others -------------------------------------------------------------
if [ "${SKIP_MITM:-0}" != 1 ]; then
  "$BENCH_DIR/venv/bin/mitmdump" -q --mode "reverse:http://127.0.0.1:$UPSTREAM_PORT@127.0.0.1:$MITM_PORT" \
    --set keep_host_header=true --set connection_strategy=lazy >"$BENCH_DIR/mitm.log" 2>&1 &
  PIDS+=($!)
fi
# Every inspector variant runs in a fresh process (its store empty, its
# rules loaded before the run), and the order of the variants rotates from
# round to round, so no variant always runs on a warmer machine or after
# another's recordings.
inspector_start() {
  "$FEDILAB_BIN" inspect --listen "127.0.0.1:$INSPECT_PORT" --ui "127.0.0.1:$UI_PORT" \
    --route "$HOST_HEADER=http://127.0.0.1:$UPSTREAM_PORT" --max-exchanges 100000 --max-bytes 1GiB \
    2>>"$BENCH_DIR/inspector.log" &
  INSPECTOR_PID=$!
  PIDS+=("$INSPECTOR_PID")
}
inspector_stop() {
  kill "$INSPECTOR_PID" 2>/dev/null || true
  wait "$INSPECTOR_PID" 2>/dev/null || true
}

wait_port() {
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" -H "Host: $HOST_HEADER"; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}
for p in $UPSTREAM_PORT $NGINX_PORT; do wait_port "$p"; done
[ "${SKIP_MITM:-0}" != 1 ] && wait_port "$MITM_PORT"

run() { # name port
  wrk -t1 -c4 -d2s -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$2" >/dev/null 2>&1 || true # warm-up
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$2" | grep '^RESULT')
  echo "$1 $out"
}

fault_api() { # method path [json]
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X "$1" "http://127.0.0.1:$UI_PORT$2" \
    -H 'content-type: application/json' ${3:+--data "$3"})
  case "$code" in 2*) ;; *) echo "fault API $1 $2 answered $code" >&2; exit 1 ;; esac
}

variant() { # name: one run of one variant; prints its result line
  case "$1" in
    direct) run direct "$UPSTREAM_PORT" ;;
    nginx) run nginx "$NGINX_PORT" ;;
    mitmdump) run mitmdump "$MITM_PORT" ;;
    inspector|insp+rules|insp+delay)
      inspector_start
      wait_port "$INSPECT_PORT"
      if ! kill -0 "$INSPECTOR_PID" 2>/dev/null; then
        echo "the inspector did not start: $(tail -1 "$BENCH_DIR/inspector.log")" >&2
        exit 1
      fi
      case "$1" in
        insp+rules)
          fault_api POST /api/faults '{"match":{"host":"nowhere.example"},"action":{"status":503}}'
          fault_api POST /api/faults '{"match":{"path_prefix":"/nothing/here"},"action":{"reset":true}}'
          fault_api POST /api/faults '{"match":{"method":"DELETE","activity":"Follow"},"action":{"delay_ms":1000}}' ;;
        insp+delay)
          fault_api POST /api/faults "{\"match\":{\"host\":\"mastodon2\",\"path_prefix\":\"/users/bob/inbox\"},\"action\":{\"delay_ms\":${DELAY_MS:-0}}}" ;;
      esac
      local line recorded
      line=$(run "$1" "$INSPECT_PORT")
      recorded=$(curl -s "http://127.0.0.1:$UI_PORT/api/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["recorded"])')
      inspector_stop
      echo "$line $recorded" ;;
  esac
}

variants=(direct nginx inspector)
[ "${SKIP_MITM:-0}" != 1 ] && variants+=(mitmdump)
[ "${SKIP_FAULTS:-0}" != 1 ] && variants+=(insp+rules insp+delay)
n=${#variants[@]}
results=()
for round in $(seq 1 "$ROUNDS"); do
  order=()
  for i in $(seq 0 $((n - 1))); do order+=("${variants[$(( (i + round - 1) % n ))]}"); done
  echo "round $round/$ROUNDS: ${order[*]}" >&2
  for v in "${order[@]}"; do results+=("$round $(variant "$v")"); done
done

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, POST ${#body}-byte Create with a Signature header;" \
  "$ROUNDS rounds, order rotated; $(nproc) cores; load average before: $LOAD_BEFORE"
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
names = sys.argv[1:]
by = {}
for line in sys.stdin.read().split("\n"):
    v = line.split()
    if len(v) < 8:
        continue
    # round name RESULT requests req/s p50 p99 errors [recorded]
    by.setdefault(v[1], []).append((float(v[4]), float(v[5]), float(v[6]), int(v[7]), v[8] if len(v) > 8 else "-", int(v[0])))
med = statistics.median
print("{:<11} {:>9} {:>8} {:>8} {:>7}  each round (req/s)".format("proxy", "req/s", "p50 ms", "p99 ms", "errors"))
for name in names:
    xs = by.get(name, [])
    if xs:
        print(f"{name:<11} {med([x[0] for x in xs]):>9.0f} {med([x[1] for x in xs]):>8.3f} "
              f"{med([x[2] for x in xs]):>8.3f} {sum(x[3] for x in xs):>7}  "
              + " ".join(f"{x[0]:.0f}" for x in xs))
nr = med([x[0] for x in by["nginx"]])
np99 = med([x[2] for x in by["nginx"]])
print()
# The ratio of each round against the nginx run of the same round: the
# machine drifts from round to round, and the spread of these says how
# far apart two runs of the same thing land here.
ngx = {x[5]: x for x in by["nginx"]}
def paired(xs, k):
    return sorted(x[k] / ngx[x[5]][k] for x in xs if x[5] in ngx)
spans = {}
for name in [n for n in names if n.startswith("insp")]:
    xs = by[name]
    rr, rp = paired(xs, 0), paired(xs, 2)
    spans[name] = (rr, rp)
    print(f"{name} vs nginx: {med([x[0] for x in xs]) / nr:.2f}x req/s, "
          f"p99 {med([x[2] for x in xs]) / np99:.2f}x (recorded per run: {chr(32).join(x[4] for x in xs)})")
    print(f"  per round: req/s {rr[0]:.2f}-{rr[-1]:.2f}x (median {med(rr):.2f}), "
          f"p99 {rp[0]:.2f}-{rp[-1]:.2f}x (median {med(rp):.2f})")
i = by["inspector"]
met = med([x[0] for x in i]) / nr >= 1.0 and med([x[2] for x in i]) / np99 <= 1.0
rr, rp = spans["inspector"]
noise = not met and rr[0] <= 1.0 <= rr[-1] and rp[0] <= 1.0 <= rp[-1]
print("target (>= 1.0x nginx req/s, p99 <= nginx, recording everything):",
      "met" if met else "not met" + (" (within noise: the per-round ratios span 1.0 on both)" if noise else ""))
' "${variants[@]}"
