"""The record shards as training and evaluation read them: clips assigned to ranks and workers (never one clip to two
ranks in a step, whatever the shard sizes), the resumable position, and damaged data (a flipped bit, a damaged tar
header, a truncated copy, an unreadable stats file): training skips it with a warning naming the shard (then counts),
keeps every slot in step, and stops on data that is broken throughout; random access raises an error naming the shard
and how to recompute it."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from levitor.data.records import (
    CorruptShardError,
    PrecomputedDataset,
    finished_shards,
    iter_tar_samples,
    read_stats,
    sample_digest,
    write_shard,
    write_stats,
)
from levitor.data.shards import ShardStream, batch_source, clips_per_slot, epoch_order, slot_share
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
    for name in stream.slot_stream(slot, skip=skip):
        out.append(name)
        if len(out) == n:
            return out
    return out


def _stream(root: Path, **kw) -> ShardStream:
    return ShardStream(root, lambda s: s["__key__"], **{"shuffle_buffer": 0, **kw})


def test_ranks_and_workers_read_disjoint_shares_and_resume_where_they_stopped(shards):
    one = _stream(shards)
    assert sorted(_names(one, 6)) == NAMES                          # an epoch is every clip once
    parts = [_names(_stream(shards, rank=r, world_size=3), 2, slot=r) for r in range(3)]
    assert sorted(sum(parts, [])) == NAMES                          # 3 ranks: two clips each, nothing shared
    shuffled = _stream(shards, shuffle_buffer=4, seed=7)
    run = _names(shuffled, 10)                                      # into the second epoch
    for start in (3, 6, 7):
        assert _names(_stream(shards, shuffle_buffer=4, seed=7), 10 - start, skip=start) == run[start:]
    # the DataLoader's view: rank 1 of 2 with 2 workers; worker 1 delivered batches 1, 3, ... (batch 1)
    s = _stream(shards, rank=1, world_size=2, num_workers=2, start=5)
    assert (s.consumed_by_worker(0), s.consumed_by_worker(1)) == (3, 2)
    with pytest.raises(ValueError, match="hold 6 clips, too few for 2 rank.* x 2 DataLoader worker.* x batch_size 2"):
        _stream(shards, world_size=2, num_workers=2, batch_size=2)


# ------------------------------------------------------------------------------------------ the plan
def _schedule(counts, ranks, workers, batch, accum, seed, steps):
    """Per step, the clips (epoch, shard, index) each rank uses, from the plan and the DataLoader's worker turns."""
    slots = ranks * max(1, workers)
    per_slot = clips_per_slot(sum(counts), slots, batch, accum, workers)
    shares: dict = {}

    def clip(epoch, slot, pos):
        if (epoch, slot) not in shares:
            order = epoch_order(len(counts), seed, epoch)
            shares[epoch, slot] = [(s, i) for s, a, b in slot_share(counts, order, slot, per_slot) for i in range(a, b)]
        return (epoch, *shares[epoch, slot][pos])

    out = []
    for step in range(steps):
        used = {}
        for rank in range(ranks):
            used[rank] = []
            for b in range(step * accum, (step + 1) * accum):          # this rank's batches of the step
                worker, k = batch_source(b, workers)
                slot = rank * max(1, workers) + worker
                for j in range(batch):
                    epoch, pos = divmod(k * batch + j, per_slot)
                    used[rank].append(clip(epoch, slot, pos))
        out.append(used)
    return out, per_slot


@settings(max_examples=150, deadline=None)
@given(counts=st.lists(st.integers(0, 12), min_size=1, max_size=10), ranks=st.integers(1, 3),
       workers=st.integers(0, 3), batch=st.integers(1, 2), accum=st.integers(1, 3), seed=st.integers(0, 5))
def test_no_two_ranks_share_a_clip_in_a_step_whatever_the_shard_sizes(counts, ranks, workers, batch, accum, seed):
    """Pure: the plan and the DataLoader's turn-taking over uneven shards; every step's clips are distinct over all
    ranks and micro-batches, all from one epoch, and an epoch serves no clip twice."""
    slots = ranks * max(1, workers)
    if clips_per_slot(sum(counts), slots, batch, accum, workers) == 0:
        return                                                      # refused with a message (test above)
    steps = 3 * sum(counts) // (ranks * batch * accum) + 2          # about three epochs
    schedule, per_slot = _schedule(counts, ranks, workers, batch, accum, seed, steps)
    seen: dict[int, set] = {}
    for used in schedule:
        clips = [c for rank in used.values() for c in rank]
        assert len({c[1:] for c in clips}) == len(clips)            # nobody shares a clip in this step
        assert len({c[0] for c in clips}) == 1                      # everybody is in the same epoch
        for epoch, s, i in clips:
            assert (s, i) not in seen.setdefault(epoch, set())      # once per epoch
            seen[epoch].add((s, i))
            assert 0 <= i < counts[s]
    assert per_slot * slots > sum(counts) - slots * batch * accum   # what waits for another epoch is small


def _write_uneven(folder: Path, counts: list[int]) -> list[str]:
    """Shards of tiny stand-in samples (a key, a metadata member and the digest) holding ``counts`` clips."""
    names = []
    for s, n in enumerate(counts):
        samples = []
        for i in range(n):
            sample = {"__key__": f"c{s}_{i}", "json": b"{}"}
            sample["digest.txt"] = sample_digest(sample).encode()
            samples.append(sample)
            names.append(sample["__key__"])
        tar = folder / "shards" / f"shard-{s:06d}.tar"
        write_stats(tar, {"samples": n, "bytes": write_shard(tar, samples)})
    return names


def test_two_ranks_with_two_workers_on_uneven_shards_never_share_a_clip(tmp_path):
    """The issue's case through real DataLoaders: shards of 5/6/4/4 clips, 2 ranks x 2 workers, 200 steps (on main
    two ranks got the same clip in 5 of them), shuffled; and a rank resumed mid-epoch goes on with the same clips."""
    names = _write_uneven(tmp_path, [5, 6, 4, 4])

    def loader(rank, start=0):
        stream = ShardStream(tmp_path, lambda s: s["__key__"], rank=rank, world_size=2, num_workers=2, seed=3,
                             shuffle_buffer=4, start=start)
        return torch.utils.data.DataLoader(stream, batch_size=1, num_workers=2)

    steps = [list(zip(range(200), iter(loader(r)))) for r in (0, 1)]
    shared = [i for i, ((_, a), (_, b)) in enumerate(zip(*steps)) if set(a) & set(b)]
    assert shared == []
    assert {n for r in steps for _, batch in r for n in batch} == set(names)    # every clip comes round
    resumed = [b for _, b in zip(range(20), iter(loader(1, start=37)))]
    assert resumed == [b for _, b in steps[1][37:57]]


# ------------------------------------------------------------------------------------------ damaged data
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
        got = _names(stream, 12)                                    # two epochs
    # the damaged clip's place is taken by the slot's previous good one: still 6 a slot per epoch, in step
    assert key not in got and set(got) == set(NAMES) - {key} and stream.skipped == 2
    assert len(set(got[:6])) == len(set(got[6:])) == 5
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
        got = _names(stream, 4)
    assert len(stream.shards) == 2 and str(tars[2]) in caplog.text and "left out" in caplog.text
    assert str(tars[0]) in caplog.text and stream.skipped == 1
    assert set(got) == set(NAMES[:1] + NAMES[2:4]) and len(got) == 4     # shard 0's first sample, all of shard 1
    with pytest.raises(CorruptShardError, match=f"shard {tars[0]} holds 1 samples but its stats say 2"):
        PrecomputedDataset(shards)[0]


def test_an_unreadable_stats_file_is_a_warning_not_silence(shards, caplog):
    tar = finished_shards(shards)[0]
    tar.with_name(tar.stem + ".stats.json").write_text('{"samples": 2, "bytes": ')
    with caplog.at_level(logging.WARNING, logger="levitor.data.records"):
        assert tar not in finished_shards(shards, warn=True)
    assert f"shard {tar} is left out: its stats file" in caplog.text and "cannot be read" in caplog.text


def _flip_every(root: Path, suffix: str) -> None:
    for tar in finished_shards(root):
        with tarfile.open(tar) as tf:
            members = [m for m in tf if m.name.endswith(suffix)]
        data = bytearray(tar.read_bytes())
        for m in members:
            data[m.offset_data] ^= 0x01
        tar.write_bytes(bytes(data))


def test_a_stream_with_nothing_readable_fails_instead_of_spinning(shards):
    _flip_every(shards, ".json")
    with pytest.raises(CorruptShardError, match=r"no usable sample .* shards .*shard-00000\d.tar"):
        _names(_stream(shards), 1)


def test_undecodable_samples_stop_after_max_consecutive_skips_with_counted_warnings(tmp_path, caplog):
    """Samples whose digest matches but which cannot be decoded (the issue's 1,173,876 skips in 240 s, one warning
    each, for ever): a few warnings, then counts, and the stream stops after max_consecutive_skips in a row."""
    _write_uneven(tmp_path, [40, 40, 40])

    def undecodable(sample):
        raise CorruptShardError(f"shard {sample['__url__']}: sample {sample['__key__']!r} is not a whole levitor "
                                "record", shard=sample["__url__"])

    with caplog.at_level(logging.WARNING, logger="levitor.data.shards"):
        stream = ShardStream(tmp_path, undecodable, shuffle_buffer=8, max_consecutive_skips=100)
        with pytest.raises(CorruptShardError, match=r"stopped after 100 damaged samples in a row "
                                                    r"\(max_consecutive_skips: 100\) from 3 shard\(s\): .*shard-00000"):
            _names(stream, 1)
    warnings = [r for r in caplog.records if r.name == "levitor.data.shards"]
    assert len(warnings) == 3 + 2                                   # the first 3, then at 10 and 100
    assert "skipped 100 damaged samples so far" in warnings[-1].getMessage()
    stream = ShardStream(tmp_path, undecodable, shuffle_buffer=0)   # no limit: the epoch's end stops it
    with pytest.raises(CorruptShardError, match="no usable sample in what was left of epoch 0"):
        _names(stream, 1)
    assert stream.skipped == 120
