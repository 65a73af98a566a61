"""CPU execution settings: torch's thread count and flush-to-zero of denormals for a block of code, and the
engine's worker threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


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


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
MAX_WORKERS = 4  # the engine's independent pieces are a few milliseconds each: more threads only wait


def worker_count() -> int:
    """Worker threads: ``LEVITOR_THREADS`` if set (1 runs everything on the calling thread), else the machine's CPUs,
    at most MAX_WORKERS."""
    value = os.environ.get("LEVITOR_THREADS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"LEVITOR_THREADS must be a whole number >= 1, got {value!r}; unset it for the default")
        return int(value)
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _forget_pool() -> None:
    """In a forked child (a DataLoader worker) the parent's pool has no threads: start a new one when needed."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(x) for x in items], on the worker threads (:func:`worker_count`) when there are several: for independent
    pieces of compiled work, which release the GIL while they run. Results in order; the first error is raised."""
    global _pool
    if len(items) < 2 or worker_count() == 1:
        return [fn(x) for x in items]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=worker_count(), thread_name_prefix="levitor-worker")
        pool = _pool
    return list(pool.map(fn, items))
