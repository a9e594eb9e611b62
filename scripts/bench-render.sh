#!/usr/bin/env bash
# Benchmark (not a test): how long `fedilab render` takes for 2, 20 and 200
# instances, with the lab CA already in place (its leaves reused, as on every
# render after the first). Prints hyperfine's figures and the output size.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || {
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq hyperfine >/dev/null
}
cargo build --release --quiet --bin fedilab
bin=target/release/fedilab
export FEDILAB_DATA_DIR
FEDILAB_DATA_DIR=$(mktemp -d)
trap 'rm -rf "$FEDILAB_DATA_DIR"' EXIT

for n in 2 20 200; do
    # The first render creates the CA and issues every leaf; time the rest.
    $bin render --instances "$n" --seed bench >/dev/null
    objects=$($bin render --instances "$n" --seed bench | grep -c '^kind:')
    bytes=$($bin render --instances "$n" --seed bench | wc -c)
    echo "== $n instances: $objects objects, $bytes bytes of YAML"
    hyperfine --style basic --warmup 2 --runs 20 -N "$bin render --instances $n --seed bench" \
        | grep -E 'Time|Range'
done
