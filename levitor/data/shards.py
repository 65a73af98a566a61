"""Streaming the record shards (:mod:`levitor.data.records`) into training: a shuffle buffer, a split by rank and by
DataLoader worker, and a position that resumes where a run stopped, with no listing of the clips in memory.

Each (rank, worker) is one *slot* of ``world_size * num_workers``. Epoch ``e`` visits the finished shards in a
permutation seeded by ``seed + e``; with at least as many shards as slots each slot reads every ``slots``-th shard of
that order (nothing read twice per epoch), otherwise every slot reads all shards and keeps every ``slots``-th sample.
Samples pass through a shuffle buffer seeded by (seed, epoch, slot), so the stream of every slot is a pure function of
the data and those numbers.

Resuming: a DataLoader hands out the batches of its workers in turn (worker 0, 1, ..., 0, 1, ...), so after ``b``
batches worker ``w`` has delivered ``ceil((b - w) / W)`` of them. :class:`ShardStream` gets the number of samples its
rank consumed (``start``), skips whole epochs by arithmetic on the shard sample counts (read from the stats files),
and reads through the rest of the current epoch without decoding it.

Damaged data never stops a run: a sample that does not match its digest or cannot be decoded, and the rest of a shard
whose tar cannot be read, are skipped with a warning that names the shard and how to recompute it (a bit flip in one
of 250K files should not end a week of training); the stream fails only when a slot gets no readable sample in a
whole epoch. Skipped samples shift the resume position of that epoch by their number.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from levitor.data.records import CorruptShardError, check_sample, finished_shards, iter_tar_samples, read_stats

log = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any]], Any]
"""Turns a raw sample (member name -> bytes) into a training item; applied only to samples that are used."""


def _slot_seed(seed: int, epoch: int, slot: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) * 1_009 + int(slot)


class ShardStream(torch.utils.data.IterableDataset):
    """An endless, resumable stream of the samples of finished shards for one rank.

    root: a precompute output folder (or a folder of shards). start: samples this rank has already consumed
    (``step * batch_size * grad_accum``); batch_size and num_workers: those of the DataLoader that will read this
    (they decide which worker delivered which batch). shuffle_buffer: samples held for shuffling per worker (0: the
    shard order only).
    """

    def __init__(self, root: str | Path, transform: Transform, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle_buffer: int = 256, start: int = 0, batch_size: int = 1, num_workers: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if shuffle_buffer < 0 or start < 0 or batch_size < 1 or num_workers < 0:
            raise ValueError(f"need shuffle_buffer >= 0, start >= 0, batch_size >= 1, num_workers >= 0; got "
                             f"{shuffle_buffer}, {start}, {batch_size}, {num_workers}")
        self.skipped = 0                        # damaged samples skipped by this process (see _skip)
        self.shards = [str(p) for p in finished_shards(root, warn=True)]
        if not self.shards:
            raise FileNotFoundError(f"{root} holds no finished shards (shards/*.tar with their .stats.json); run "
                                    "`levitor precompute` (or `levitor precompute-synthetic`) there first")
        self.counts = [int(read_stats(Path(p))["samples"]) for p in self.shards]
        if sum(self.counts) == 0:
            raise ValueError(f"the shards in {root} hold no samples (every clip failed or had no object?); see their "
                             ".stats.json files")
        self.transform, self.rank, self.world_size, self.seed = transform, rank, world_size, seed
        self.shuffle_buffer, self.start, self.batch_size, self.num_workers = shuffle_buffer, start, batch_size, \
            num_workers

    # -------------------------------------------------------------------------------------- the plan
    @property
    def num_slots(self) -> int:
        return self.world_size * max(1, self.num_workers)

    def epoch_plan(self, epoch: int, slot: int) -> tuple[list[int], int | None]:
        """(shard indices this slot reads in ``epoch``, sample stride or None): stride None = every sample of those
        shards is this slot's; an int = keep samples whose running index in the epoch is ``slot`` modulo it."""
        order = np.random.default_rng(self.seed + epoch).permutation(len(self.shards)).tolist()
        if len(self.shards) >= self.num_slots:
            return order[slot :: self.num_slots], None
        return order, self.num_slots

    def epoch_count(self, epoch: int, slot: int) -> int:
        shards, stride = self.epoch_plan(epoch, slot)
        total = sum(self.counts[s] for s in shards)
        if stride is None:
            return total
        return max(0, (total - slot + stride - 1) // stride)

    def consumed_by_worker(self, worker: int) -> int:
        """Samples worker ``worker`` of this rank has delivered once the rank consumed ``start`` samples."""
        workers = max(1, self.num_workers)
        batches = self.start // self.batch_size
        mine = (batches - worker + workers - 1) // workers if batches > worker else 0
        return mine * self.batch_size

    # -------------------------------------------------------------------------------------- the stream
    def _raw_epoch(self, epoch: int, slot: int) -> Iterator[dict[str, Any]]:
        shards, stride = self.epoch_plan(epoch, slot)
        i = 0
        for s in shards:
            end = i + self.counts[s]          # the next shard's samples keep their running index after a damage
            try:
                for sample in iter_tar_samples(self.shards[s], expected=self.counts[s]):
                    mine = stride is None or i % stride == slot
                    i += 1
                    if mine:
                        try:
                            check_sample(sample)
                        except CorruptShardError as err:
                            self._skip(err)
                            continue
                        yield sample
            except CorruptShardError as err:
                self._skip(err)
            i = end

    def _skip(self, err: Exception) -> None:
        self.skipped += 1
        log.warning("skipped damaged training data (%d so far in this process): %s", self.skipped, err)

    def slot_stream(self, slot: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        """Raw samples of one slot from ``skip`` on, endless (epochs one after another)."""
        import webdataset as wds

        epoch = 0
        while True:
            n = self.epoch_count(epoch, slot)
            if skip >= n and n > 0:
                skip -= n
                epoch += 1
                continue
            if n == 0 and all(self.epoch_count(e, slot) == 0 for e in range(epoch, epoch + 3)):
                raise ValueError(f"slot {slot} of {self.num_slots} gets no sample: too few clips for "
                                 f"{self.world_size} ranks x {max(1, self.num_workers)} workers")
            stream = self._raw_epoch(epoch, slot)
            if self.shuffle_buffer > 1:
                rng = random.Random(_slot_seed(self.seed, epoch, slot))
                stream = wds.shuffle(self.shuffle_buffer, initial=min(self.shuffle_buffer, 64), rng=rng)(stream)
            got = 0
            for sample in stream:
                got += 1
                if skip:
                    skip -= 1
                    continue
                yield sample
            if got == 0 and n > 0:
                raise CorruptShardError(f"slot {slot} of {self.num_slots} read no usable sample in epoch {epoch}: "
                                        "its shards are damaged (see the warnings above); recompute them")
            epoch += 1

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and info.num_workers != max(1, self.num_workers):
            raise ValueError(f"ShardStream was made for {self.num_workers} DataLoader workers, the DataLoader has "
                             f"{info.num_workers}; pass the same number to both")
        slot = self.rank * max(1, self.num_workers) + worker
        for sample in self.slot_stream(slot, skip=self.consumed_by_worker(worker)):
            try:
                item = self.transform(sample)
            except CorruptShardError as err:    # undecodable (records written before digests)
                self._skip(err)
                continue
            yield item
