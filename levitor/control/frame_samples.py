"""K-means samples taken frame by frame, as a renderer finishes each frame.

:func:`levitor.control.points.control_from_masks` samples every object's pixels in one pass over the whole clip
once it is rendered. Under the release's rules the renderer composites frames on the worker threads; sampling each
frame there, right after it is composited (its id map still in cache), takes that pass off the main thread and
overlaps it with the rendering of the other frames. The result is the same arrays as the one-pass sampling.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from levitor.control import kernels


@dataclass
class PixelSamples:
    """What :func:`levitor.control.kernels.sample_pixels` returns for a clip, with the ids and stride it used."""

    ids: list[int]
    stride: int
    areas: np.ndarray  # (F, B) int64 pixel area of each id per frame
    flat: np.ndarray  # (N, 2) float64 (row, col) samples, object after object, each object's frames in order
    offsets: np.ndarray  # (B, F + 1): object b's samples in frame f are flat[offsets[b, f]:offsets[b, f + 1]]


@dataclass
class FrameSamples:
    """Collects :class:`PixelSamples` one frame at a time (:meth:`add`, from any thread)."""

    ids: list[int]  # the ids to sample (> 0, ascending)
    num_frames: int
    stride: int
    _frames: dict[int, tuple] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, f: int, frame_ids: np.ndarray) -> None:
        """Sample frame f from its (H, W) id map."""
        got = kernels.sample_pixels(frame_ids[None], self.ids, self.stride)
        with self._lock:
            self._frames[f] = got

    def result(self) -> PixelSamples | None:
        """The clip's samples, or None unless every frame was added."""
        F, B = self.num_frames, len(self.ids)
        if sorted(self._frames) != list(range(F)):
            return None
        per = [self._frames[f] for f in range(F)]
        areas = np.concatenate([a for a, _, _ in per]) if F else np.zeros((0, B), np.int64)
        counts = np.array([[o[b, 1] - o[b, 0] for b in range(B)] for _, _, o in per], dtype=np.int64).reshape(F, B)
        offsets = np.zeros((B, F + 1), dtype=np.int64)
        offsets[:, 1:] = np.cumsum(counts.T.reshape(-1)).reshape(B, F)
        offsets[1:, 0] = offsets[:-1, -1]
        pieces = [flat[o[b, 0]:o[b, 1]] for b in range(B) for _, flat, o in per]
        flat = np.concatenate(pieces) if pieces else np.zeros((0, 2), np.float64)
        return PixelSamples(list(self.ids), self.stride, areas, flat, offsets)
