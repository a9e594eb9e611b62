#!/usr/bin/env bash
# The whole journey on a real k3s node, in one command, for whoever has a VM:
#
#   1. `fedilab bootstrap` when k3s is not installed yet;
#   2. `fedilab up --instances 2 --timings`, `fedilab verify -o json`,
#      `fedilab reset --timings -o json` and verify again,
#      `fedilab down --timings`, and what was left behind;
#   3. the same again with a user's own Traefik HelmChartConfig and a
#      user's own `coredns-custom` key in place, checking with kubectl that
#      both are byte for byte what they were before `up`, after `down`.
#
# Writes one JSON summary (versions, each phase's wall time, fedilab's own
# timings, verify's checklist, leftovers, the shared objects' check) to
# $JOURNEY_OUT/summary.json and prints it; exits non-zero on any failure.
# Objects the journey creates for step 3 are removed at the end; ones the
# user already had are used as they are, never changed.
#
#   scripts/journey.sh                          # fedilab from PATH
#   FEDILAB=target/release/fedilab JOURNEY_OUT=/tmp/j scripts/journey.sh
set -uo pipefail

FEDILAB=${FEDILAB:-fedilab}
OUT=${JOURNEY_OUT:-journey-$(date -u +%Y%m%dT%H%M%SZ)}
LAB=${JOURNEY_LAB:-main}
NS=kube-system
USER_KEY=fedilab-journey.override
mkdir -p "$OUT"
PHASES="$OUT/phases.tsv"
: >"$PHASES"
failed=0

log() { printf 'journey: %s\n' "$*" >&2; }

if [[ -z ${KUBECONFIG:-} && -r $HOME/.kube/config ]]; then
    export KUBECONFIG=$HOME/.kube/config
fi

kc() {
    if command -v kubectl >/dev/null 2>&1; then
        kubectl "$@"
    else
        k3s kubectl "$@"
    fi
}

# phase NAME CMD...: runs CMD with stdout to NAME.out and stderr to
# NAME.err, records its wall time and exit code, and never stops the journey.
phase() {
    local name=$1
    shift
    log "$name: $*"
    local start end rc
    start=$(date +%s.%N)
    "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
    rc=$?
    end=$(date +%s.%N)
    printf '%s\t%s\t%s\n' "$name" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" "$rc" >>"$PHASES"
    if ((rc != 0)); then
        log "$name failed (exit $rc); see $OUT/$name.err"
        failed=1
    fi
    return "$rc"
}

# leftovers NAME [KEEP...]: what fedilab left on the node after `down`, one
# line each; KEEP are the user's own objects (checked byte for byte apart).
leftovers() {
    local file=$OUT/$1.leftovers
    shift
    local keep=('configmap/coredns-custom' "$@")
    {
        kc get namespace "fedilab-$LAB" -o name 2>/dev/null
        kc get all,configmaps,secrets,ingresses,networkpolicies,persistentvolumeclaims,endpointslices,helmchartconfigs.helm.cattle.io \
            --all-namespaces -l app.kubernetes.io/managed-by=fedilab -o name 2>/dev/null |
            grep -v -x -F "${keep[@]/#/-e}" || true
        # shellcheck disable=SC2016 # a Go template, not shell
        kc -n "$NS" get configmap coredns-custom -o go-template='{{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}' 2>/dev/null |
            grep '^fedilab' | grep -v "^$USER_KEY\$" | sed 's/^/coredns-custom key: /'
    } | sort -u >"$file"
    if [[ -s $file ]]; then
        log "$1: left behind: $(tr '\n' ' ' <"$file")"
        failed=1
    fi
}

# round NAME [KEEP...]: up, verify, reset, verify, down, leftovers.
round() {
    local name=$1
    shift
    phase "$name-up" "$FEDILAB" up --lab "$LAB" --instances 2 --timings
    phase "$name-verify" "$FEDILAB" verify --lab "$LAB" -o json
    # Back to `fresh` (issue 15: under 10 s), then everything works again.
    phase "$name-reset" "$FEDILAB" reset --lab "$LAB" --timings -o json
    phase "$name-verify-after-reset" "$FEDILAB" verify --lab "$LAB" -o json
    phase "$name-down" "$FEDILAB" down --lab "$LAB" --timings
    leftovers "$name" "$@"
}

# The user's own shared objects: the text kubectl shows, exactly.
traefik_values() {
    kc -n "$NS" get helmchartconfig traefik -o jsonpath='{.spec.valuesContent}'
}
coredns_key() {
    kc -n "$NS" get configmap coredns-custom -o go-template="{{index .data \"$USER_KEY\"}}"
}

# --- versions and bootstrap ------------------------------------------------
"$FEDILAB" --version >"$OUT/fedilab.version" 2>&1 || failed=1
if [[ ! -e /etc/rancher/k3s/k3s.yaml ]]; then
    phase bootstrap "$FEDILAB" bootstrap
    if [[ -z ${KUBECONFIG:-} && -r $HOME/.kube/config ]]; then
        export KUBECONFIG=$HOME/.kube/config
    fi
fi
(k3s --version 2>/dev/null | head -n 1) >"$OUT/k3s.version"
kc version -o json >"$OUT/kubernetes.version.json" 2>/dev/null || echo '{}' >"$OUT/kubernetes.version.json"

# --- round 1: a plain node ---------------------------------------------------
round plain

# --- round 2: with the user's own Traefik and CoreDNS configuration --------
created_traefik=0
created_coredns=0
if ! kc -n "$NS" get helmchartconfig traefik >/dev/null 2>&1; then
    kc apply -f - >"$OUT/user-objects.out" 2>&1 <<'EOF' || failed=1
apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata:
  name: traefik
  namespace: kube-system
spec:
  valuesContent: |-
    deployment:
      podAnnotations:
        journey.fedilab.dev/owner: "the user"
EOF
    created_traefik=1
fi
if [[ -z $(coredns_key 2>/dev/null) || $(coredns_key 2>/dev/null) == '<no value>' ]]; then
    if kc -n "$NS" get configmap coredns-custom >/dev/null 2>&1; then
        kc -n "$NS" patch configmap coredns-custom --type merge \
            -p "{\"data\":{\"$USER_KEY\":\"# the user's own key (scripts/journey.sh)\\n\"}}" >>"$OUT/user-objects.out" 2>&1 || failed=1
    else
        kc -n "$NS" create configmap coredns-custom \
            --from-literal="$USER_KEY=# the user's own key (scripts/journey.sh)
" >>"$OUT/user-objects.out" 2>&1 || failed=1
        created_coredns=1
    fi
fi
traefik_values >"$OUT/traefik.before" 2>>"$OUT/user-objects.out"
coredns_key >"$OUT/coredns.before" 2>>"$OUT/user-objects.out"

round user-config helmchartconfig.helm.cattle.io/traefik

traefik_values >"$OUT/traefik.after" 2>>"$OUT/user-objects.out"
coredns_key >"$OUT/coredns.after" 2>>"$OUT/user-objects.out"
traefik_untouched=false
coredns_untouched=false
cmp -s "$OUT/traefik.before" "$OUT/traefik.after" && traefik_untouched=true
cmp -s "$OUT/coredns.before" "$OUT/coredns.after" && coredns_untouched=true
[[ $traefik_untouched == true && $coredns_untouched == true ]] || {
    log "the user's shared objects changed: diff $OUT/traefik.before $OUT/traefik.after; diff $OUT/coredns.before $OUT/coredns.after"
    failed=1
}

# Put the node back as the journey found it.
if ((created_traefik)); then
    kc -n "$NS" delete helmchartconfig traefik >>"$OUT/user-objects.out" 2>&1 || failed=1
fi
if ((created_coredns)); then
    kc -n "$NS" delete configmap coredns-custom >>"$OUT/user-objects.out" 2>&1 || failed=1
else
    kc -n "$NS" patch configmap coredns-custom --type json \
        -p "[{\"op\":\"remove\",\"path\":\"/data/${USER_KEY//\//~1}\"}]" >>"$OUT/user-objects.out" 2>&1 || true
fi

# --- summary -------------------------------------------------------------
python3 - "$OUT" "$failed" "$traefik_untouched" "$coredns_untouched" <<'EOF' >"$OUT/summary.json"
import json, pathlib, re, sys

out, failed, traefik, coredns = pathlib.Path(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4]

def read(name, default=""):
    p = out / name
    return p.read_text(errors="replace").strip() if p.exists() else default

phases = []
for line in read("phases.tsv").splitlines():
    name, seconds, code = line.split("\t")
    timings = {}
    for m in re.finditer(r"^\s+(\S+)\s+wall\s+([\d.]+) ms\s+api\s+([\d.]+) ms.*?(\d+) requests",
                         read(name + ".err"), re.M):
        timings[m.group(1)] = {"wall_ms": float(m.group(2)), "api_ms": float(m.group(3)),
                               "requests": int(m.group(4))}
    phases.append({"phase": name, "wall_seconds": float(seconds), "exit_code": int(code),
                   **({"fedilab_timings": timings} if timings else {})})

def load_json(name):
    try:
        return json.loads(read(name, "null") or "null")
    except json.JSONDecodeError:
        return None

def checklist(name):
    try:
        report = json.loads(read(name + "-verify.out", "{}") or "{}")
    except json.JSONDecodeError:
        return None
    return [{"id": c.get("id"), "outcome": c.get("outcome"), "explanation": c.get("explanation")}
            for c in report.get("checks", [])]

try:
    kube = json.loads(read("kubernetes.version.json", "{}") or "{}").get("serverVersion", {}).get("gitVersion")
except json.JSONDecodeError:
    kube = None
summary = {
    "ok": not failed,
    "versions": {"fedilab": read("fedilab.version"), "k3s": read("k3s.version"), "kubernetes": kube},
    "phases": phases,
    "verify": {r: checklist(r) for r in ("plain", "user-config")},
    "reset": {r: load_json(r + "-reset.out") for r in ("plain", "user-config")},
    "left_behind": {r: read(r + ".leftovers").splitlines() for r in ("plain", "user-config")},
    "user_objects_untouched": {"traefik_helmchartconfig": traefik == "true",
                               "coredns_custom_key": coredns == "true"},
}
print(json.dumps(summary, indent=2))
EOF
cat "$OUT/summary.json"
if ((failed)); then
    log "FAILED; logs in $OUT"
    exit 1
fi
log "ok; logs in $OUT"
