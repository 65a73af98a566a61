#!/usr/bin/env bash
# The widget tests and the notebooks under Colab's widget stack (ipywidgets 7.7.1, plotly 5.24.1,
# anywidget 0.9.21: googlecolab/backend-info), in a separate venv (.venv-colab) so .venv keeps ipywidgets 8.
# This checks the kernel side of every widget, that each notebook executes, and the Studio in a real ipywidgets-7
# front end: Colab's own can't be run here, so the classic Notebook (notebook 6, ipywidgets 7's widgetsnbextension)
# in Debian chromium stands in for it (tests/browser/test_colab7_browser.py). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-colab}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' \
    'ipywidgets==7.7.1' 'plotly==5.24.1' 'anywidget==0.9.21' 'widgetsnbextension==3.6.1' 'notebook<7'
# ipyevents ships its classic-Notebook extension inside the package (ipycanvas, anywidget and plotly install theirs)
"$VENV/bin/jupyter" nbextension install --py ipyevents --sys-prefix >/dev/null
"$VENV/bin/jupyter" nbextension enable --py ipyevents --sys-prefix >/dev/null
"$VENV/bin/python" -c "import ipywidgets, plotly; print('ipywidgets', ipywidgets.__version__, 'plotly', plotly.__version__)"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider tests/widgets tests/test_editing.py tests/test_notebooks.py \
    tests/browser/test_colab7_browser.py "$@"
