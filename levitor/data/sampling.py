"""Which clips to take from a video, and which videos are held out.

Both are pure functions of names and lengths, so every process of a sharded precompute (and every machine) makes
the same choices without talking to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from levitor._util.hashing import name_fraction
from levitor.defaults import NUM_FRAMES

StartPolicy = Literal["first", "all", "random"]


@dataclass
class ClipSampling:
    """How 16-frame clips are cut from a longer video."""

    num_frames: int = NUM_FRAMES   # the official checkpoint was trained and evaluated on 16 frames
    stride: int = 1                # in frames of the reader's output (SA-V's reader already yields 6 fps frames)
    starts: StartPolicy = "first"  # 'first': one clip per video (evaluation); 'all': non-overlapping clips
                                   # (precompute); 'random': one random clip per call (training)
    hop: int | None = None         # distance between starts for 'all'; None = num_frames * stride (no overlap)


def clip_starts(num_video_frames: int, sampling: ClipSampling, rng: np.random.Generator | None = None) -> list[int]:
    """Start frames of the clips to cut from a video of ``num_video_frames`` frames ([] if it is too short)."""
    span = (sampling.num_frames - 1) * sampling.stride + 1
    last = num_video_frames - span
    if last < 0:
        return []
    if sampling.starts == "first":
        return [0]
    if sampling.starts == "all":
        hop = sampling.hop or sampling.num_frames * sampling.stride
        if hop < 1:
            raise ValueError(f"hop must be >= 1, got {hop}")
        return list(range(0, last + 1, hop))
    if sampling.starts == "random":
        if rng is None:
            raise ValueError("starts='random' needs an rng: pass np.random.default_rng(seed)")
        return [int(rng.integers(0, last + 1))]
    raise ValueError(f"unknown start policy {sampling.starts!r}; use 'first', 'all' or 'random'")


def shard_of(name: str, num_shards: int) -> int:
    """Which of ``num_shards`` workers owns a video; by name hash, so it does not depend on listing order."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return int(name_fraction(name, "levitor-shard") * num_shards)
