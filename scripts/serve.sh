#!/usr/bin/env bash
# Run the vault locally (README quick start, command 1):
#
#   bash scripts/serve.sh [evault serve args...]
#
# Creates .venv if missing, installs the package into it (dependencies at constraints.txt's versions), then
# runs `evault serve`, which starts the embedded SeaweedFS and SQLite under .evault/ and prints the base URL
# and a first API key.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=$PWD/.venv

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating .venv" >&2
    python3 -m venv "$VENV"
fi
# Quiet, but a failed install shows pip's whole output.
if ! pip_out=$("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e . 2>&1); then
    printf '%s\n' "$pip_out" >&2
    echo "serve.sh: pip install -c constraints.txt -e . failed" >&2
    exit 1
fi
exec "$VENV/bin/evault" serve "$@"
