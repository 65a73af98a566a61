"""Who edits an autosave slot: a lock file naming the owner's pid, host, process start time and kernel.

Two Studios in two kernels on one photo would otherwise take turns writing one autosave, and after a restart one
of them has lost its edits without a word. The first Studio to open a slot writes ``lock.json`` there; a Studio in
another process that finds a live owner edits a copy instead (:mod:`levitor_widgets.files` decides that and says
so). A lock whose owner is gone is stale and is taken over without a word: its pid is dead, or the pid now belongs
to a process that started later (a reused pid), or it was written on another host and not touched for
:data:`FOREIGN_STALE_S` (a pid on another host cannot be checked). Studios in one process share the lock: the
file goes when the last of them lets go, or when the process exits.

No widgets here.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from levitor._util.io import YOUNG_S  # a lock file this young that cannot be read yet is being written by its owner

LOCK_FILE = "lock.json"
FOREIGN_STALE_S = 24 * 3600.0  # a lock from another host that no autosave touched for this long is stale
START_SLACK_S = 2.0  # /proc's boot time is whole seconds and may drift: start times this close are one process

_HELD: dict[str, int] = {}  # lock path -> how many SlotLocks of this process hold it


@dataclass(frozen=True)
class Owner:
    """The process that holds a slot."""

    pid: int
    host: str
    started: float | None = None  # the process's start time (epoch seconds), where the OS tells it
    kernel: str = ""  # the Jupyter kernel's id when the owner is a kernel

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname(), process_start_time(os.getpid()), kernel_id())

    def is_me(self) -> bool:
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def alive(self, touched: float) -> bool:
        """Does this owner still run? ``touched``: the lock file's last modification (epoch seconds)."""
        if self.host != socket.gethostname():
            return time.time() - touched < FOREIGN_STALE_S
        if not pid_alive(self.pid):
            return False
        now = process_start_time(self.pid)
        return self.started is None or now is None or abs(now - self.started) <= START_SLACK_S

    def describe(self) -> str:
        since = f", since {time.strftime('%H:%M', time.localtime(self.started))}" if self.started else ""
        kernel = f", kernel {self.kernel[:8]}" if self.kernel else ""
        return f"process {self.pid} on {self.host}{kernel}{since}"


UNKNOWN = Owner(-1, "?")  # a lock file that is being written: someone holds it, we do not know who yet
BROKEN = Owner(0, "?")  # a lock file that stayed unreadable: nobody holds it


class SlotLock:
    """The lock of one slot folder. ``acquire`` returns None when this process holds it now, or the live owner
    that holds it (then nothing was written)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.held = False

    def acquire(self) -> Owner | None:
        owner: Owner | None = None
        for _ in range(5):
            if self._create():
                self._hold()
                return None
            owner, touched = self.read()
            if owner is None:  # it went between our two looks: try again
                continue
            if owner.is_me():
                self._hold()
                return None
            if owner is UNKNOWN or (owner is not BROKEN and owner.alive(touched)):
                return owner
            self._remove_stale()
        return owner or UNKNOWN

    def release(self) -> None:
        """Let go; the file goes when no other SlotLock of this process holds it."""
        if not self.held:
            return
        self.held = False
        key = str(self.path)
        _HELD[key] -= 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
        _remove_if_mine(self.path)

    def touch(self) -> None:
        """Show the lock is in use (an autosave was written); write it again if it went (a folder put aside)."""
        if not self.held:
            return
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self._create()

    def read(self) -> tuple[Owner | None, float]:
        """The owner written in the lock (None: no lock; UNKNOWN: not readable yet) and its mtime."""
        try:
            touched = self.path.stat().st_mtime
            doc = json.loads(self.path.read_text())
            return Owner(int(doc["pid"]), str(doc["host"]), _float_or_none(doc.get("started")),
                         str(doc.get("kernel", ""))), touched
        except FileNotFoundError:
            return None, 0.0
        except (OSError, ValueError, KeyError, TypeError):
            try:
                young = time.time() - self.path.stat().st_mtime < YOUNG_S
            except OSError:
                return None, 0.0
            return (UNKNOWN if young else BROKEN), 0.0

    # ------------------------------------------------------------------ internals
    def _create(self) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"format": "levitor-autosave-lock", **asdict(Owner.me())}))
        return True

    def _hold(self) -> None:
        if not self.held:
            self.held = True
            _HELD[str(self.path)] = _HELD.get(str(self.path), 0) + 1

    def _remove_stale(self) -> None:
        """Move a stale lock out of the way; of two processes doing this at once only one rename succeeds."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
            aside.unlink()
        except FileNotFoundError:
            pass


def _remove_if_mine(path: Path) -> None:
    lock = SlotLock(path.parent)
    owner, _ = lock.read()
    if owner is not None and owner.is_me():
        try:
            path.unlink()
            path.parent.rmdir()  # a slot that never got an autosave leaves no empty folder behind
        except OSError:
            pass


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        _remove_if_mine(Path(key))
    _HELD.clear()


# ---------------------------------------------------------------------- processes
def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it there; assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc on Linux; None elsewhere or when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: start time in clock ticks after boot
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


def kernel_id() -> str:
    """The running Jupyter kernel's id ("" outside a kernel)."""
    app = sys.modules.get("ipykernel.kernelapp")
    try:
        if app is not None and app.IPKernelApp.initialized():
            return Path(app.IPKernelApp.instance().connection_file).stem.removeprefix("kernel-")
    except Exception:  # an odd kernel: the id is only informative
        pass
    return ""


def _float_or_none(v) -> float | None:
    return None if v is None else float(v)
