"""The record shards as training and evaluation read them: the split by rank and worker, the resumable position,
and damaged data (a flipped bit, a damaged tar header, a truncated copy): training skips it with a warning naming
the shard, random access raises an error naming the shard and how to recompute it."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pytest

from levitor.data.records import (
    CorruptShardError,
    PrecomputedDataset,
    finished_shards,
    iter_tar_samples,
    read_stats,
)
from levitor.data.shards import ShardStream
from levitor.training.config import load_config
from levitor.training.datasets import precompute_synthetic

NAMES = [f"synthetic_{i:08d}" for i in range(6)]


@pytest.fixture
def shards(tmp_path) -> Path:
    cfg = load_config(None, base="mini", height=16, width=16, num_frames=2, data="shards", data_root=str(tmp_path))
    precompute_synthetic(tmp_path, 6, cfg, shard_size=2)           # 3 shards of 2 clips
    return tmp_path


def _names(stream: ShardStream, n: int, slot: int = 0, skip: int = 0) -> list[str]:
    out = []
    for sample in stream.slot_stream(slot, skip=skip):
        out.append(sample["__key__"])
        if len(out) == n:
            return out
    return out


def _stream(root: Path, **kw) -> ShardStream:
    return ShardStream(root, lambda s: s["__key__"], **{"shuffle_buffer": 0, **kw})


def test_ranks_and_workers_read_disjoint_shares_and_resume_where_they_stopped(shards):
    one = _stream(shards)
    assert sorted(_names(one, 6)) == NAMES                          # an epoch is every clip once
    parts = [_names(_stream(shards, rank=r, world_size=3), 2, slot=r) for r in range(3)]
    assert sorted(sum(parts, [])) == NAMES                          # 3 ranks: one shard each, nothing shared
    shuffled = _stream(shards, shuffle_buffer=4, seed=7)
    run = _names(shuffled, 10)                                      # into the second epoch
    for start in (3, 6, 7):
        assert _names(_stream(shards, shuffle_buffer=4, seed=7), 10 - start, skip=start) == run[start:]
    # the DataLoader's view: rank 1 of 2 with 2 workers; worker 1 delivered batches 1, 3, ... (batch 1)
    s = _stream(shards, rank=1, world_size=2, num_workers=2, start=5)
    assert (s.consumed_by_worker(0), s.consumed_by_worker(1)) == (3, 2)


def _flip_a_bit_in(tar: Path, member_suffix: str) -> str:
    with tarfile.open(tar) as tf:
        m = next(m for m in tf if m.name.endswith(member_suffix))
    data = bytearray(tar.read_bytes())
    data[m.offset_data + m.size // 2] ^= 0x10
    tar.write_bytes(bytes(data))
    return m.name.split(".")[0]


def test_a_flipped_bit_is_skipped_by_training_with_a_warning_and_an_error_for_random_access(shards, caplog):
    tar = finished_shards(shards)[1]
    key = _flip_a_bit_in(tar, ".frames.npy")                        # the size is unchanged: still "finished"
    assert tar in finished_shards(shards)
    with caplog.at_level(logging.WARNING, logger="levitor.data.shards"):
        stream = _stream(shards)
        got = _names(stream, 5)
    assert key not in got and sorted(got) == sorted(set(NAMES) - {key}) and stream.skipped == 1
    assert str(tar) in caplog.text and "does not match its digest" in caplog.text and "delete" in caplog.text
    ds = PrecomputedDataset(shards)
    i = [ds.key(j) for j in range(len(ds))].index(key)
    with pytest.raises(CorruptShardError, match=rf"shard {tar}: sample '{key}' does not match its digest.*"
                                                rf"delete {tar.with_name(tar.stem + '.stats.json')}"):
        ds[i]
    with pytest.raises(CorruptShardError, match="levitor precompute"):
        list(ds)
    assert ds[i - 1 if i % 2 else i + 1].name != key                # its neighbour is fine


def test_a_damaged_tar_header_or_a_truncated_copy_loses_only_that_shard(shards, caplog):
    tars = finished_shards(shards)
    # a flipped bit in the second sample's first header: tar reading stops there (Python's tarfile ends the
    # archive at a bad checksum), so the shard seems to hold fewer samples than its stats say
    with tarfile.open(tars[0]) as tf:
        second = [m for m in tf][len([m for m in tf]) // 2]
    data = bytearray(tars[0].read_bytes())
    data[second.offset + 3] ^= 0x01
    tars[0].write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=r"holds 1 samples but its stats say 2"):
        list(iter_tar_samples(tars[0], expected=read_stats(tars[0])["samples"]))
    # a copy cut short: not a finished shard any more; training says so and goes on without it
    tars[2].write_bytes(tars[2].read_bytes()[:5000])
    with caplog.at_level(logging.WARNING):
        stream = _stream(shards)
        got = _names(stream, 3)
    assert len(stream.shards) == 2 and str(tars[2]) in caplog.text and "left out" in caplog.text
    assert str(tars[0]) in caplog.text and stream.skipped == 1
    assert sorted(got) == sorted(NAMES[:1] + NAMES[2:4])           # shard 0's first sample, all of shard 1
    with pytest.raises(CorruptShardError, match=f"shard {tars[0]} holds 1 samples but its stats say 2"):
        PrecomputedDataset(shards)[0]


def test_a_stream_with_nothing_readable_fails_instead_of_spinning(shards):
    for tar in finished_shards(shards):
        with tarfile.open(tar) as tf:
            metas = [m for m in tf if m.name.endswith(".json")]
        data = bytearray(tar.read_bytes())
        for m in metas:
            data[m.offset_data] ^= 0x01
        tar.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="no usable sample"):
        _names(_stream(shards), 1)
