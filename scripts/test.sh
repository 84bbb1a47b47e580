#!/usr/bin/env bash
# The test command of the README: builds the environment, then runs lint, the test
# suite (doctests included) and the documentation build with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
VENV=${VENV:-.venv}
lint_paths=()
for p in sklearn_ltm tests benchmarks examples; do [ -e "$p" ] && lint_paths+=("$p"); done
"$VENV/bin/ruff" check "${lint_paths[@]}"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
if [ -f docs/conf.py ]; then
    "$VENV/bin/python" -m sphinx -W --keep-going -q -b html docs docs/_build/html
    # the built site: offline maths, no remote scripts, no mailto: links
    SKLEARN_LTM_DOCS_HTML=docs/_build/html "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
        tests/test_docs.py -k built_html
fi
