"""`levitor studio` as a process: a taken port is replaced, the token is not on any command line, and a SIGTERM
or SIGHUP to levitor stops JupyterLab and its kernels (no orphan server with a valid token)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("jupyterlab")  # an optional extra (widgets); the project's own modules are imported plainly

REPO = Path(__file__).resolve().parents[2]


def _cmdlines() -> dict[int, str]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # field 6: the session id


def _parent_chain_has(pid: int, ancestor: int) -> bool:
    for _ in range(10):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process command lines from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_studio_process_stops_jupyter_and_keeps_its_token_private(tmp_path, sig):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "levitor", "studio", "--no-browser", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines, url = [], None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("LeviTor Studio: "):
                url = line.split(": ", 1)[1].strip()
        assert url is not None, "".join(lines)
        assert any(f"port {port} is taken" in ln for ln in lines)
        assert f":{port}/" not in url
        token = url.split("token=")[1]
        deadline = time.time() + 30
        jupyter = []
        while time.time() < deadline and not jupyter:  # JupyterLab runs in its own session under levitor's
            jupyter = [pid for pid, cmd in _cmdlines().items() if "jupyter" in cmd and pid != proc.pid
                       and _session_of(pid) not in (None, _session_of(os.getpid()))
                       and _parent_chain_has(pid, proc.pid)]
            time.sleep(0.2)
        assert jupyter, "no JupyterLab process found"
        assert all(token not in cmd for cmd in _cmdlines().values())  # `ps` shows no token
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=60) == 0
        deadline = time.time() + 30
        while time.time() < deadline and any(pid in _cmdlines() for pid in jupyter):
            time.sleep(0.2)
        assert not any(pid in _cmdlines() for pid in jupyter), "JupyterLab outlived `levitor studio`"
    finally:
        busy.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
