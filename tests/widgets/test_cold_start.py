"""The Studio's cell shows the Studio without importing torch (a second on a 2-core machine, issue 23 item 6): torch
comes with the engine's first update, which in a kernel runs on the worker's thread after the Studio is drawn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ipycanvas")

REPO = Path(__file__).resolve().parents[2]

# In a fresh process: which thread imports torch first, and whether it is imported after each step of the cell.
CELL = """
import asyncio, importlib.abc, sys, threading
importers = []

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            importers.append(threading.current_thread().name)

sys.meta_path.insert(0, Watch())
from levitor_widgets import Studio, compat
print("import", "torch" in sys.modules)
compat._in_kernel = lambda: True  # inside the loop below the Studio behaves as in a kernel (threaded updates)

async def cell():
    studio = Studio(None, out_dir=sys.argv[1], autosave=False)  # the notebook's cell, on the bundled scene
    print("built", "torch" in sys.modules, len(studio.scene.masks))
    result = studio.result  # the first update, now (a notebook's next cell reading it)
    print("updated", "torch" in sys.modules, result is not None, importers[:1])

asyncio.run(cell())
"""


def test_the_studio_cell_imports_torch_only_in_the_first_engine_update(tmp_path):
    res = subprocess.run([sys.executable, "-c", CELL, str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "import False"
    assert lines[1] == "built False 6"  # the bundled scene's masks: the engine has work to do, and waits
    assert lines[2] == "updated True True ['levitor-engine-updates']"  # imported by the worker's thread
