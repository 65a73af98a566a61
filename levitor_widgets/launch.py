"""``levitor studio [IMAGE_OR_SCENE]``: start JupyterLab on the quickstart notebook with the Studio preloaded.

The server listens on 127.0.0.1 on a free port with a random token; the notebook reads what to open from the
``LEVITOR_STUDIO_TARGET`` environment variable (the kernel inherits the server's environment), so the
notebook on disk stays the same for every image. A browser is opened only where there is a display.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TARGET_ENV = "LEVITOR_STUDIO_TARGET"
QUICKSTART = "01_quickstart.ipynb"
DEFAULT_ROOT = "levitor_studio"  # created in the current directory: the notebook, its outputs, the autosave


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
        return True


def bundled_notebook(name: str = QUICKSTART) -> Path | None:
    """The repository's copy of a notebook (present in a source checkout), or None."""
    path = Path(__file__).resolve().parent.parent / "notebooks" / name
    return path if path.exists() else None


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _minimal_quickstart() -> dict:
    """Used when levitor is installed without the notebooks folder."""
    src = (
        "import os\n"
        f"from levitor_widgets import Studio\n"
        f"studio = Studio(os.environ.get('{TARGET_ENV}') or None, out_dir='levitor_out')\n"
        "studio"
    )
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": "studio", "metadata": {},
                       "outputs": [], "source": src}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


def prepare_root(root_dir: str | os.PathLike) -> Path:
    """Create the working folder with the quickstart notebook (an existing one, maybe edited, is kept)."""
    root = Path(root_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    nb = root / QUICKSTART
    if not nb.exists():
        src = bundled_notebook()
        if src is not None:
            shutil.copyfile(src, nb)
        else:
            nb.write_text(json.dumps(_minimal_quickstart(), indent=1))
    return nb


def launch_studio(target: str | None, port: int | None = None, open_browser: bool = True, *,
                  root_dir: str | os.PathLike | None = None, token: str | None = None,
                  env: dict[str, str] | None = None, extra_args: tuple[str, ...] | list[str] = (),
                  quiet: bool = False, log_path: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start JupyterLab on the quickstart notebook, preloaded with ``target`` (image or scene JSON; None: the
    bundled scene). Returns the server process (its own process group); ``proc.url`` is the address to open,
    with the token. Stop it with ``proc.terminate()``. ``quiet`` silences the server log, ``log_path`` writes it
    to a file.
    """
    if target is not None:
        tpath = Path(target).expanduser().resolve()
        if not tpath.exists():
            raise FileNotFoundError(f"{target} does not exist; pass an image file or a scene .json")
        if tpath.suffix.lower() != ".json":
            from levitor._util.images import load_image

            load_image(tpath)  # a torn or non-image file is reported here, not in the notebook
        target = str(tpath)
    root = Path(root_dir) if root_dir is not None else Path.cwd() / DEFAULT_ROOT
    nb = prepare_root(root)
    if port and not port_is_free(port):
        asked, port = port, free_port()
        if not quiet:
            print(f"levitor studio: port {asked} is taken; using {port} instead", flush=True)
    port = int(port) if port else free_port()
    token = token or secrets.token_hex(16)
    child_env = dict(os.environ)
    child_env["JUPYTER_TOKEN"] = token  # the token goes by environment: `ps` shows the command line to everyone
    if env:
        child_env.update(env)
    if target is not None:
        child_env[TARGET_ENV] = target
    else:
        child_env.pop(TARGET_ENV, None)
    show = bool(open_browser and has_display())
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={nb.parent}",
        f"--ServerApp.open_browser={show}", f"--LabApp.default_url=/lab/tree/{nb.name}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # jupyter refuses to start as root otherwise
    cmd += list(extra_args)
    out = subprocess.DEVNULL if quiet else None
    if log_path is not None:
        out = open(log_path, "ab")  # the child keeps writing to it after we return (not a with block)
    proc = subprocess.Popen(cmd, env=child_env, cwd=str(nb.parent), stdout=out, stderr=out,
                            start_new_session=True)
    proc.url = f"http://127.0.0.1:{port}/lab/tree/{nb.name}?token={token}"  # type: ignore[attr-defined]
    proc.base_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    proc.token = token  # type: ignore[attr-defined]
    proc.notebook = nb  # type: ignore[attr-defined]
    if not quiet:
        print(f"LeviTor Studio: {proc.url}", flush=True)
    return proc


def wait_ready(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the server answers ``/api/status``; raise if it exits or times out."""
    url = f"{proc.base_url}/api/status?token={proc.token}"  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode} before it was ready; its log above "
                               "(or the log file) says why")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Stop the server and its kernels (its whole process group): SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        return proc.wait(timeout)
    except ProcessLookupError:
        return proc.wait()
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def serve(proc: subprocess.Popen) -> int:
    """Wait for the server until it exits or this process is told to stop (Ctrl-C, SIGTERM, SIGHUP: a closed
    terminal or a scheduler's time limit); then stop it, so no JupyterLab is left running with a valid token."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        wait_ready(proc)
        return proc.wait()
    except KeyboardInterrupt:
        stop_server(proc)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m levitor_widgets.launch [IMAGE_OR_SCENE]``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="levitor studio", description=__doc__.splitlines()[0])
    ap.add_argument("target", nargs="?", default=None, help="image or scene .json (default: the bundled scene)")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    return serve(launch_studio(args.target, port=args.port, open_browser=not args.no_browser))


if __name__ == "__main__":
    raise SystemExit(main())
