#!/usr/bin/env bash
# Runs a command with the environment that setup.sh wrote (Pulumi CLI on PATH, the Python venv,
# the test Postgres URL).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
if [ ! -f "$SLAPOS_ENV_FILE" ]; then
  echo "error: $SLAPOS_ENV_FILE is missing: run 'bash scripts/setup.sh' first" >&2
  exit 1
fi
# shellcheck disable=SC1090
. "$SLAPOS_ENV_FILE"
exec "$@"
