#!/usr/bin/env bash
# Benchmark `fedilab dns serve` against Knot DNS on loopback, same zone, same
# queries, same dnsperf settings, and print queries/s, loss and the ratio.
#
#   scripts/bench-dns.sh                 # dnsperf -c 4 -l 10, 3 rounds
#   CLIENTS=8 DURATION=20 ROUNDS=5 scripts/bench-dns.sh
#
# Rounds alternate Knot and fedilab, and the medians are compared, so that
# load from other processes hits both alike.
#
# Not a test: numbers depend on the machine and on whatever else runs on it.
# Installs dnsperf, knot and dnsutils with apt-get when they are missing.
# Both servers run as the current user from a temporary directory, on
# 127.0.0.1 only, and are stopped at the end.
set -euo pipefail

CLIENTS=${CLIENTS:-4}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
FEDILAB_PORT=${FEDILAB_PORT:-53530}
KNOT_PORT=${KNOT_PORT:-53531}
DOMAIN=fediverse.local
ANSWER=10.0.0.1

cd "$(dirname "$0")/.."

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
command -v dig >/dev/null || need+=(dnsutils)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    sudo_=""
    [[ $(id -u) -eq 0 ]] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "building fedilab (release)" >&2
cargo build --release --quiet -p fedilab
target_dir=${CARGO_TARGET_DIR:-target}
fedilab=$target_dir/release/fedilab

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The same zone for both: fedilab prints the one it serves.
"$fedilab" dns zone --instances 2 --domain "$DOMAIN" --answer "$ANSWER" >"$tmp/$DOMAIN.zone"

# A mix of what a lab sees: instance hosts, the apex, wildcard names, NODATA.
cat >"$tmp/queries.txt" <<EOF
mastodon1.$DOMAIN A
mastodon2.$DOMAIN A
mastodon1.$DOMAIN AAAA
$DOMAIN SOA
$DOMAIN NS
$DOMAIN A
ns.$DOMAIN A
media.$DOMAIN A
streaming.$DOMAIN A
a.b.$DOMAIN A
other.$DOMAIN AAAA
other.$DOMAIN TXT
EOF

mkdir -p "$tmp/knot/run" "$tmp/knot/db"
cat >"$tmp/knot/knot.conf" <<EOF
server:
    listen: 127.0.0.1@$KNOT_PORT
    rundir: $tmp/knot/run
database:
    storage: $tmp/knot/db
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: $tmp
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $DOMAIN
    file: $tmp/$DOMAIN.zone
EOF

knotd -c "$tmp/knot/knot.conf" 2>"$tmp/knot.log" &
pids+=($!)
"$fedilab" dns serve --instances 2 --domain "$DOMAIN" --answer "$ANSWER" \
    --listen "127.0.0.1:$FEDILAB_PORT" 2>"$tmp/fedilab.log" &
fedilab_pid=$!
pids+=("$fedilab_pid")

wait_ready() { # name port
    for _ in $(seq 50); do
        if dig @127.0.0.1 -p "$2" +time=1 +tries=1 +short "mastodon1.$DOMAIN" A 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    echo "$1 does not answer on 127.0.0.1:$2" >&2
    cat "$tmp/knot.log" "$tmp/fedilab.log" >&2
    exit 1
}
wait_ready knot "$KNOT_PORT"
wait_ready fedilab "$FEDILAB_PORT"

# Both must give the same answers before their speed means anything.
normalise() { # port name type
    dig @127.0.0.1 -p "$1" +norec +time=2 +tries=1 "$2" "$3" |
        awk '/status:/ { sub(/,.*/, "", $6); print "status", $6 }
             /^;; (ANSWER|AUTHORITY) SECTION:/ { s = 1; next }
             s && NF == 0 { s = 0 }
             s { $1 = tolower($1); print }'
}
mismatches=0
while read -r name type; do
    if ! diff <(normalise "$KNOT_PORT" "$name" "$type") \
              <(normalise "$FEDILAB_PORT" "$name" "$type") >"$tmp/diff"; then
        echo "differs from Knot: $name $type" >&2
        cat "$tmp/diff" >&2
        mismatches=$((mismatches + 1))
    fi
done <"$tmp/queries.txt"

run_dnsperf() { # port
    dnsperf -s 127.0.0.1 -p "$1" -d "$tmp/queries.txt" -c "$CLIENTS" -l "$DURATION" 2>&1
}
qps() { awk '/Queries per second:/ { print $4 }'; }
lost() { awk '/Queries lost:/ { print $3, $4 }'; }

echo "dnsperf -c $CLIENTS -l $DURATION, $ROUNDS rounds, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)," \
    "$(wc -l <"$tmp/queries.txt") query names, Knot $(knotd -V 2>&1 | awk '{ print $NF; exit }')" >&2
printf '\n%-6s %-8s %14s %22s\n' round server "queries/s" "lost"
: >"$tmp/knot.qps"
: >"$tmp/fedilab.qps"
for round in $(seq "$ROUNDS"); do
    for server in knot fedilab; do
        port=$KNOT_PORT
        [[ $server == fedilab ]] && port=$FEDILAB_PORT
        out=$(run_dnsperf "$port")
        qps <<<"$out" >>"$tmp/$server.qps"
        printf '%-6s %-8s %14s %22s\n' "$round" "$server" "$(qps <<<"$out")" "$(lost <<<"$out")"
    done
done

kill -TERM "$fedilab_pid"
wait "$fedilab_pid" || true

median() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
knot_qps=$(median "$tmp/knot.qps")
fedilab_qps=$(median "$tmp/fedilab.qps")
printf '\nmedian queries/s: knot %.0f, fedilab %.0f\n' "$knot_qps" "$fedilab_qps"
awk -v f="$fedilab_qps" -v k="$knot_qps" 'BEGIN { printf "ratio fedilab/knot: %.2f\n", f / k }'
echo "fedilab's own count: $(grep 'stopped on' "$tmp/fedilab.log" || echo '(none)')"
if ((mismatches)); then
    echo "warning: $mismatches queries answered differently from Knot (see above)" >&2
fi
