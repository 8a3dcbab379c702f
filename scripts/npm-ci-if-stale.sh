#!/usr/bin/env bash
# Install a Node project's node_modules with `npm ci`, only when its package-lock.json changed
# since the last install (a stamp inside node_modules records the lock file's hash).
#
#   scripts/npm-ci-if-stale.sh DIR
set -euo pipefail
cd "$1"
stamp=node_modules/.commonlab-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "npm-ci-if-stale: installing node_modules in $1 (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$stamp"
fi
