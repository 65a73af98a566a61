"""The one write path for files levitor makes: a unique temporary file beside the target, flushed to disk, then
renamed over it. A kill at any instant leaves either the old file or the whole new one under the final name,
never a torn one, and two writers never share a temporary name."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

# tests that kill a writer mid-write set this to a number of seconds: every write then waits that long with the
# whole temporary file on disk, just before the rename that publishes it
PAUSE_ENV = "LEVITOR_TEST_PAUSE_BEFORE_RENAME"


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that keeps its suffix (writers pick the format by it:
    ``.video.3f9a1c.tmp.mp4``)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: on success ``tmp`` is fsynced and renamed to ``p``; on any
    error it is removed and ``p`` is untouched. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may have closed it; flush what it wrote to the disk
            os.fsync(fh.fileno())
        if os.environ.get(PAUSE_ENV):
            time.sleep(float(os.environ[PAUSE_ENV]))
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
