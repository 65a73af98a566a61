"""Content hashes, defined once: cache keys for the engine's stages, the perception caches and autosaves.
Equal content gives equal keys; blake2b with 16-byte digests (collisions are not a practical concern)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

DIGEST_SIZE = 16


def array_hash(a: np.ndarray) -> str:
    """A hash of an array's values, shape and dtype."""
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    h.update(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.view(np.uint8).reshape(-1).data if a.size else b"")
    return h.hexdigest()


def masks_hash(masks: Iterable[np.ndarray]) -> str:
    """A hash of a list of boolean masks (packed bits: 8x less to hash than the bools)."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for m in masks:
        h.update(np.packbits(m).tobytes())
        h.update(str(m.shape).encode())
    return h.hexdigest()


def bytes_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).hexdigest()


def file_hash(path, chunk: int = 1 << 20) -> str:
    """A hash of a file's bytes, read in chunks (a 130 MB shard is never held at once); about 3x faster than
    parsing a shard and hashing each sample's members."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def members_hash(members: dict[str, bytes]) -> str:
    """A hash of named byte strings (a record's members), independent of their order."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for name in sorted(members):
        h.update(f"{name}|{len(members[name])}|".encode())
        h.update(members[name])
    return h.hexdigest()


def digest(*parts) -> str:
    """A hash of plain values (numbers, strings, dataclasses, lists of them) through their repr."""
    return bytes_hash(repr(parts).encode())


def name_fraction(name: str, salt: str = "") -> float:
    """A stable pseudo-random number in [0, 1) from a name (md5, identical on every machine and Python run)."""
    digest = hashlib.md5(f"{salt}{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
