#!/usr/bin/env bash
# fedilab's own cost of applying a lab: preflight + server-side apply of a
# 2-instance lab against the fake API server (which answers at once, so the
# time is all fedilab's), and the request count for 1, 2 and 4 instances.
# Target: well under 2 s, requests linear in instances.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-release}"
args=()
[ "$profile" = release ] && args+=(--release)
cargo test "${args[@]}" -p fedilab-orchestrator --test fake_api -- --nocapture \
  preflight_and_apply_send_exactly_these_requests request_count_grows_linearly_with_instances 2>&1 \
  | grep -E '^(timing|requests for)'
