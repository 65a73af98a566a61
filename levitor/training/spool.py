"""A video's precompute result as bytes that cannot run code when read: the spool files of ``levitor precompute``
(``.work/<shard>/000003.npz``) and the rows Ray Data passes between its stages.

An output folder may sit on shared scratch space, so whatever lies in it is untrusted: a pickle there would run its
payload when a rerun read it. This format is a NumPy ``.npz`` (a zip of ``.npy`` arrays, read with
``allow_pickle=False``): the nested structure as JSON in the member ``tree``, each array and byte string as an array
member it points to. It holds exactly what the stages produce -- dicts with string keys, lists, strings, numbers,
None, NumPy arrays of plain dtypes and bytes -- and reading it back gives equal values, so the spool never changes
what a shard holds, whichever engine wrote it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

SUFFIX = ".npz"
OLD_SUFFIX = ".pkl"         # spool files of levitor before 0.1 (pickles): never read, deleted with a note
_TREE = "tree"
_ARRAY = "\x00array"        # {_ARRAY: i}: array member a<i>
_BYTES = "\x00bytes"        # {_BYTES: i}: array member a<i> (uint8) as bytes


class SpoolError(ValueError):
    """The bytes are not a spooled result (torn, foreign or damaged): compute that video again."""


def pack(value: Any) -> bytes:
    """``value`` (dicts with string keys, lists, tuples, str, int, float, bool, None, arrays, bytes) as npz bytes."""
    arrays: list[np.ndarray] = []

    def enc(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise TypeError(f"cannot spool an array of Python objects (dtype {x.dtype})")
            arrays.append(x)
            return {_ARRAY: len(arrays) - 1}
        if isinstance(x, (bytes, bytearray, memoryview)):
            arrays.append(np.frombuffer(bytes(x), np.uint8))
            return {_BYTES: len(arrays) - 1}
        if isinstance(x, dict):
            bad = [k for k in x if not isinstance(k, str)]
            if bad:
                raise TypeError(f"cannot spool a dict with non-string keys, e.g. {bad[0]!r}")
            return {k: enc(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [enc(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (str, bool, int, float)):
            return x
        raise TypeError(f"cannot spool a {type(x).__name__}")

    tree = json.dumps(enc(value)).encode()
    buf = io.BytesIO()
    np.savez(buf, **{_TREE: np.frombuffer(tree, np.uint8)}, **{f"a{i}": a for i, a in enumerate(arrays)})
    return buf.getvalue()


def _open(source: bytes | Path) -> tuple[Any, np.lib.npyio.NpzFile]:
    """The JSON tree and the open archive (members are read when indexed)."""
    z = None
    try:
        z = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise SpoolError("not an npz archive")
        return json.loads(z[_TREE].tobytes()), z
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as err:   # JSONDecodeError, SpoolError too
        if isinstance(z, np.lib.npyio.NpzFile):
            z.close()
        if isinstance(err, SpoolError):
            raise
        raise SpoolError(f"not a spooled result ({type(err).__name__}: {err})") from err


def unpack(data: bytes) -> Any:
    """The value :func:`pack` gave ``data`` for (tuples come back as lists). Raises :class:`SpoolError`."""
    tree, z = _open(data)

    def dec(x: Any) -> Any:
        if isinstance(x, dict):
            if len(x) == 1 and _ARRAY in x:
                return z[f"a{int(x[_ARRAY])}"]
            if len(x) == 1 and _BYTES in x:
                return z[f"a{int(x[_BYTES])}"].tobytes()
            return {k: dec(v) for k, v in x.items()}
        if isinstance(x, list):
            return [dec(v) for v in x]
        return x

    try:
        with z:
            return dec(tree)
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise SpoolError(f"not a spooled result ({type(err).__name__}: {err})") from err


def spooled_video(path: Path) -> str:
    """The ``video`` a spool file holds, reading only its JSON member (not the frames). Raises :class:`SpoolError`."""
    tree, z = _open(Path(path))
    with z:
        if not isinstance(tree, dict) or not isinstance(tree.get("video"), str):
            raise SpoolError("a spooled result names no video")
        return tree["video"]
