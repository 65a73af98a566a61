"""numba, when it is installed and allowed: the one switch for every compiled loop in levitor.

The engine's hot loops (z-buffer, K-means, stamp drawing) are written as plain Python over numpy arrays and
compiled with numba when it is there; without it, or with ``LEVITOR_NO_NUMBA=1``, callers take their
vectorised torch paths instead (tests check both give the same result). Compiled code is cached on disk,
so only the first run on a machine pays for compilation.

Callers ask :func:`numba_on` (not ``HAVE_NUMBA``): inside ``with compiled_loops(False):`` it is False, so one
process can run the pure-torch paths beside the compiled ones (``Engine(backend="torch")`` does, and the
backend-agreement tests compare them whole clip against whole clip).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


_ALLOWED: ContextVar[bool] = ContextVar("levitor_compiled_loops", default=True)


def numba_on() -> bool:
    """Whether compiled loops run here and now: numba is installed and allowed, and no enclosing
    ``compiled_loops(False)`` turned them off."""
    return HAVE_NUMBA and _ALLOWED.get()


@contextmanager
def compiled_loops(enabled: bool) -> Iterator[None]:
    """Within the block, :func:`numba_on` is False unless ``enabled`` (and numba is there): the pure-torch
    paths run. Per thread and task (a context variable), so a background update elsewhere is not affected."""
    token = _ALLOWED.set(bool(enabled))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def jit(fn: F, inline: bool = False) -> F:
    """``fn`` compiled (nopython, no GIL, cached on disk) when numba is available, else ``fn`` itself.

    ``inline=True`` for small helpers called from other compiled loops."""
    if not HAVE_NUMBA:
        return fn
    return numba.njit(cache=True, nogil=True, **({"inline": "always"} if inline else {}))(fn)
