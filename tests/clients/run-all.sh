#!/usr/bin/env bash
# Run every client suite against the server named by COMMONLAB_TEST_URL / COMMONLAB_TEST_TOKEN
# (or URL TOKEN arguments): the Node journeys, then the nbclient notebook run (pytest).
#
#   tests/clients/run-all.sh [URL TOKEN]
#
# Needs the test venv (scripts/python-env.sh; $COMMONLAB_VENV or <repo root>/.venv) and Node 20+.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${COMMONLAB_VENV:-$REPO_ROOT/.venv}"

if [[ $# -ge 2 ]]; then export COMMONLAB_TEST_URL="$1" COMMONLAB_TEST_TOKEN="$2"; fi
: "${COMMONLAB_TEST_URL:?usage: run-all.sh URL TOKEN (or set COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN)}"
: "${COMMONLAB_TEST_TOKEN?usage: run-all.sh URL TOKEN (or set COMMONLAB_TEST_URL and COMMONLAB_TEST_TOKEN)}"

status=0
echo "== Node journeys (@jupyterlab/services) against $COMMONLAB_TEST_URL" >&2
"$HERE/run.sh" || status=1
echo "== nbclient notebook run against $COMMONLAB_TEST_URL" >&2
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$HERE/test_nbclient.py" || status=1
exit $status
