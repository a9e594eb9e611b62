#!/usr/bin/env bash
# Sizes and times of `fedilab backup` and `restore`'s steps for the test
# fixture, without a cluster: a throwaway PostgreSQL (Debian's packages,
# see scripts/install-test-deps.sh) holding the Mastodon-size schema of
# fedilab-testdb (100 tables, a few thousand rows) and 200 media files of
# 64 KiB, every command run behind the exec test server, so each stream
# goes through the Kubernetes exec protocol (WebSocket, v5) as it would to
# a pod: pg_dump -Fc and the media tar out, the archive written and read
# back with its checksums, pg_restore into a new database and the swap,
# the media staged and swapped. A real cluster adds the network and the
# API server's proxying. The load average is printed before and after.
# Usage: scripts/bench-backup.sh [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-debug}"
args=()
[ "$profile" = release ] && args+=(--release)
cargo test "${args[@]}" -p fedilab-orchestrator --test backup --no-run 2>/dev/null
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test "${args[@]}" -p fedilab-orchestrator --test backup -- --nocapture --ignored \
  bench_backup_fixture 2>&1 | grep -E '^bench'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
