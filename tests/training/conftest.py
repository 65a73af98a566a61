"""Shared training fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from levitor.data.records import finished_shards, iter_tar_samples, read_stats, write_shard, write_stats
from levitor.training.config import load_config
from levitor.training.datasets import precompute_synthetic


@pytest.fixture(scope="session")
def tiny_svd(tmp_path_factory) -> Path:
    """A saved pipeline of tiny random models with SVD's architecture: ``model: svd, pretrained: <this>`` trains
    the paper's setting the way the real SVD-xt folder does, in seconds on a CPU."""
    from levitor.testing.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_svd"))["pipeline"]


@pytest.fixture(scope="session")
def shards_with_a_late_odd_clip(tmp_path_factory) -> Path:
    """4 shards of 2 clips of 2x16x16, but the second clip of shard 2 is 2x32x32: what a second precompute into the
    same folder can leave, and what no check of each shard's first record sees. Its digest is right."""
    root = tmp_path_factory.mktemp("late_odd")
    precompute_synthetic(root, 8, load_config(None, base="mini", height=16, width=16, num_frames=2), shard_size=2)
    other = tmp_path_factory.mktemp("late_odd_32")
    precompute_synthetic(other, 1, load_config(None, base="mini", height=32, width=32, num_frames=2),
                         seed_offset=100)
    tar = finished_shards(root)[2]
    samples = list(iter_tar_samples(tar))
    samples[1] = next(iter(iter_tar_samples(finished_shards(other)[0])))
    write_stats(tar, {**read_stats(tar), "bytes": write_shard(tar, [_plain(s) for s in samples])})
    return root


def _plain(sample: dict) -> dict:
    """A sample as read, ready to be written again (without the reader's ``__url__``)."""
    return {k: v for k, v in sample.items() if k != "__url__"}
