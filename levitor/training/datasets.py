"""Training data: clips with their control videos, as ``{"frames", "control"}`` items for the training loop: the
synthetic world on the fly, or the record shards of ``levitor precompute`` streamed (:mod:`levitor.data.shards`)."""

from __future__ import annotations

import json
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from levitor.control.clip_control import ClipControl, clip_control
from levitor.control.encode import encode
from levitor.data.records import (
    SHARD_DIR,
    ClipRecord,
    CorruptShardError,
    decode_sample,
    encode_sample,
    finished_shards,
    first_meta,
    read_stats,
    stats_problem,
    write_shard,
    write_stats,
)
from levitor.data.shards import ShardStream
from levitor.data.synthetic import generate_clip
from levitor.depth import depth_from_disparity
from levitor.training.config import PRESETS, TrainConfig, synthetic_config


def control_video(instance: np.ndarray, depth: np.ndarray, moved_ids, config: TrainConfig) -> torch.Tensor:
    """(F, 3, H, W) raw conditioning video of a clip's instance maps and scene depth, with the config's ablation."""

    signal = clip_control(instance, depth, config.clip_control(), moved_ids=moved_ids)
    return encode(signal, instance.shape[-2], instance.shape[-1], radius=config.control_radius)


def _frames_tensor(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class SyntheticControlDataset(torch.utils.data.Dataset):
    """Item i: synthetic clip of seed ``seed_offset + i`` with its control video, computed on the fly."""

    def __init__(self, config: TrainConfig, length: int = 10**9, seed_offset: int = 0):
        self.config, self.length, self.seed_offset = config, length, seed_offset
        self.world = synthetic_config(config)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        clip = generate_clip(self.seed_offset + int(i), self.world)
        return {"frames": _frames_tensor(clip.frames),
                "control": control_video(clip.instance, clip.depth, clip.moved_ids, self.config)}


def shard_item(sample: dict, config: TrainConfig) -> dict:
    """A raw shard sample -> ``{"frames", "control", "name"}``: the stored control signal (no K-means again), with
    the config's ablation and stamp radius; ``center_point`` re-runs the shared clip -> control function on the
    stored instance and depth maps with the record's own K-means settings plus the single-point rule."""

    rec = decode_sample(sample, load_maps=config.control == "center_point")
    if rec.frames is None:
        raise ValueError("it was precomputed with frames 'none'; training needs frames: precompute again with "
                         "--frames jpeg (or raw)")
    got = (rec.meta["num_frames"], rec.meta["height"], rec.meta["width"])
    if got != (config.num_frames, config.height, config.width):
        raise ValueError(size_mismatch(f"it is a {_size(got)} clip", config))
    signal = rec.signal
    if config.control == "no_depth":
        signal = signal.without_depth()
    elif config.control == "no_instance":
        signal = signal.without_instance()
    elif config.control == "center_point":
        params = ClipControl.from_meta(rec.meta.get("control", {}), "center_point", config.kmeans_stride)
        signal = clip_control(rec.instance_map.astype(np.int64), depth_from_disparity(rec.disparity), params,
                              moved_ids=rec.meta.get("moved_ids", ()), ids=rec.meta.get("object_ids"))
    return {"frames": _frames_tensor(rec.frames), "name": rec.name,
            "control": encode(signal, config.height, config.width, radius=config.control_radius)}


def _size(size: tuple) -> str:
    return "x".join(str(v) for v in size)


def size_mismatch(what: str, config: TrainConfig) -> str:
    return (f"{what} (frames x height x width) but the config asks for {config.num_frames}x{config.height}x"
            f"{config.width}: set num_frames/height/width to the shards' size, or precompute at the config's size")


def check_data(config: TrainConfig) -> None:
    """Fail before any model is built when the data cannot serve this config: no data_root, no finished shards
    there, or a shard whose stats or first record say it cannot (no sample count, another clip size, no frames).

    Every shard is checked (its first record's metadata is found by seeking over the tar headers), so a folder that
    mixes sizes (a second ``precompute-synthetic`` into it with another config rewrites some shards and leaves the
    rest) stops here, not in a DataLoader worker hours later."""
    if config.data != "shards":
        return
    if not config.data_root:
        raise ValueError("data 'shards' needs data_root: the folder written by `levitor precompute` or "
                         "`levitor precompute-synthetic`")
    if not Path(config.data_root).is_dir():
        raise FileNotFoundError(f"data_root {config.data_root} is not a folder; run `levitor precompute ... --out "
                                f"{config.data_root}` (or `levitor precompute-synthetic {config.data_root}`) first")
    tars = finished_shards(config.data_root, warn=True)
    if not tars:
        raise FileNotFoundError(f"{config.data_root} holds no finished shards (shards/*.tar with their .stats.json); "
                                "run `levitor precompute` (or `levitor precompute-synthetic`) there first")
    with ThreadPoolExecutor(16) as pool:        # header reads: on a shared file system latency, not bandwidth
        kinds = list(pool.map(_shard_kind, tars))
    want = (config.num_frames, config.height, config.width)
    odd = [(t, k) for t, k in zip(tars, kinds) if k not in (want, "empty")]
    if not odd:
        if all(k == "empty" for k in kinds):
            raise ValueError(f"the shards in {config.data_root} hold no samples (every clip failed or had no "
                             "object?); see their .stats.json files")
        return
    tar, kind = odd[0]
    if isinstance(kind, str):                   # a problem that is not a size
        raise ValueError(f"shard {tar}: {kind}")
    by_size: dict[tuple, list[Path]] = {}
    for t, k in odd:
        by_size.setdefault(k, []).append(t)
    if len(odd) == len(tars) and len(by_size) == 1:
        raise ValueError(size_mismatch(f"the shards in {config.data_root} hold {_size(kind)} clips", config))
    sizes = "; ".join(f"{len(ts)} hold {_size(k)} clips ({', '.join(t.name for t in ts[:3])}"
                      f"{' ...' if len(ts) > 3 else ''})" for k, ts in by_size.items())
    raise ValueError(f"the shards in {config.data_root} mix clip sizes: of {len(tars)} shards {sizes}; "
                     + size_mismatch("the others hold the config's size", config)
                     + " (a second precompute into one folder with another size rewrites only some shards: remove "
                     "the others)")


def _shard_kind(tar: Path) -> tuple | str:
    """(frames, height, width) of a shard's clips, "empty", or what is wrong with it (stats or first record)."""
    problem = stats_problem(tar)
    if problem:
        return problem
    if read_stats(tar)["samples"] == 0:
        return "empty"
    try:
        meta = first_meta(tar)
    except CorruptShardError as err:
        return str(err)
    if not isinstance(meta, dict):
        return "its first sample has no metadata (.json): it is not a levitor record; recompute it"
    if meta.get("frames") == "none":
        return ("it was precomputed with frames 'none'; training needs frames: precompute again with --frames jpeg "
                "(or raw)")
    try:
        return (int(meta["num_frames"]), int(meta["height"]), int(meta["width"]))
    except (KeyError, TypeError, ValueError):
        return "its first record's metadata has no clip size (num_frames, height, width); recompute it"


def make_dataset(config: TrainConfig, rank: int = 0, world_size: int = 1, start: int = 0):
    """The run's data: the synthetic world (map-style, for a sampler) or a :class:`~levitor.data.shards.ShardStream`
    of this rank's share of the shards, resumed after ``start`` samples."""
    if config.data == "synthetic":
        return SyntheticControlDataset(config)
    if not config.data_root:
        raise ValueError("data 'shards' needs data_root: the folder written by `levitor precompute` or "
                         "`levitor precompute-synthetic`")
    from functools import partial

    return ShardStream(config.data_root, partial(shard_item, config=config), rank=rank, world_size=world_size,
                       seed=config.seed, shuffle_buffer=config.shuffle_buffer, start=start,
                       batch_size=config.batch_size, num_workers=config.num_workers, grad_accum=config.grad_accum,
                       max_consecutive_skips=config.max_consecutive_skips)


def make_loader(config: TrainConfig, rank: int = 0, world_size: int = 1, start: int = 0):
    """This rank's DataLoader, resumed after ``start`` samples of this rank: shards are split by rank and worker and
    resumed inside the stream; the synthetic world is read by a sampler from the run's global position (accelerate
    splits its batches over the ranks)."""
    dataset = make_dataset(config, rank, world_size, start)
    common = dict(batch_size=config.batch_size, num_workers=config.num_workers,
                  persistent_workers=config.num_workers > 0, worker_init_fn=ignore_stop_signals)
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return torch.utils.data.DataLoader(dataset, **common)
    sampler = ResumableSampler(len(dataset), start * world_size, config.seed, shuffle=False)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, drop_last=True, **common)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT: SLURM signals every process of a job step and Ctrl-C the whole
    process group, and a worker that died of it would fail the rank's next batch before its checkpoint. The rank
    stops them itself (:class:`Batches`)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DataWorkerError(ValueError):
    """A DataLoader worker stopped on an error; the message is its cause in one line (naming the shard)."""


class Batches:
    """``with Batches(loader) as batches: next(batches)``: a run's batches.

    A worker's error comes out as one :class:`DataWorkerError` line (torch's carries the worker's whole traceback),
    and leaving the block, error or not, stops the workers: they ignore SIGTERM (:func:`ignore_stop_signals`), so a
    run that failed would otherwise wait for them at interpreter exit, for ever."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self._batches = None

    def __enter__(self) -> Batches:
        self._batches = iter(self.loader)
        return self

    def __iter__(self) -> Batches:
        return self

    def __next__(self):
        try:
            return next(self._batches)
        except Exception as err:
            line = worker_error(err)
            if line is None:
                raise
            raise DataWorkerError(line) from None

    def __exit__(self, *exc) -> None:
        close = getattr(self._batches, "close", None)     # accelerate's loaders iterate with a generator
        if close is not None:
            close()
        stop_workers(self.loader)


WORKER_JOIN_S = 5.0     # how long a worker that was told to stop gets before it is killed


def stop_workers(loader) -> None:
    """End the persistent DataLoader workers of ``loader`` now: asked first, killed if they do not go (a worker
    stuck in a read ignores SIGTERM). torch has no public call for this: its worker iterator's own shutdown is used."""
    base = getattr(loader, "base_dataloader", loader)       # accelerate wraps the DataLoader
    workers_iter = getattr(base, "_iterator", None)
    shutdown = getattr(workers_iter, "_shutdown_workers", None)
    if shutdown is None:
        return
    workers = list(getattr(workers_iter, "_workers", []))
    shutdown()
    for w in workers:
        if w.is_alive():
            w.kill()
            w.join(WORKER_JOIN_S)
    base._iterator = None


def worker_error(err: BaseException) -> str | None:
    """The one-line cause of a DataLoader worker's error (None: ``err`` is not one): torch re-raises it in the main
    process as "Caught X in DataLoader worker process N" followed by the worker's traceback."""
    text = str(err)
    caught = re.match(r"Caught (\w+) in DataLoader worker process (\d+)", text)
    if caught is None:
        if re.match(r"DataLoader worker \(pid", text):       # killed (out of memory?) or exited
            return f"{' '.join(text.split())} (out of memory? see the system log, e.g. dmesg)"
        return None
    cause = []
    for line in reversed(text.rstrip().splitlines()):       # the traceback's last lines: "Type: message"
        if not line.strip() or line.startswith((" ", "\t", "Traceback", "Original Traceback")):
            break
        cause.append(line)
    message = " ".join(" ".join(reversed(cause)).split())
    message = re.sub(r"^[\w.]*?(\w+(Error|Exception)): ", r"\1: ", message)   # the class without its module
    return f"DataLoader worker {caught.group(2)}: {message or caught.group(1)}"


class ResumableSampler(torch.utils.data.Sampler):
    """Indices ``start, start + 1, ...`` of a seeded permutation per epoch, so a resumed run sees new data."""

    def __init__(self, length: int, start: int, seed: int, shuffle: bool):
        self.length, self.start, self.seed, self.shuffle = length, start, seed, shuffle

    def __iter__(self):
        i = self.start
        while True:
            epoch, pos = divmod(i, self.length)
            if self.shuffle and self.length < 10**8:
                perm = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
                yield int(perm[pos])
            else:
                yield pos
            i += 1

    def __len__(self) -> int:
        return self.length


def precompute_synthetic(out: str | Path, num_clips: int, config: TrainConfig | None = None,
                         shard_size: int = 500, seed_offset: int = 0) -> Path:
    """Render ``num_clips`` synthetic clips with their control signals into WebDataset shards in the record format
    of ``levitor precompute`` (``out/shards/*.tar``, lossless frames), for ``data: shards``."""

    config = config or PRESETS["mini"]
    out = Path(out)
    world = synthetic_config(config)
    params = config.clip_control()
    for start in range(0, num_clips, shard_size):
        samples = []
        for seed in range(start, min(start + shard_size, num_clips)):
            clip = generate_clip(seed_offset + seed, world)
            signal = clip_control(clip.instance, clip.depth, params, moved_ids=clip.moved_ids)
            meta = {"name": f"synthetic_{seed_offset + seed:08d}", "video": f"synthetic_{seed_offset + seed:08d}",
                    "source": "synthetic", "fps": 6.0, "frame_indices": list(range(clip.num_frames)),
                    "object_ids": clip.object_ids, "moved_ids": clip.moved_ids,
                    "control": params.to_meta()}
            rec = ClipRecord(frames=clip.frames, disparity=clip.disparity_u8(), instance_map=clip.instance,
                             signal=signal, meta=meta)
            samples.append(encode_sample(rec, frames="raw"))
        tar = out / SHARD_DIR / f"shard-{start // shard_size:06d}.tar"
        size = write_shard(tar, samples)
        write_stats(tar, {"shard": tar.stem, "samples": len(samples), "bytes": size, "videos": len(samples),
                          "videos_failed": 0, "clips_failed": 0, "empty": 0, "failures": []})
    (out / "synthetic_config.json").write_text(json.dumps(asdict(world)))
    return out
