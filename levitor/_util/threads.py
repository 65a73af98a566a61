"""Torch CPU execution settings for a block of code: the thread count and flush-to-zero of denormals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), then restore the previous count.

    The engine's tensors are small and its hot loops compiled, so intra-op threads only add hand-off cost
    there (several times slower on a busy 2-core machine): it runs with one."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def flush_denormals_enabled() -> bool:
    """torch has no getter: with flush-to-zero on, a denormal input multiplies to exactly 0."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0)


@contextmanager
def flush_denormals(device: torch.device | str) -> Iterator[None]:
    """Treat denormal floats (< 1.2e-38) as zero during CPU inference, then restore the previous setting.

    Random-weight and real ViTs produce denormals (softmax and GELU tails); x86 CPUs handle them up to ~100x
    slower. Measured on SAM ViT-B at 1024 px, 1 thread: 122 s of CPU without, 13 s with. The numerical effect
    is nil (values below 1e-38 become 0). It applies to the calling thread, so it helps most with few threads.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before = flush_denormals_enabled()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
