"""Streaming the record shards (:mod:`levitor.data.records`) into training: clips assigned to (rank, worker) slots, a
shuffle buffer, and a position that resumes exactly, with no listing of the clips in memory.

Each (rank, DataLoader worker) is one *slot* of ``world_size * num_workers``. Epoch ``e`` lays the finished shards end
to end in a permutation seeded by ``seed + e`` and gives slot ``k`` the clips ``k*M .. (k+1)*M - 1`` of that order (it
reads only the shards its range touches); the last ``N - slots*M`` clips of the order wait for another epoch (the order
changes every epoch). ``M`` (:func:`clips_per_slot`) is the same for every slot and a multiple of the batch size chosen
so that every worker's epoch ends with a step: at any step all ranks are in the same epoch, so no two ranks (nor two
micro-batches of a step) get the same clip, whatever the shards' sizes. Samples pass through a shuffle buffer seeded by
(seed, epoch, slot), so the stream of every slot is a pure function of the data and those numbers.

Resuming: a DataLoader hands out the batches of its workers in turn (:func:`batch_source`), so after ``b`` batches
worker ``w`` has delivered ``ceil((b - w) / W)`` of them, and batch ``b`` is worker ``b mod W``'s; a new DataLoader
starts at worker 0, so its worker ``i`` plays the part of worker ``(i + b) mod W``. :class:`ShardStream` gets the
number of samples its rank consumed (``start``); every slot serves exactly ``M`` per epoch, so whole epochs are skipped
by arithmetic and the rest of the current one is read through without decoding it.

Damaged data does not stop a run for one flipped bit: a sample that does not match its digest or cannot be decoded
(and the rest of a shard whose tar cannot be read) is skipped, and its place is taken by the slot's previous good clip
(so the slot still serves ``M`` per epoch, in step with the others, and a resume lands exactly); the first few skips
are warnings naming the shard, later ones are counted. The stream stops with an error naming the shards when a slot
finds no usable sample in what is left of an epoch, or after ``max_consecutive_skips`` damaged samples in a row. A
sample that decodes but does not fit the run (say, another clip size) stops it at once, naming the shard and sample.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from levitor.data.records import CorruptShardError, check_sample, finished_shards, iter_tar_samples, read_stats

log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 256  # samples each DataLoader worker holds for shuffling

Transform = Callable[[dict[str, Any]], Any]
"""Turns a raw sample (member name -> bytes) into a training item; applied only to samples that are used."""


class ShardDataError(ValueError):
    """A sample that decodes but cannot be used by this run; the message names its shard and key."""


# ------------------------------------------------------------------------------------------ the plan (pure)
def epoch_order(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The order in which epoch ``epoch`` lays the shards end to end."""
    return np.random.default_rng(int(seed) + int(epoch)).permutation(num_shards).tolist()


def clips_per_slot(total: int, slots: int, batch_size: int, grad_accum: int = 1, num_workers: int = 0) -> int:
    """M, the clips each slot serves per epoch: as many as ``total`` allows, a multiple of ``batch_size * q`` with
    q = grad_accum / gcd(grad_accum, workers). Worker w's k-th batch is the rank's batch ``k * W + w``, so every
    worker's epoch ends after ``M / batch_size * W`` batches of the rank, a multiple of grad_accum: a step's end."""
    unit = batch_size * (grad_accum // math.gcd(grad_accum, max(1, num_workers)))
    return total // (slots * unit) * unit


def slot_share(counts: list[int], order: list[int], slot: int, per_slot: int) -> list[tuple[int, int, int]]:
    """(shard, first, stop): the samples ``first .. stop - 1`` of each shard that hold slot ``slot``'s clips in an
    epoch whose shard order is ``order``, in that order."""
    lo, hi = slot * per_slot, (slot + 1) * per_slot
    share, pos = [], 0
    for s in order:
        first, stop = max(lo, pos), min(hi, pos + counts[s])
        if first < stop:
            share.append((s, first - pos, stop - pos))
        pos += counts[s]
        if pos >= hi:
            break
    return share


def batch_source(batch: int, num_workers: int) -> tuple[int, int]:
    """(worker, k): a DataLoader with ``num_workers`` hands out its ``batch``-th batch (from 0) as worker's k-th."""
    workers = max(1, num_workers)
    return batch % workers, batch // workers


def _slot_seed(seed: int, epoch: int, slot: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) * 1_009 + int(slot)


# ---------------------------------------------------------------------------------------- damaged data
class SkipLog:
    """Damaged samples skipped by one process: the first few are warnings one by one, later ones are counted (a
    warning at 10, 100, 1000, ...), and ``max_in_a_row`` of them in a row stop the stream (0: never)."""

    FIRST = 3           # warnings printed one by one; a broken data set would otherwise print one per sample

    def __init__(self, max_in_a_row: int = 0) -> None:
        self.max_in_a_row = max_in_a_row
        self.total = self.in_a_row = 0
        self.shards: dict[str, int] = {}      # shard -> samples skipped from it

    def add(self, err: CorruptShardError) -> None:
        self.total += 1
        self.in_a_row += 1
        shard = err.shard or "?"
        self.shards[shard] = self.shards.get(shard, 0) + 1
        if self.total <= self.FIRST:
            log.warning("skipped damaged training data (%d so far in this process): %s", self.total, err)
        elif math.log10(self.total).is_integer():
            log.warning("skipped %d damaged samples so far in this process, from %d shard(s) (%s); only the first %d "
                        "are printed one by one; the latest: %s", self.total, len(self.shards), self.shard_names(),
                        self.FIRST, err)
        if self.max_in_a_row and self.in_a_row >= self.max_in_a_row:
            raise CorruptShardError(
                f"stopped after {self.in_a_row} damaged samples in a row (max_consecutive_skips: {self.max_in_a_row}) "
                f"from {len(self.shards)} shard(s): {self.shard_names()}; the data is broken, not a bit here and "
                f"there (the latest: {err}); or raise max_consecutive_skips", shard=err.shard)

    def good(self) -> None:
        self.in_a_row = 0

    def shard_names(self, most: int = 3) -> str:
        names = sorted(self.shards, key=self.shards.get, reverse=True)
        return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _checked(sample: dict[str, Any]) -> dict[str, Any] | CorruptShardError:
    try:
        check_sample(sample)
    except CorruptShardError as err:
        return err
    return sample


# ------------------------------------------------------------------------------------------ the stream
class ShardStream(torch.utils.data.IterableDataset):
    """An endless, resumable stream of the samples of finished shards for one rank.

    root: a precompute output folder (or a folder of shards). start: samples this rank has already consumed
    (``step * batch_size * grad_accum``); batch_size, grad_accum and num_workers: those of the run and of the
    DataLoader that will read this (they decide which worker delivered which batch). shuffle_buffer: samples held for
    shuffling per worker (0: the shard order only). max_consecutive_skips: damaged samples in a row that stop the
    stream (0: never).
    """

    def __init__(self, root: str | Path, transform: Transform, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle_buffer: int = SHUFFLE_BUFFER, start: int = 0, batch_size: int = 1, num_workers: int = 0,
                 grad_accum: int = 1, max_consecutive_skips: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if shuffle_buffer < 0 or start < 0 or batch_size < 1 or num_workers < 0 or grad_accum < 1:
            raise ValueError(f"need shuffle_buffer >= 0, start >= 0, batch_size >= 1, num_workers >= 0, grad_accum >= "
                             f"1; got {shuffle_buffer}, {start}, {batch_size}, {num_workers}, {grad_accum}")
        self.shards = [str(p) for p in finished_shards(root, warn=True)]
        if not self.shards:
            raise FileNotFoundError(f"{root} holds no finished shards (shards/*.tar with their .stats.json); run "
                                    "`levitor precompute` (or `levitor precompute-synthetic`) there first")
        self.counts = [int(read_stats(Path(p))["samples"]) for p in self.shards]
        self.transform, self.rank, self.world_size, self.seed = transform, rank, world_size, seed
        self.shuffle_buffer, self.start, self.batch_size, self.num_workers = shuffle_buffer, start, batch_size, \
            num_workers
        self.per_slot = clips_per_slot(sum(self.counts), self.num_slots, batch_size, grad_accum, num_workers)
        if self.per_slot == 0:
            raise ValueError(f"the shards in {root} hold {sum(self.counts)} clips, too few for {world_size} rank(s) x "
                             f"{max(1, num_workers)} DataLoader worker(s) x batch_size {batch_size} (with grad_accum "
                             f"{grad_accum}): each worker needs a whole step's clips; precompute more clips, or use "
                             "fewer ranks or num_workers")
        self.skips = SkipLog(max_consecutive_skips)      # per process: each DataLoader worker has its own copy

    @property
    def num_slots(self) -> int:
        return self.world_size * max(1, self.num_workers)

    @property
    def skipped(self) -> int:
        """Damaged samples this process skipped."""
        return self.skips.total

    def consumed_by_worker(self, worker: int) -> int:
        """Samples worker ``worker`` of this rank has delivered once the rank consumed ``start`` samples."""
        workers = max(1, self.num_workers)
        batches = self.start // self.batch_size
        mine = (batches - worker + workers - 1) // workers if batches > worker else 0
        return mine * self.batch_size

    def _entries(self, epoch: int, slot: int) -> Iterator[dict[str, Any] | CorruptShardError]:
        """The slot's raw samples of an epoch in shard order; a damaged one keeps its place as its error."""
        order = epoch_order(len(self.shards), self.seed, epoch)
        for s, first, stop in slot_share(self.counts, order, slot, self.per_slot):
            i = 0
            try:
                for sample in iter_tar_samples(self.shards[s], expected=self.counts[s]):
                    if i >= stop:
                        break
                    if i >= first:
                        yield _checked(sample)
                    i += 1
            except CorruptShardError as err:           # the rest of that shard is unreadable
                yield from [err] * (stop - max(i, first))

    def _item(self, entry: dict[str, Any] | CorruptShardError) -> Any:
        """The training item of a raw sample, or the CorruptShardError of a damaged one."""
        if isinstance(entry, CorruptShardError):
            return entry
        try:
            return self.transform(entry)
        except CorruptShardError as err:            # undecodable (records written before digests)
            return err
        except (ValueError, TypeError, KeyError, IndexError, OSError) as err:
            raise ShardDataError(f"shard {entry.get('__url__', '?')}, sample {entry.get('__key__', '?')!r}: "
                                 f"{' '.join(str(err).split())}") from err

    def _epoch(self, epoch: int, slot: int, skip: int) -> Iterator[Any]:
        """Exactly ``per_slot - skip`` items: the slot's clips of ``epoch`` after its first ``skip``, shuffled."""
        import webdataset as wds

        entries: Iterator = self._entries(epoch, slot)
        if self.shuffle_buffer > 1:
            rng = random.Random(_slot_seed(self.seed, epoch, slot))
            entries = wds.shuffle(self.shuffle_buffer, initial=min(self.shuffle_buffer, 64), rng=rng)(entries)
        last, owed = None, 0
        for n, entry in enumerate(entries):
            if n < skip:
                continue
            item = self._item(entry)
            if isinstance(item, CorruptShardError):
                self.skips.add(item)
                if last is None:
                    owed += 1                   # served once a good clip comes
                else:
                    yield last
                continue
            self.skips.good()
            for _ in range(owed + 1):
                yield item
            last, owed = item, 0
        if owed:
            raise CorruptShardError(f"slot {slot} of {self.num_slots} (rank {self.rank}) found no usable sample in "
                                    f"what was left of epoch {epoch}: its shards {self.skips.shard_names()} are "
                                    "damaged (see the warnings above); recompute them")

    def slot_stream(self, slot: int, skip: int = 0) -> Iterator[Any]:
        """The items of one slot from position ``skip`` on, endless (epochs of ``per_slot`` one after another)."""
        epoch, skip = divmod(skip, self.per_slot)
        while True:
            yield from self._epoch(epoch, slot, skip)
            epoch, skip = epoch + 1, 0

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and info.num_workers != max(1, self.num_workers):
            raise ValueError(f"ShardStream was made for {self.num_workers} DataLoader workers, the DataLoader has "
                             f"{info.num_workers}; pass the same number to both")
        # a resumed DataLoader starts its turns at worker 0, but the run's next batch is worker (b mod W)'s turn:
        # worker 0 of this loader plays that part, and the others follow
        workers = max(1, self.num_workers)
        part = (worker + self.start // self.batch_size) % workers
        return self.slot_stream(self.rank * workers + part, skip=self.consumed_by_worker(part))
