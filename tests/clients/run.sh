#!/usr/bin/env bash
# Run the Node client journeys (tests/clients/test/*.test.js) against a Jupyter-compatible server.
#
#   tests/clients/run.sh URL TOKEN [node --test args…]
#   COMMONLAB_TEST_URL=… COMMONLAB_TEST_TOKEN=… tests/clients/run.sh
#
# URL is the server's base URL, e.g. http://127.0.0.1:8888/. Installs node_modules with `npm ci` only
# when package-lock.json changed since the last install. Extra arguments go to `node --test`
# (e.g. --test-reporter=spec, or --test-name-pattern=stdin).
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

exec node --test --test-concurrency=1 --test-force-exit "$@" test/
