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
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The package with its test, docs and lint tools (torch, torchaudio, transformers, POT, ...).
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# aisfx ships a pretrained sound-effects CNN; its metadata pins numpy==1.23, which has
# no wheel for Python >= 3.11, so it is installed without its (already satisfied) dependencies.
"$VENV/bin/python" -m pip install --quiet --no-deps "aisfx>=0.1.2"
echo "$want" > "$stamp"
