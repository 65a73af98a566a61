"""One JupyterLab server (started with ``levitor_widgets.launch``) and one headless Debian chromium per session.

The server runs in a temporary folder holding a copy of the quickstart notebook, with its config, runtime,
settings and workspace folders outside that root (so they don't show in the file browser or screenshots).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.browser.lab import CHROMIUM_ARGS, REPO, chromium_path, notebook_json, start_lab, stop_lab


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
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    shutil.copyfile(REPO / "notebooks" / "01_quickstart.ipynb", root / "01_quickstart.ipynb")
    _photo_notebooks(root)
    proc = start_lab(base, root)
    try:
        yield proc, root
    finally:
        stop_lab(proc)


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
    path.write_text(notebook_json(cells))
