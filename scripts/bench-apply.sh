#!/usr/bin/env bash
# fedilab's cost of applying a lab, against the fake API server:
# 1. with an instant server: the request count for 1, 2 and 4 instances
#    (linear in instances) and fedilab's own time for 2;
# 2. with a per-request latency (FEDILAB_BENCH_LATENCY_MS, default 20; a
#    real kube-apiserver took 64-93 ms per apply): apply of a 2- and a
#    10-instance lab, FEDILAB_BENCH_ROUNDS rounds each (default 5), with
#    the median. Target: 10 instances in at most 2x the time of 2 (apply
#    goes in waves, many objects in flight together).
# The load average is printed before and after: figures from a loaded
# machine are not comparable.
# Usage: scripts/bench-apply.sh [release|debug]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
args=()
[ "$profile" = release ] && args+=(--release)
# Build first, so the load average below is not the compiler's.
cargo test "${args[@]}" -p fedilab-orchestrator --test fake_api --no-run 2>/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test "${args[@]}" -p fedilab-orchestrator --test fake_api -- --nocapture \
  preflight_and_apply_send_exactly_these_requests request_count_grows_linearly_with_instances 2>&1 \
  | grep -E '^(timing|requests for)'
cargo test "${args[@]}" -p fedilab-orchestrator --test fake_api -- --nocapture --ignored \
  bench_apply_with_latency 2>&1 | grep -E '^bench'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
