"""Paths users give, checked before levitor opens them.

Opening a named pipe (FIFO) for reading blocks until some other process writes to it, and a device or socket is
no file at all: an image, scene or weights path that is one of these would hang the command or the Studio with no
word. :func:`check_not_special` refuses them at once, naming the path and what it is. Folders and missing paths
are left to the caller, whose messages say what should be there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotARegularFileError(ValueError):
    """A path names a pipe, socket or device where levitor reads a file."""


def special_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is a pipe, socket or device (symbolic links followed); None for a regular file,
    a folder or nothing."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for is_kind, kind in _KINDS if is_kind(mode)), None)


def check_not_special(path: str | os.PathLike, what: str) -> Path:
    """``path``, unless it is a pipe, socket or device: then :class:`NotARegularFileError` saying so.

    what: words for the message ("image file", "scene file", "weights file")."""
    kind = special_kind(path)
    if kind is not None:
        raise NotARegularFileError(f"{what} {path} is {kind}, not a regular file: reading it would wait forever; "
                                   "save the data to a file and pass that file")
    return Path(path)
