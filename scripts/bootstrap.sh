#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with everything the
# tests, the demo, the benchmarks and the docs need. Idempotent: re-running it only
# reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.sklearn-ltm-stamp"
want=$(sha256sum pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "setting up $VENV (torch, transformers, POT, ...; a few minutes the first time)" >&2
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
log="$VENV/bootstrap.log"
install() {
    if ! "$VENV/bin/python" -m pip install --quiet "$@" >> "$log" 2>&1; then
        echo "pip install $* failed; the last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}
: > "$log"
install --upgrade pip
# The package with its test, docs and lint tools (torch, torchaudio, transformers, POT, ...).
install -e ".[dev]"
# aisfx ships a pretrained sound-effects CNN; its metadata pins numpy==1.23, which has
# no wheel for Python >= 3.11, so it is installed without its (already satisfied) dependencies.
install --no-deps "aisfx>=0.1.2"
echo "$want" > "$stamp"
echo "environment ready" >&2
