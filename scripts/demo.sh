#!/usr/bin/env bash
# The main job of the README: builds the environment, then runs `sklearn-ltm demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV=${VENV:-.venv}
exec "$VENV/bin/sklearn-ltm" demo "$@"
