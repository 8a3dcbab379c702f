#!/usr/bin/env bash
# Create or update the Python virtual environment used by the test suites and by kernels.
#
#   scripts/python-env.sh [VENV_DIR]
#
# VENV_DIR defaults to $COMMONLAB_VENV, else <repo root>/.venv.
#
# The venv is built from Debian's /usr/bin/python3, never a per-user interpreter (for example a pyenv
# build under /root): sandboxed kernels run as other users and must be able to read the interpreter.
# Everything is byte-compiled afterwards so that the venv also works when mounted read-only.
#
# Idempotent: a stamp file inside the venv records the hash of scripts/requirements-test.txt (and of this
# script); when it matches, nothing is done. Set COMMONLAB_VENV_FORCE=1 to reinstall anyway.
# Prints the venv path as the last line of output.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
REQS="$SCRIPT_DIR/requirements-test.txt"
BASE_PYTHON="${COMMONLAB_BASE_PYTHON:-/usr/bin/python3}"

VENV="${1:-${COMMONLAB_VENV:-$REPO_ROOT/.venv}}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac

log() { echo "python-env: $*" >&2; }

want_hash="$(cat "$REQS" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.commonlab-requirements.sha256"

if [[ "${COMMONLAB_VENV_FORCE:-0}" != 1 && -x "$VENV/bin/python" && -f "$stamp" \
      && "$(cat "$stamp")" == "$want_hash" ]]; then
    log "up to date: $VENV"
    echo "$VENV"
    exit 0
fi

if [[ ! -x "$BASE_PYTHON" ]]; then
    log "base interpreter $BASE_PYTHON not found (install Debian's python3)"
    exit 1
fi

# The venv module (and ensurepip) is packaged separately on Debian.
if ! "$BASE_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    log "installing python3-venv with apt"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q python3-venv >&2; then
        apt-get update -q >&2
        apt-get install -y -q python3-venv >&2
    fi
fi

# Rebuild from scratch if the venv exists but was made from another interpreter.
if [[ -f "$VENV/pyvenv.cfg" ]]; then
    base_home="$(dirname "$(readlink -f "$BASE_PYTHON")")"
    venv_home="$(sed -n 's/^home *= *//p' "$VENV/pyvenv.cfg")"
    if [[ "$(readlink -f "$venv_home")" != "$base_home" ]]; then
        log "$VENV was built from $venv_home, not $base_home: recreating"
        rm -rf "$VENV"
    fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV from $BASE_PYTHON"
    "$BASE_PYTHON" -m venv "$VENV"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
log "installing $REQS"
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q -r "$REQS" >&2

# Register the venv's ipykernel as kernelspec "python3" inside the venv itself (sys.prefix), so servers
# run from this venv find it without touching per-user or system kernelspec directories.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >&2

# Precompile, so nothing needs to write __pycache__ when the venv is mounted read-only.
"$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null 2>&1 || \
    "$VENV/bin/python" -m compileall -q "$VENV/lib" >/dev/null 2>&1 || true
# Fonts cache for matplotlib is per-user at runtime; nothing to do here.

# Readable by every user (kernels may run under other uids).
chmod -R a+rX "$VENV"

echo "$want_hash" > "$stamp"
log "ready: $VENV"
echo "$VENV"
