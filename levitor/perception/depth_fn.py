"""Depth for a whole data set, one frame at a time: a :data:`DepthFn` maps an RGB frame to a uint8 disparity map
(the release's 0..255 scale, 255 = nearest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from levitor.depth import FLAT_DISPARITY
from levitor.perception.cache import FeatureCache
from levitor.perception.depth_estimator import RELEASE_INPUT_SIZE, DepthEstimator
from levitor.weights import resolve

DepthFn = Callable[[np.ndarray], np.ndarray]
"""One (H, W, 3) uint8 RGB frame -> (H, W) uint8 disparity (0..255, 255 = nearest), as the release stores depth."""


def flat_disparity(frame: np.ndarray) -> np.ndarray:
    """``--depth none``: every pixel at mid depth (FLAT_DISPARITY), so only instances and points carry control."""
    return np.full(frame.shape[:2], FLAT_DISPARITY, np.uint8)


def constant_disparity(disparity: int) -> DepthFn:
    """Every pixel at one disparity (1..255); for tests and ablations."""
    if not 0 <= int(disparity) <= 255:
        raise ValueError(f"a constant disparity must be in 0..255, got {disparity}")

    def depth(frame: np.ndarray) -> np.ndarray:
        return np.full(frame.shape[:2], int(disparity), np.uint8)

    return depth


def estimator_depth(estimator: Any) -> DepthFn:
    """A :class:`~levitor.perception.DepthEstimator` as a DepthFn: per-frame min-max normalised, as the release
    (with a batched ``batch`` path for whole clips)."""
    return _EstimatorDepth(estimator)


def depth_of_frames(depth_fn: DepthFn, frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) uint8 disparity: batched when the DepthFn offers ``batch`` (a loaded
    DepthAnythingV2 does: the network then sees many frames per call, which a GPU needs to stay busy)."""
    batch = getattr(depth_fn, "batch", None)
    if batch is not None:
        return batch(frames)
    return np.stack([np.asarray(depth_fn(f)) for f in frames]) if len(frames) else np.zeros(frames.shape[:3], np.uint8)


class _EstimatorDepth:
    """A DepthEstimator as a DepthFn with a batched path (``batch``)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.estimator.estimate_disparity(frame)

    def batch(self, frames: np.ndarray) -> np.ndarray:
        return self.estimator.estimate_disparity_batch(frames)


def check_depth_spec(spec: str) -> None:
    """Raise the error :func:`load_depth_fn` would raise for ``spec``, without loading a network: for a process
    that only schedules the work (the Ray driver), so a bad ``--depth`` is one line before any worker starts. A
    network's weights are looked up (:func:`levitor.weights.resolve`: found, or downloaded once here)."""
    if spec in ("none", "flat") or spec.startswith("const:"):
        load_depth_fn(spec)
        return

    resolve(spec, what="DepthAnythingV2")


def load_depth_fn(spec: str, device: str = "cpu", input_size: int | None = None) -> DepthFn:
    """``none`` (flat), ``const:<0..255>``, or a DepthAnythingV2 name (small/base/large), hub id or folder
    (``input_size``: the network's shorter side, default the release's 512)."""
    if spec in ("none", "flat"):
        return flat_disparity
    if spec.startswith("const:"):
        try:
            return constant_disparity(int(spec.split(":", 1)[1]))
        except ValueError as err:
            raise ValueError(f"--depth const:<N> needs an integer disparity 0..255, got {spec!r}") from err
    # no cache: every frame is seen once, and caching 51K videos' depth maps would only fill memory
    # fp16 on a GPU: DepthAnythingV2 is a ViT; half precision halves its memory traffic (the release runs fp32,
    # the disparity maps differ by about one 0..255 step)
    dtype = torch.float16 if str(device).startswith("cuda") else None
    return _EstimatorDepth(DepthEstimator.load(spec, device=device, dtype=dtype, cache=FeatureCache(max_bytes=0),
                                               input_size=input_size or RELEASE_INPUT_SIZE))
