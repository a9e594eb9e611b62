#!/usr/bin/env bash
# The one test command (CI runs exactly this through .ci/run):
# installs what the tests need, checks formatting and lints, renders every
# shipped profile and validates it independently, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== rendered manifests against the Kubernetes 1.33 schema and a YAML 1.1 reader"
cargo build --quiet --bin fedilab
out=target/rendered
rm -rf "$out" && mkdir -p "$out"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
for profile in lab-profiles/*.yaml; do
    # Servers outside the cluster are reachable only through the inspector.
    routing=()
    grep -q 'kind: external' "$profile" && routing=(--inspector-at 192.0.2.10:8480)
    FEDILAB_DATA_DIR=$data target/debug/fedilab render --profile "$profile" --seed ci \
        "${routing[@]}" >"$out/$(basename "$profile")"
done
FEDILAB_DATA_DIR=$data target/debug/fedilab render --instances 5 --domain fediverse.test --lab five \
    --inspector-at 192.0.2.10:8480 \
    >"$out/five-instances.yaml"
target/test-venv/bin/python scripts/check_manifests.py "$out"/*.yaml --profiles lab-profiles

echo "== cargo test"
cargo test --workspace
