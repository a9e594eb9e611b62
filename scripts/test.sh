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
    FEDILAB_DATA_DIR=$data target/debug/fedilab render --profile "$profile" --seed ci \
        >"$out/$(basename "$profile")"
done
FEDILAB_DATA_DIR=$data target/debug/fedilab render --instances 5 --domain fediverse.test --lab five \
    >"$out/five-instances.yaml"
target/test-venv/bin/python scripts/check_manifests.py "$out"/*.yaml --profiles lab-profiles

echo "== cargo test"
cargo test --workspace
