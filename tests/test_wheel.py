"""The package as most notebook users install it: a wheel, not ``pip install -e``.

A wheel is built from the checkout's tracked files (what a clean clone holds) and installed without ``-e`` into a
fresh virtual environment; its dependencies come from this test environment's site-packages through a path file,
so nothing is downloaded and nothing of the checkout is importable there (no ``-e`` finder, no PYTHONPATH, the
working folder is elsewhere). From that install the Studio opens headless on the bundled scene and on a photo,
3D view included, every widget's state serialises, and the quickstart notebook runs in a kernel of that
environment. About 30-45 s on the 2-core CI machine (a wheel build is ~2 s; the rest is importing the stack
three times and running the notebook).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

pytest.importorskip("ipycanvas")
pytest.importorskip("nbclient")
skdata = pytest.importorskip("skimage.data")

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["pyproject.toml", "README.md", "levitor", "levitor_widgets"]  # what the build reads

CHECK = r'''
import json, sys
from pathlib import Path

repo, photo, out = (Path(a) for a in sys.argv[1:4])
import levitor, levitor_widgets

prefix = Path(sys.prefix).resolve()
files = {m.__name__: str(Path(m.__file__).resolve()) for m in (levitor, levitor_widgets)}
assert all(Path(f).is_relative_to(prefix) for f in files.values()), files  # the wheel's copy, not the checkout
assert not Path.cwd().resolve().is_relative_to(repo)

from ipywidgets.embed import dependency_state, embed_data

from levitor_widgets import Studio
from levitor_widgets.view3d import JS

seen = {}
for target in (None, str(photo)):
    studio = Studio(target, out_dir=str(out), segmenter=None)
    view = studio.view3d
    assert view is not None and view.mode == "anywidget" and view.num_points > 0, (target, view and view.mode)
    esm = view.plot.get_state()["_esm"]
    assert Path(JS).resolve().is_relative_to(prefix) and esm == JS.read_text() and "Plotly" in esm
    data = embed_data(views=[studio.widget], state=dependency_state(studio.widget))
    state = json.loads(json.dumps(data))["manager_state"]["state"]  # the Studio's whole widget tree, as a page gets it
    assert any(m["model_name"] == "AnyModel" or "_esm" in m["state"] for m in state.values())
    seen[str(target)] = {"widgets": len(state), "masks": len(studio.scene.masks), "esm": len(esm),
                         "message": studio.messages.text}
    studio.close()
print(json.dumps({"files": files, "studios": seen}))
'''

FIRST_CELL = """import sys
from pathlib import Path
import levitor, levitor_widgets
assert Path(levitor.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), levitor.__file__
assert Path(levitor_widgets.__file__).resolve().is_relative_to(Path(sys.prefix).resolve())
print("levitor from", levitor.__file__)"""


def _copy_tracked(dest: Path) -> None:
    """The files a clean clone has (git's list), or the folders as they are when this is no git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", *SHIPPED], cwd=REPO, capture_output=True, check=True)
        names = [n for n in out.stdout.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
    if not names:
        for name in SHIPPED:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(src, dest / name)
        return
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel installed (no -e) and this environment's packages on a path file."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, env = root / "src", root / "dist", root / "venv"
    src.mkdir()
    _copy_tracked(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    clean = _env(root)  # no PYTHONPATH: a checkout on it (its levitor.egg-info) would look installed to pip
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)], check=True,
                   cwd=root, env=clean)
    wheel = next(dist.glob("levitor-*.whl"))
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "test-env-packages.pth").write_text("\n".join(ours) + "\n")  # plain paths: their .pth files
    # (among them the editable install's finder) are not run, so the checkout stays out of sight
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True,
                   cwd=root, env=clean)
    return python, wheel


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "LEVITOR_STUDIO_TARGET")}
    env["JUPYTER_PATH"] = str(home / "jupyter")  # our kernel spec, found before any other "python3"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def test_the_wheel_ships_every_file_the_code_reads_beside_itself(installed):
    import zipfile

    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "levitor_widgets/view3d.js" in names
    assert "levitor/assets/mini/unet/diffusion_pytorch_model.safetensors" in names
    # every non-Python file beside the code in the checkout is in the wheel
    beside = {str(p.relative_to(REPO)) for pkg in ("levitor", "levitor_widgets") for p in (REPO / pkg).rglob("*")
              if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert beside - names == set()


def test_the_installed_wheel_opens_the_studio_and_runs_the_quickstart(installed, tmp_path):
    from PIL import Image

    python, _ = installed
    work = tmp_path / "work"  # not the checkout: nothing of it may be imported
    work.mkdir()
    Image.fromarray(skdata.chelsea()).save(work / "chelsea.png")
    env = _env(tmp_path)
    done = subprocess.run([str(python), "-c", CHECK, str(REPO.resolve()), str(work / "chelsea.png"),
                           str(work / "out")], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    bundled, photo = report["studios"]["None"], report["studios"][str(work / "chelsea.png")]
    assert bundled["masks"] > 0 and photo["masks"] == 0
    assert bundled["widgets"] > 20 and photo["widgets"] > 20 and bundled["esm"] > 1000

    spec = tmp_path / "jupyter" / "kernels" / "levitor-wheel"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "levitor from the wheel", "language": "python"}))
    shutil.copyfile(REPO / "notebooks" / "01_quickstart.ipynb", work / "01_quickstart.ipynb")
    run = textwrap.dedent(f"""
        import nbclient, nbformat
        nb = nbformat.read("01_quickstart.ipynb", as_version=4)
        nb.cells.insert(0, nbformat.v4.new_code_cell({FIRST_CELL!r}))
        nbclient.NotebookClient(nb, timeout=300, kernel_name="levitor-wheel", store_widget_state=False,
                                resources={{"metadata": {{"path": "."}}}}).execute()
        nbformat.write(nb, "executed.ipynb")
    """)
    done = subprocess.run([str(python), "-c", run], cwd=work, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    nb = json.loads((work / "executed.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert f"levitor from {python.parent.parent}" in text, text[:500]  # the kernel imported the wheel's copy
    assert (work / "levitor_out" / "bundled.json").exists()  # the save cell: the scene's own name
    assert list((work / "levitor_out").glob("run_*/*.mp4")), "Generate wrote no video"
