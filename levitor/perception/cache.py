"""Content-hash cache for image embeddings and depth maps.

Re-running a notebook cell on the same photo should be instant: the expensive results (the SAM image embedding,
the depth map) are stored under a key made of the *pixels' hash* and the model's identity, never the file name,
so an edited photo is a miss and a re-read of the same photo is a hit.

Values are tensors (or dicts/lists/tuples of tensors). They live in memory (least-recently-used first out, bounded
by bytes) and, if ``disk_dir`` is given, also as ``.pt`` files there, which survive a kernel restart.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from levitor._util.hashing import bytes_hash
from levitor._util.io import atomic_path

T = TypeVar("T")

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: ~250 SAM ViT-H embeddings, or ~12 SAM-HQ ones with their ViT features




@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    items: int = 0
    bytes: int = 0


class FeatureCache:
    """An LRU cache of tensors keyed by strings, in memory and optionally on disk.

    ``cache.get_or_compute(key, fn)`` returns the stored value or runs ``fn`` once and stores what it returns.
    ``hits`` and ``misses`` count lookups, so tests (and curious users) can see that a re-run was free.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, disk_dir: str | os.PathLike | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 disables the memory cache), got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.disk_dir = Path(disk_dir).expanduser() if disk_dir is not None else None
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ lookups
    def get(self, key: str) -> Any | None:
        """The value stored under ``key`` (memory first, then disk), or None. Counts a hit or a miss."""
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key][0]
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a truncated or foreign file is just a miss; it is rewritten on put
                value = None
            if value is not None:
                self._remember(key, value)
                self.hits += 1
                return value
        self.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (tensors on CPU) under ``key``; written to disk too when the cache has a ``disk_dir``."""
        value = _to_cpu(value)
        self._remember(key, value)
        path = self._path(key)
        if path is not None:
            with atomic_path(path) as tmp:  # a crash mid-write never leaves a half file under the real name
                torch.save(value, tmp)

    def get_or_compute(self, key: str, compute: Callable[[], T]) -> T:
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def __contains__(self, key: str) -> bool:
        path = self._path(key)
        return key in self._items or (path is not None and path.is_file())

    def clear(self, disk: bool = False) -> None:
        """Forget everything in memory (and the ``.pt`` files too with ``disk=True``); counters restart."""
        self._items.clear()
        self._bytes = 0
        self.hits = self.misses = 0
        if disk and self.disk_dir is not None and self.disk_dir.is_dir():
            for f in self.disk_dir.glob("*.pt"):
                f.unlink()

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self._items), self._bytes)

    # ------------------------------------------------------------------ internals
    def _remember(self, key: str, value: Any) -> None:
        size = _nbytes(value)
        if key in self._items:
            self._bytes -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return  # too big to keep in memory; the disk copy (if any) still serves it
        self._items[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, old) = self._items.popitem(last=False)
            self._bytes -= old

    def _path(self, key: str) -> Path | None:
        if self.disk_dir is None:
            return None
        return self.disk_dir / (bytes_hash(key.encode()) + ".pt")


_DEFAULT: FeatureCache | None = None


def default_cache() -> FeatureCache:
    """The process-wide cache shared by every DepthEstimator and Segmenter that isn't given its own.

    Shared so that re-creating a Segmenter in a re-run cell still finds the embeddings of the last run.
    """
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = FeatureCache()
    return _DEFAULT


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu")
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 64
