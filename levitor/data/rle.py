"""COCO run-length encoded masks (SA-V's annotations): decode (pycocotools, after a check), decode straight at a
crop-and-resize, and a numpy codec.

COCO compressed RLE: masks are decoded with ``pycocotools`` (C; :func:`rle_decode`), after a vectorised check of
the counts (a corrupt string would make its C decoder write past the mask). The numpy codec below (written from the
format's definition) encodes fixtures and is the reference the decoder is tested against. The mask is read in
column-major (Fortran) order as alternating run lengths, zeros first (a first run of 0 if the mask starts with a 1).
Each count (from the fourth on, minus the count two places before it) is written as a little-endian sequence of
5-bit groups, 6 bits per character: bit 0x20 says "more groups follow", bit 0x10 of the last group is the sign,
and 48 is added to make it printable. Example: the empty 848 x 480 mask is one run of 407040 zeros = "P`]<".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


# ----------------------------------------------------------------------------------------------- COCO RLE
def rle_counts(mask: np.ndarray) -> np.ndarray:
    """Run lengths of an (H, W) mask in column-major order, starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return runs.astype(np.int64)


def counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed text form of a run-length list (LEB128-like, delta-coded from the 4th count)."""
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end at -1
            more = x != -1 if group & 0x10 else x != 0
            if more:
                group |= 0x20
            out.append(chr(group + 48))
    return "".join(out)


def string_to_counts(text: str | bytes) -> np.ndarray:
    """Inverse of :func:`counts_to_string`."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    counts: list[int] = []
    pos, n = 0, len(text)
    while pos < n:
        x, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise ValueError(f"truncated RLE string (ends inside a count at character {pos})")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid RLE character {text[pos]!r} at {pos}")
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                x -= 1 << shift  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return np.asarray(counts, dtype=np.int64)


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> ``{"size": [H, W], "counts": str}`` exactly as pycocotools writes it."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode takes one (H, W) mask, got shape {mask.shape}")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(rle_counts(mask))}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE dict (compressed string or uncompressed list ``counts``) -> (H, W) bool mask, full size.

    Checked first (a corrupt string would make the C decoder write past the mask), then decoded by pycocotools;
    without it, by numpy. For a crop or a resize, :func:`rle_decode_resized` is faster still."""
    h, w, counts = _checked_rle(rle)
    try:
        from pycocotools import mask as mask_util
    except ImportError:
        mask_util = None
    if mask_util is not None:
        raw = rle["counts"]
        obj = mask_util.frPyObjects({"size": [h, w], "counts": list(map(int, raw))}, h, w) if isinstance(raw, list) \
            else {"size": [h, w], "counts": raw.encode("ascii") if isinstance(raw, str) else raw}
        with warnings.catch_warnings():   # pycocotools 2.0.11 + numpy 2: a copy= deprecation notice per call
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_util.decode(obj).astype(bool)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape((w, h)).T.copy()   # column-major -> (H, W)


def parse_counts(text: str | bytes) -> np.ndarray:
    """Vectorised :func:`string_to_counts` (no Python loop over characters): the run lengths of a compressed RLE.
    Raises ValueError for characters outside the alphabet, a truncated string or negative runs."""
    c = np.frombuffer(text.encode("ascii") if isinstance(text, str) else bytes(text), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() >= 64:
        raise ValueError("invalid RLE character")
    last = (c & 0x20) == 0                           # the last 5-bit group of each count
    if not last[-1]:
        raise ValueError("truncated RLE string (ends inside a count)")
    ends = np.flatnonzero(last)
    lengths = np.diff(np.concatenate([[-1], ends]))
    owner = np.repeat(np.arange(len(ends)), lengths)
    group = np.arange(c.size) - np.repeat(ends - lengths + 1, lengths)   # position of each group in its count
    x = np.bincount(owner, weights=(c & 0x1F) << (5 * group), minlength=len(ends)).astype(np.int64)
    neg = (c[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * lengths[neg])     # sign extension of the last group
    counts = x.copy()                                # from the fourth count on: delta to the count two before
    if len(counts) > 3:
        counts[3::2] = np.cumsum(x[3::2]) + x[1]
    if len(counts) > 4:
        counts[4::2] = np.cumsum(x[4::2]) + x[2]
    if counts.min() < 0:
        raise ValueError("negative run length")
    return counts


def _checked_rle(rle: dict[str, Any]) -> tuple[int, int, np.ndarray]:
    try:
        h, w = (int(v) for v in rle["size"])
        raw = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"not a COCO RLE dict with 'size' [H, W] and 'counts': {str(rle)[:80]}") from err
    counts = np.asarray(raw, dtype=np.int64) if isinstance(raw, list) else parse_counts(raw)
    if (counts.size and counts.min() < 0) or int(counts.sum()) != h * w:
        raise ValueError(
            f"RLE counts sum to {int(counts.sum())} (min {int(counts.min()) if counts.size else 0}) but the mask "
            f"has {h} x {w} = {h * w} pixels: the annotation is corrupt or its 'size' is wrong"
        )
    return h, w, counts


def rle_decode_resized(rle: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(len(rows), len(cols)) bool: the mask's pixels at the given (ascending) row and column indices, computed
    from the runs without building the full-size mask.

    A crop plus a nearest-neighbour resize is exactly such a selection, so an SA-V mask (1036 x 1400) lands at the
    training size (320 x 512) having touched 164K values instead of 1.45M. Column-major runs flip the value at
    boundary b; pixel (y, x) is 1 when an odd number of boundaries lie at or before y + x * H. Counted per output
    column: the boundaries before its source column, plus the ones inside it at rows <= y (a cumulative sum)."""
    h, _, counts = _checked_rle(rle)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    bounds = np.cumsum(counts)[:-1]
    bounds = bounds[bounds < counts.sum()]
    before = np.searchsorted(bounds, cols * h, side="left")                  # boundaries in earlier columns
    col, row = bounds // h, bounds % h
    lo, hi = np.searchsorted(cols, col, side="left"), np.searchsorted(cols, col, side="right")
    reps = hi - lo                                                            # output columns of that source col
    j = np.repeat(lo, reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    i = np.repeat(np.searchsorted(rows, row, side="left"), reps)
    n_rows, n_cols = len(rows), len(cols)
    keep = i < n_rows                                 # a flip below the last sampled row changes nothing here
    flat = j[keep] * n_rows + i[keep]                 # flip positions in the (column-major) output
    start = before & 1                                # value at the top of each output column
    per_col = np.bincount(j[keep], minlength=n_cols) & 1
    end_prev = np.concatenate([[0], (start ^ per_col)[:-1]])
    events = np.concatenate([flat, np.flatnonzero(start != end_prev) * n_rows])
    pos, times = np.unique(events, return_counts=True)
    pos = pos[times % 2 == 1]                         # two flips at one pixel cancel
    lengths = np.diff(np.concatenate([[0], pos, [n_rows * n_cols]]))
    values = np.arange(len(lengths)) % 2 == 1
    return np.repeat(values, lengths).reshape(n_cols, n_rows).T
