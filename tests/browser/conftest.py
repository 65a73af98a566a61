"""One JupyterLab server (started with ``levitor_widgets.launch``) and one headless Debian chromium per session.

The server runs in a temporary folder holding a copy of the quickstart notebook, with its config, runtime,
settings and workspace folders outside that root (so they don't show in the file browser or screenshots).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "levitor-browser-test"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_path() -> str | None:
    env = os.environ.get("LEVITOR_CHROMIUM")
    for p in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if p and Path(p).exists():
            return p
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium():
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium executable (apt-get install -y chromium, or set LEVITOR_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    return path


@pytest.fixture(scope="session")
def lab(chromium, tmp_path_factory):
    """A running JupyterLab: yields (proc, root_dir). Killed (its whole process group) at the end."""
    from levitor_widgets.launch import launch_studio, wait_ready

    base = tmp_path_factory.mktemp("lab")
    root, state = base / "root", base / "state"
    root.mkdir()
    shutil.copyfile(REPO / "notebooks" / "01_quickstart.ipynb", root / "01_quickstart.ipynb")
    _photo_notebooks(root)
    settings = state / "settings"
    _write(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
           {"fetchNews": "false", "checkForUpdates": False})  # no "get news?" toast over the notebook
    _write(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
           {"windowingMode": "none"})  # every cell in the DOM, so locators find them
    env = {
        "JUPYTER_CONFIG_DIR": str(state / "config"), "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    proc = launch_studio(None, open_browser=False, root_dir=root, token=TOKEN, env=env,
                         extra_args=["--LabApp.expose_app_in_browser=True"], log_path=base / "jupyter.log")
    try:
        wait_ready(proc, timeout=90)
        yield proc, root
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, OSError):
            pass
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path):
    """Screenshot folder: the test's tmp dir; also copied to docs/screenshots with LEVITOR_SAVE_SCREENSHOTS=1."""
    out = tmp_path / "screenshots"
    out.mkdir()
    yield out
    if os.environ.get("LEVITOR_SAVE_SCREENSHOTS") == "1":
        dest = REPO / "docs" / "screenshots"
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted(out.glob("*.png")):
            shutil.copyfile(f, dest / f.name)


PHOTO_CELL = ("from levitor_widgets import Studio\n"
              "studio = Studio('chelsea.png', out_dir='levitor_out')\n"
              "studio")
TWO_CELLS = ("from levitor_widgets import Studio\n"
             "cat = Studio('chelsea.png', out_dir='shared', show_3d=False)\n"
             "cat",
             "cup = Studio('coffee.png', out_dir='shared', show_3d=False)\n"
             "cup")


def _photo_notebooks(root: Path) -> None:
    """Real photos (scikit-image ships them: no download) and the notebooks of the own-photo scenarios."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    Image.fromarray(skdata.chelsea()).save(root / "chelsea.png")
    Image.fromarray(skdata.coffee()).save(root / "coffee.png")
    _notebook(root / "photo.ipynb", [PHOTO_CELL])
    _notebook(root / "two.ipynb", list(TWO_CELLS))


def _notebook(path: Path, cells: list[str]) -> None:
    doc = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                      "source": src} for i, src in enumerate(cells)],
           "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
           "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(doc, indent=1))


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
