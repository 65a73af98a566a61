"""numba, when it is installed and allowed: the one switch for every compiled loop in levitor.

The engine's hot loops (z-buffer, K-means, stamp drawing) are written as plain Python over numpy arrays and
compiled with numba when it is there; without it, or with ``LEVITOR_NO_NUMBA=1``, callers take their
vectorised torch paths instead (tests check both give the same result). Compiled code is cached on disk,
so only the first run on a machine pays for compilation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

try:  # pragma: no cover - depends on the environment
    if os.environ.get("LEVITOR_NO_NUMBA", "") not in ("", "0"):
        raise ImportError("disabled by LEVITOR_NO_NUMBA")
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


def jit(fn: F, inline: bool = False) -> F:
    """``fn`` compiled (nopython, no GIL, cached on disk) when numba is available, else ``fn`` itself.

    ``inline=True`` for small helpers called from other compiled loops."""
    if not HAVE_NUMBA:
        return fn
    return numba.njit(cache=True, nogil=True, **({"inline": "always"} if inline else {}))(fn)
