"""Advisory locks between processes, on POSIX ``flock``.

A flock belongs to an open file, so the kernel drops it when its holder exits in any way, SIGKILL included: a
killed writer never leaves a stale lock to clean up, and "is this file locked?" is a reliable "is its writer
still alive?", across processes, threads (each lock is its own open file) and, on NFS, hosts. Where ``fcntl``
does not exist (Windows) :data:`AVAILABLE` is False and the locks are no-ops; levitor supports Linux and macOS.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover -- Windows
    fcntl = None

AVAILABLE = fcntl is not None
POLL_S = (0.002, 0.02)  # a waiting process retries after a random pause in this range (no lock-step retries)


class LockTimeoutError(TimeoutError):
    """Another process held a lock for longer than the caller would wait."""


def _open(path: Path, create: bool) -> int:
    """An fd to lock ``path`` with: read-write where we may (NFS needs it for exclusive locks), else read-only
    (a lock file another user made). O_NONBLOCK: a planted FIFO does not hang the open."""
    flags = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags | (os.O_CREAT if create else 0), 0o666)
    except PermissionError:
        if not path.exists():
            raise
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive(lock_file: str | os.PathLike, timeout_s: float, holder: str) -> Iterator[None]:
    """``with exclusive(lock_file, 60, "saving scene.json"):`` one process (and one thread) at a time.

    The lock file is created if needed and kept afterwards (removing it would let two processes lock two
    different files of the same name). After ``timeout_s`` of waiting: :class:`LockTimeoutError` naming
    ``holder`` (what the other process is doing) and the lock file."""
    if not AVAILABLE:
        yield
        return
    lock_file = Path(lock_file)
    fd = _open(lock_file, create=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise LockTimeoutError(f"another process has been {holder} for over {timeout_s:.0f} s (it holds "
                                       f"{lock_file}); wait for it to finish, or stop it, and try again")
            time.sleep(random.uniform(*POLL_S))
        yield
    finally:
        os.close(fd)  # releases the lock


def hold(fd: int) -> None:
    """Lock an fd the caller just created (so :func:`is_held` says its writer is alive); released on close."""
    if AVAILABLE:
        fcntl.flock(fd, fcntl.LOCK_EX)


def is_held(path: str | os.PathLike) -> bool:
    """Whether some live process holds a lock on ``path``. True when unsure (the file cannot be opened or locked
    here): callers use it to decide whether a file may be deleted."""
    if not AVAILABLE:
        return True
    try:
        fd = _open(Path(path), create=False)
    except OSError:
        return True
    try:
        return not _try_lock(fd)
    except OSError:
        return True
    finally:
        os.close(fd)
