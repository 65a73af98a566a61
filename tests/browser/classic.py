"""Driving the Studio in the classic Jupyter Notebook (notebook 6.x) from Playwright: the front end of ipywidgets 7,
as Colab runs it (ipywidgets 7.7.1, plotly 5.24.1, anywidget 0.9.21). JupyterLab 4 cannot load ipywidgets 7's
front end, so this is the closest real browser front end to Colab's we can run here.

The server (and so the kernel) runs with a Python that has ``notebook<7`` and ipywidgets 7: the one running the
tests (``bash scripts/test_colab_versions.sh`` makes such a venv) or the one ``LEVITOR_IPYW7_PYTHON`` names; this
checkout comes first on the kernel's ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

from tests.browser import lab
from tests.browser.lab import REPO

TOKEN = "levitor-classic-test"
PYTHON_ENV = "LEVITOR_IPYW7_PYTHON"

JS_IDLE = """() => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel &&
  Jupyter.notebook.kernel.is_connected() &&
  document.querySelector('#kernel_indicator_icon').classList.contains('kernel_idle_icon'))"""

JS_ALL_RUN = """() => Jupyter.notebook.get_cells().filter(c => c.cell_type === 'code')
  .every(c => typeof c.input_prompt_number === 'number') &&
  document.querySelector('#kernel_indicator_icon').classList.contains('kernel_idle_icon')"""

JS_KERNEL_EVAL = """(code) => new Promise((resolve) => {
  let out = '';
  const output = (msg) => {
    const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    if (t === 'error') out += 'KERNEL-ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
  };
  const status = (msg) => { if (msg.content.execution_state === 'idle') resolve(out); };
  Jupyter.notebook.kernel.execute(code, {iopub: {output, status}}, {silent: false, store_history: false});
})"""


def ipyw7_python() -> str | None:
    """A Python with notebook 6 and ipywidgets 7: the one ``LEVITOR_IPYW7_PYTHON`` names, else this one; None if
    neither has them."""
    python = os.environ.get(PYTHON_ENV) or sys.executable
    if not Path(python).exists():
        return None
    code = ("import ipywidgets, notebook; "
            "print(ipywidgets.__version__.split('.')[0], notebook.__version__.split('.')[0])")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return python if out == ["7", "6"] else None


def start_classic(python: str, base: Path, root: Path) -> subprocess.Popen:
    """The classic Notebook server of ``python`` on ``root`` (its config and runtime folders in ``base/state``),
    with this checkout first on the kernel's ``PYTHONPATH``. Waits until it answers."""
    state = base / "state"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
               JUPYTER_DATA_DIR=str(state / "data"),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    args = [python, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--NotebookApp.token={TOKEN}", f"--notebook-dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    with open(base / "notebook.log", "w") as log:  # the server keeps its own copy of the file
        proc = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    proc.base_url = f"http://127.0.0.1:{port}"
    proc.token = TOKEN
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the notebook server exited: {(base / 'notebook.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{proc.base_url}/api/status?token={TOKEN}", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the notebook server did not answer in 90 s")


def open_notebook(page, proc, name: str) -> None:
    # notebook 6.5's "migrate to Notebook 7" banner, dismissed as its button does (its --show_banner=False
    # makes the page's own script throw)
    page.add_init_script("localStorage.setItem('showNotebookNews', false)")
    page.goto(f"{proc.base_url}/notebooks/{name}?token={proc.token}")
    page.wait_for_function(JS_IDLE, timeout=90_000, polling=200)


def run_all(page, timeout_ms: int = 240_000) -> float:
    t0 = time.monotonic()
    page.evaluate("() => Jupyter.notebook.execute_all_cells()")
    page.wait_for_timeout(500)  # the first cell is queued (its prompt shows [*]) before we look
    page.wait_for_function(JS_ALL_RUN, timeout=timeout_ms, polling=250)
    return time.monotonic() - t0


# the lab's kernel helpers, through this front end's kernel
kernel_eval = partial(lab.kernel_eval, js=JS_KERNEL_EVAL)
kernel_json = partial(lab.kernel_json, js=JS_KERNEL_EVAL)
wait_kernel = partial(lab.wait_kernel, js=JS_KERNEL_EVAL)
settle = partial(lab.settle, js=JS_KERNEL_EVAL)


# ipywidgets 7's sliders are jQuery UI sliders
drag_jquery_slider = partial(lab.drag_slider, track=".ui-slider", handle=".ui-slider-handle")
