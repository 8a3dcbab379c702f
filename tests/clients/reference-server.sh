#!/usr/bin/env bash
# Start the reference jupyter_server (from the test venv) on 127.0.0.1, run a command against it, and
# stop it again. Used to check the client suites themselves, and to compare Commonlab with the server
# it mimics.
#
#   tests/clients/reference-server.sh [COMMAND ARGS…]
#
# The command runs with COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN set; default command: all suites
# (tests/clients/run-all.sh). The server gets a free port, a random token, and private Jupyter config,
# data, runtime and root directories under a temporary directory, so user-level Jupyter settings
# don't leak in. The venv comes from $COMMONLAB_VENV or <repo root>/.venv (scripts/python-env.sh).
# Set COMMONLAB_KEEP_LOG=1 to keep the temporary directory (server log: server.log).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${COMMONLAB_VENV:-$REPO_ROOT/.venv}"
[[ -x "$VENV/bin/jupyter-server" ]] || { echo "reference-server.sh: no jupyter-server in $VENV; run scripts/python-env.sh" >&2; exit 2; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ "${COMMONLAB_KEEP_LOG:-0}" == 1 ]]; then echo "reference-server.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

mkdir -p "$work"/{config,data,runtime,root}
port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(24))')"

root_flag=()
[[ "$(id -u)" == 0 ]] && root_flag=(--allow-root)

JUPYTER_CONFIG_DIR="$work/config" JUPYTER_DATA_DIR="$work/data" JUPYTER_RUNTIME_DIR="$work/runtime" \
JUPYTER_PLATFORM_DIRS=1 \
    "$VENV/bin/jupyter-server" --no-browser "${root_flag[@]}" \
        --ServerApp.ip=127.0.0.1 --ServerApp.port="$port" --ServerApp.port_retries=0 \
        --IdentityProvider.token="$token" --ServerApp.root_dir="$work/root" \
        >"$work/server.log" 2>&1 &
server_pid=$!

url="http://127.0.0.1:$port/"
for _ in $(seq 300); do
    if curl -sf -o /dev/null "${url}api"; then break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf -o /dev/null "${url}api" || { echo "reference-server.sh: server did not come up" >&2; cat "$work/server.log" >&2; exit 1; }
echo "reference-server.sh: jupyter_server $(curl -s "${url}api") at $url (pid $server_pid)" >&2

export COMMONLAB_TEST_URL="$url" COMMONLAB_TEST_TOKEN="$token"
if [[ $# -gt 0 ]]; then "$@"; else "$HERE/run-all.sh"; fi
