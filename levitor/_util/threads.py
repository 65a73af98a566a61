"""Thread settings for the engine's small tensor work."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with n torch threads, then restore. The engine's tensors are small and its hot loops compiled, so
    intra-op threads only add hand-off cost (several times slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)
