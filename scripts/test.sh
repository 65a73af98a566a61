#!/usr/bin/env bash
# Set up .venv (CPU torch, pinned by constraints.txt) and run the whole test suite.
# This is the README's test command and exactly what CI runs (.ci/run). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'

# The browser tests drive JupyterLab in Debian's chromium; install it where we can (root + apt).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "scripts/test.sh: could not install chromium; browser tests will be skipped" >&2
    else
        echo "scripts/test.sh: chromium not found and cannot be installed here; browser tests will be skipped" >&2
    fi
fi

# Lint first (pyproject.toml's [tool.ruff]): a style or import error fails fast, before the 10-minute suite.
.venv/bin/ruff check .

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "scripts/test.sh: pytest collected no tests; that is a broken checkout, not a pass" >&2
    exit 1
fi
exit "$rc"
