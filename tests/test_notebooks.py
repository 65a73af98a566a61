"""Every notebook executes headless (nbclient) on CPU, on the bundled scene.

Each runs in a temporary folder (its outputs land there); a cell injected after the ``parameters`` cell makes
the sweeps small. Colab-only steps guard themselves with ``"google.colab" in sys.modules``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

# Smaller sweeps than the defaults, so each notebook stays well under a minute on 2 CPU cores.
OVERRIDES = {
    "01_quickstart.ipynb": "OUT_DIR = 'levitor_out'",
    "02_control_point_scaling.ipynb": "SCALES = [0.5, 2.0]\nFRAME = 8",
    "03_how_levitor_lifts_to_3d.ipynb": "FRAMES_SHOWN = [0, 15]",
    "04_colab.ipynb": "",
}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(OVERRIDES)


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs before committing"


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_notebook_executes(name, tmp_path, monkeypatch):
    shutil.copyfile(NOTEBOOKS / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if OVERRIDES[name]:
        assert params, f"{name} has no cell tagged 'parameters'"
        injected = nbformat.v4.new_code_cell(OVERRIDES[name])
        injected.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(params[0] + 1, injected)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.delenv("LEVITOR_STUDIO_TARGET", raising=False)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors
    if name == "01_quickstart.ipynb":
        assert (tmp_path / "levitor_out" / "bundled.json").exists()  # the save cell: the scene's own name
        assert not (tmp_path / "levitor_out" / "autosave.json").exists()  # autosaves are per scene, after an edit
        assert list((tmp_path / "levitor_out").glob("run_*/*.mp4")), "Generate wrote no video"
    if name == "04_colab.ipynb":
        assert (tmp_path / "levitor_out" / "bundled.json").exists()
    if name == "02_control_point_scaling.ipynb":
        mimes = {k for c in nb.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})}
        assert "image/png" in mimes and "application/vnd.plotly.v1+json" in mimes
        ttm = next(c for c in nb.cells if c.get("id") == "cell-ttm")  # the same scene, ControlNet and TTM
        assert "pixels pinned" in "".join(o.get("text", "") for o in ttm.outputs)


def test_quickstart_on_your_own_photo_without_weights(tmp_path, monkeypatch):
    """``levitor studio cat.png``: the quickstart with LEVITOR_STUDIO_TARGET set runs every cell (no masks yet,
    no weights: the Studio opens, Generate says what to do first)."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    Image.fromarray(skdata.chelsea()).save(tmp_path / "chelsea.png")
    nb = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("LEVITOR_STUDIO_TARGET", "chelsea.png")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "nothing to generate yet" in text and "depth: nearer:2" in text
    assert (tmp_path / "levitor_out" / "chelsea.json").exists()  # each photo its own file, not one my_scene.json
    assert not (tmp_path / "levitor_out" / "my_scene.json").exists()
