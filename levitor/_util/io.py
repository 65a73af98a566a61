"""The one write path for files levitor makes: a unique temporary file beside the target, flushed to disk, then
renamed over it. A kill at any instant leaves either the old file or the whole new one under the final name,
never a torn one, and two writers never share a temporary name.

Temporary files are named ``.<stem>.<pid>-<8 hex>.tmp<suffix>`` (``.video.4242-3f9a1c0e.tmp.mp4``) and their
writer holds a lock on them (:mod:`levitor._util.locks`) while it writes. A failed write removes its temporary
file; one left by a killed writer (its lock gone with it) is swept by the next write of the same target.

Failures a user can fix are said in their words, with the file: a full disk (``ENOSPC``, or a short write on a
disk with no space left) is a :class:`DiskFullError`; a folder that cannot be written is a
:class:`NotWritableError`. Both are OSErrors whose message is the whole sentence.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from levitor._util import locks

# tests that kill a writer mid-write set this to a number of seconds: every write then waits that long with the
# whole temporary file on disk, just before the rename that publishes it; "30:.json" pauses only writes of .json files
PAUSE_ENV = "LEVITOR_TEST_PAUSE_BEFORE_RENAME"
TEMPORARY_TAG = re.compile(r"(?P<pid>\d+)-[0-9a-f]{8}\.tmp")  # what temporary_sibling puts between stem and suffix
YOUNG_S = 10.0  # a temporary file this young whose pid runs here may be in the instant between create and lock
STALE_S = 24 * 3600.0  # without flock (Windows), only temporary files this old are swept
FULL_BELOW = 1 << 20  # bytes: a write that failed with less free space than this failed because the disk is full
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                 errno.EROFS: "it is on a read-only file system"}


class DiskFullError(OSError):
    """A write ran out of disk space. ``filename`` is the file; the message says so and what to do."""

    def __str__(self) -> str:
        return self.strerror


class NotWritableError(PermissionError):
    """A folder levitor must write into is read-only to this user. The message names it and what to do."""

    def __str__(self) -> str:
        return self.strerror


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that keeps its suffix (writers pick the format by it:
    ``.video.4242-3f9a1c0e.tmp.mp4``)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def is_temporary_of(name: str, path: Path) -> bool:
    """Whether ``name`` is a temporary file that :func:`temporary_sibling` makes for ``path``."""
    head, tail = f".{path.stem}.", path.suffix
    return (name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)
            and TEMPORARY_TAG.fullmatch(name[len(head):len(name) - len(tail)]) is not None)


def abandoned(tmp: Path) -> bool:
    """Whether the temporary file ``tmp`` belongs to no live writer (so it may be deleted)."""
    try:
        age = time.time() - tmp.stat().st_mtime
    except OSError:
        return False
    if not locks.AVAILABLE:
        return age > STALE_S
    if locks.is_held(tmp):
        return False
    match = TEMPORARY_TAG.search(tmp.name)
    # a writer creates its file, then locks it: a young file of a live pid may be in between
    return age > YOUNG_S or match is None or not _pid_runs(int(match["pid"]))


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_temporaries(path: Path) -> int:
    """Remove the temporary files of ``path`` that killed writers left; returns how many."""
    removed = 0
    try:
        names = [e.name for e in os.scandir(path.parent) if is_temporary_of(e.name, path)]
    except OSError:
        return 0
    for name in names:
        if abandoned(path.parent / name):
            with contextlib.suppress(OSError):  # best effort: gone already, or the folder is read-only
                os.unlink(path.parent / name)
                removed += 1
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_folder(folder: Path) -> Path:
    """``folder`` and its parents, created as needed; a folder that cannot be made says why in words."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise explain_write_error(err, folder, folder) from None
    return folder


def explain_write_error(err: BaseException, path: Path, folder: Path) -> BaseException:
    """``err`` (raised writing ``path`` in ``folder``) as the error to show: a :class:`DiskFullError` or a
    :class:`NotWritableError` when that is the cause, else ``err`` itself."""
    code = getattr(err, "errno", None)
    short_write = code is None and isinstance(err, (OSError, RuntimeError)) and not isinstance(err, TimeoutError)
    if code in _FULL_ERRNOS or (short_write and _disk_full(folder)):
        free = _free_bytes(folder)
        return DiskFullError(errno.ENOSPC, f"the disk is full: {path} could not be written ({_size(free)} free "
                                           f"on the disk of {folder}); free some space or write to another disk, then "
                                           "try again", str(path))
    if code in _NOT_WRITABLE and isinstance(err, OSError):
        where = folder if folder.is_dir() else _existing_parent(folder)
        return NotWritableError(code, f"cannot write {path}: {where} is not writable ({_NOT_WRITABLE[code]}); "
                                      "choose a folder you can write to, or change its permissions", str(path))
    return err


def _existing_parent(folder: Path) -> Path:
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_parent(folder)).free
    except OSError:
        return None


def _disk_full(folder: Path) -> bool:
    """A write failed without an errno (numpy: "163840 requested and 54240 written", torch: "file write failed"):
    the disk is the cause when it has (almost) no space left."""
    free = _free_bytes(folder)
    return free is not None and free < FULL_BELOW


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    return f"{n} bytes" if n < 10_000 else f"{n / 1e6:.1f} MB" if n < 10**10 else f"{n / 1e9:.0f} GB"


def _claim(tmp: Path) -> int:
    """Create ``tmp`` and lock it: while the writer lives, no sweep takes it for a killed writer's file."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    if locks.AVAILABLE:
        locks.hold(fd)
        return fd
    os.close(fd)  # Windows: an open file cannot be renamed over the target
    return -1


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: on success ``tmp`` is fsynced and renamed to ``p``; on any
    error it is removed and ``p`` is untouched. Creates the parent folder; sweeps killed writers' temporary files
    of ``p``; a full disk or a read-only folder is a :class:`DiskFullError` / :class:`NotWritableError`."""
    path = Path(path)
    make_folder(path.parent)
    sweep_temporaries(path)
    tmp = temporary_sibling(path)
    fd, claimed = -1, False
    try:
        fd = _claim(tmp)
        claimed = True
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may have closed it; flush what it wrote to the disk
            os.fsync(fh.fileno())
        _test_pause(path)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as err:  # measured before the temporary file is removed: its bytes are the missing space
        explained = explain_write_error(err, path, path.parent)
        if explained is err:
            raise
        raise explained from err
    finally:
        if claimed:
            with contextlib.suppress(FileNotFoundError):  # gone: renamed to ``path``
                tmp.unlink()
        if fd >= 0:
            os.close(fd)


def _test_pause(path: Path) -> None:
    seconds, _, suffix = os.environ.get(PAUSE_ENV, "").partition(":")
    if seconds and path.suffix == (suffix or path.suffix):
        time.sleep(float(seconds))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
