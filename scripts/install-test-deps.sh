#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, on a fresh Debian
# machine (idempotent; quiet when everything is present):
#   openssl   - the CA tests verify certificates with `openssl verify`
#   ca-certificates - `fedilab ca trust --dry-run` plans against the system store
#   dnsutils  - the DNS tests query with `dig`
#   chromium  - the inspector UI test drives headless Chromium
#   ruby      - the verify check scripts are syntax-checked and the egress
#               one run for real (Mastodon's image runs them in the lab)
#   wget      - the Misskey and GoToSocial setup scripts (busybox wget in
#               the lab) run against local stand-ins
#   postgresql, redis-server - the state commands' SQL and Redis steps run
#               for real against throwaway servers (crates/fedilab-testdb);
#               the packages' own services are not needed and not used
#   a Python venv (target/test-venv) with kubernetes-validate, PyYAML and
#   jsonschema - independent checks of rendered manifests and profiles
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v update-ca-certificates >/dev/null || need+=(ca-certificates)
command -v dig >/dev/null || need+=(dnsutils)
command -v chromium >/dev/null || need+=(chromium)
command -v ruby >/dev/null || need+=(ruby)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v wget >/dev/null || need+=(wget)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
    echo "install-test-deps: installing ${need[*]}"
    SUDO=""
    [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VENV=target/test-venv
if ! "$VENV/bin/python" -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null; then
    echo "install-test-deps: creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        kubernetes-validate==1.37.0 PyYAML==6.0.3 'jsonschema>=4.23,<5'
fi
