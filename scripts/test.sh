#!/usr/bin/env bash
# Run every test: Rust unit and integration tests (real ipykernel), then the real Jupyter clients
# (@jupyterlab/services, nbclient) against a freshly built Commonlab server.
#
#   scripts/test.sh
#
# Installs what the tests need first (Debian packages, the Python venv, node_modules), skipping
# what is already present. Missing dependencies are failures, never silent skips.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
mkdir -p "$TARGET_DIR"
# Suites that need these fail, rather than skip, when they are missing.
export COMMONLAB_TEST_REQUIRE="${COMMONLAB_TEST_REQUIRE:-ipykernel,sandbox,first-run}"

log() { echo "test.sh: $*" >&2; }
passed=0
failed=0
record() { # name, exit status
    if [[ "$2" == 0 ]]; then passed=$((passed + 1)); log "PASS $1"; else failed=$((failed + 1)); log "FAIL $1"; fi
}

# 1. System packages.
need_pkgs=()
for pkg in python3-venv nodejs npm chromium bubblewrap slirp4netns e2fsprogs util-linux; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
    if command -v node >/dev/null && command -v npm >/dev/null; then
        # Node and npm may come from outside Debian's packages; only the rest is required.
        need_pkgs=("${need_pkgs[@]/nodejs/}"); need_pkgs=("${need_pkgs[@]/npm/}")
    fi
    mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | grep -v '^$' || true)
    if ((${#need_pkgs[@]})); then
        log "installing Debian packages: ${need_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    fi
fi

# 2. The Python environment for kernels and clients.
scripts/python-env.sh >/dev/null
export COMMONLAB_TEST_PYTHON="$REPO_ROOT/.venv/bin/python"

# 3. Formatting, lints (warnings are errors), then Rust tests (unit, and integration against
#    real ipykernel).
set +e
cargo fmt --all --check
record "cargo fmt" $?
cargo clippy --workspace --all-targets --locked -- -D warnings
record "cargo clippy" $?
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$TARGET_DIR/cargo-test.log"
record "cargo test" "${PIPESTATUS[0]}"
set -e

# 4. Real Jupyter clients against the built server.
cargo build --locked -p commonlab --bin commonlab
data_dir="$(mktemp -d)"
root_dir="$(mktemp -d)"
token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
port_file="$data_dir/port"
log "starting commonlab for the client suites"
"$TARGET_DIR/debug/commonlab" serve --ip 127.0.0.1 --port 0 --token "$token" --data-dir "$data_dir" \
    --root-dir "$root_dir" --python "$COMMONLAB_TEST_PYTHON" >"$data_dir/server.log" 2>&1 &
server_pid=$!
stop_server() {
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        wait "$server_pid" || true
    fi
}
trap stop_server EXIT
for _ in $(seq 1 200); do
    port="$(grep -o 'http://127.0.0.1:[0-9]*' "$data_dir/server.log" | head -1 | sed 's/.*://' || true)"
    [[ -n "$port" ]] && break
    sleep 0.05
done
if [[ -z "${port:-}" ]]; then
    cat "$data_dir/server.log" >&2
    log "server did not start"
    exit 1
fi
set +e
tests/clients/run-all.sh "http://127.0.0.1:$port/" "$token"
record "Jupyter client suites" $?
COMMONLAB_TEST_ROOT_DIR="$root_dir" tests/e2e/run.sh "http://127.0.0.1:$port/" "$token"
record "browser journeys" $?
set -e
stop_server
trap - EXIT
# Graceful shutdown must leave no kernel behind.
leftover="$(pgrep -f "ipykernel_launcher -f $data_dir/runtime" || true)"
if [[ -n "$leftover" ]]; then
    log "kernels left running after shutdown: $leftover"
    record "no kernels left after shutdown" 1
else
    record "no kernels left after shutdown" 0
fi
rm -rf "$data_dir" "$root_dir"

echo "suites: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
