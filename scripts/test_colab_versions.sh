#!/usr/bin/env bash
# The widget tests and the notebooks under Colab's widget stack (ipywidgets 7.7.1, plotly 5.24.1,
# anywidget 0.9.21: googlecolab/backend-info), in a separate venv (.venv-colab) so .venv keeps ipywidgets 8.
# Colab's browser front end itself can't be run here; this checks the kernel side of every widget and that
# each notebook executes. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-colab}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' \
    'ipywidgets==7.7.1' 'plotly==5.24.1' 'anywidget==0.9.21'
"$VENV/bin/python" -c "import ipywidgets, plotly; print('ipywidgets', ipywidgets.__version__, 'plotly', plotly.__version__)"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider tests/widgets tests/test_editing.py tests/test_notebooks.py "$@"
