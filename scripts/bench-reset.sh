#!/usr/bin/env bash
# The time of each step of `fedilab snapshot save` and `fedilab reset`,
# with the same commands the cluster runs (psql statements, Redis Lua
# scripts, the media shell scripts), against a throwaway PostgreSQL and
# Redis on loopback (Debian's postgresql and redis-server, as
# scripts/install-test-deps.sh installs them) holding a Mastodon-size
# schema and Sidekiq-like keys, and a 5 MB media directory. The median of
# FEDILAB_BENCH_ROUNDS rounds (default 5). Not on a cluster: exec's own
# round trips and the Sidekiq quiet wait come on top (README, Experiment
# loop). The load average is printed: figures from a loaded machine are
# not comparable.
# Usage: scripts/bench-reset.sh [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-debug}"
args=()
[ "$profile" = release ] && args+=(--release)
# The steps' time is spent in psql, redis-server and sh: debug is fine.
cargo test "${args[@]}" -p fedilab-data --test bench_reset --no-run 2>/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test "${args[@]}" -p fedilab-data --test bench_reset -- --ignored --nocapture 2>&1 \
  | grep -E '^bench'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
