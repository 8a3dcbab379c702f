#!/usr/bin/env bash
# Run the browser journeys (journeys.mjs: JupyterLab and Notebook 7 in Debian's chromium) against a server.
#
#   tests/e2e/run.sh URL TOKEN
#   COMMONLAB_TEST_URL=… COMMONLAB_TEST_TOKEN=… tests/e2e/run.sh
#
# URL is the server's base URL, e.g. http://127.0.0.1:8888/. Screenshots of each step go to
# target/e2e-artifacts/ (or $COMMONLAB_E2E_ARTIFACTS); set COMMONLAB_TEST_ROOT_DIR to the server's
# root directory to have saves and renames checked on disk too.
# Installs node_modules with `npm ci` only when package-lock.json changed since the last install.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if [[ $# -ge 2 && "$1" != -* ]]; then
    export COMMONLAB_TEST_URL="$1" COMMONLAB_TEST_TOKEN="$2"
    shift 2
fi
: "${COMMONLAB_TEST_URL:?usage: run.sh URL TOKEN (or set COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN)}"
: "${COMMONLAB_TEST_TOKEN?usage: run.sh URL TOKEN (or set COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN)}"

"$HERE/../../scripts/npm-ci-if-stale.sh" "$HERE"

exec node journeys.mjs "$@"
