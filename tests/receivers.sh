#!/usr/bin/env bash
# Installs the OTLP receivers the OTLP tests (tests/tests/otlp_phoenix.rs,
# tests/tests/otlp_agent.rs, through tests/src/receivers.rs) export to, and
# prints where they are:
#
#   PHOENIX=/path/to/phoenix      Arize Phoenix: OTLP gRPC + HTTP, REST API to read spans back
#   ROTEL=/path/to/rotel-agent    rotel: a small collector that prints every span it gets
#
# Both come from PyPI, pinned, into one virtualenv (default
# ~/.cache/tlsdoctor/receivers-venv, or $TLSDOCTOR_RECEIVERS_VENV), installed
# once and reused. Needs python3 with venv and pip, and PyPI. Nothing here
# listens on anything; the tests start the receivers on loopback ports.
#
#   bash tests/receivers.sh                # install if needed, print paths
#   AYA_BUILD_SKIP=1 cargo test -p tlsdoctor-tests --test otlp_phoenix
#
# `cargo xtask setup` / `cargo xtask test` run it too.
set -euo pipefail

PHOENIX_VERSION=20.26.1
ROTEL_VERSION=0.0.1a15
VENV="${TLSDOCTOR_RECEIVERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tlsdoctor/receivers-venv}"

mkdir -p "$(dirname "$VENV")"
# The tests call this from parallel threads; one installs, the others wait.
exec 9>"$VENV.lock"
flock 9

installed() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$PHOENIX_VERSION" "$ROTEL_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("arize-phoenix"), version("rotel")) == tuple(sys.argv[1:3]) else 1)
PY
}

if ! installed; then
    echo "installing arize-phoenix==$PHOENIX_VERSION rotel==$ROTEL_VERSION into $VENV (once; a few minutes)" >&2
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "arize-phoenix==$PHOENIX_VERSION" "rotel==$ROTEL_VERSION" >&2
fi

echo "PHOENIX=$VENV/bin/phoenix"
echo "ROTEL=$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
