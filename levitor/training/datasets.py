"""Training data: clips with their control videos, as ``{"frames", "control"}`` items for the training loop: the
synthetic world on the fly, or the record shards of ``levitor precompute`` streamed (:mod:`levitor.data.shards`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from levitor.training.config import PRESETS, TrainConfig, synthetic_config


def control_video(instance: np.ndarray, depth: np.ndarray, moved_ids, config: TrainConfig) -> torch.Tensor:
    """(F, 3, H, W) raw conditioning video of a clip's instance maps and scene depth, with the config's ablation."""
    from levitor.control.clip_control import clip_control
    from levitor.control.encode import encode

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
        from levitor.data.synthetic import generate_clip

        clip = generate_clip(self.seed_offset + int(i), self.world)
        return {"frames": _frames_tensor(clip.frames),
                "control": control_video(clip.instance, clip.depth, clip.moved_ids, self.config)}


def shard_item(sample: dict, config: TrainConfig) -> dict:
    """A raw shard sample -> ``{"frames", "control", "name"}``: the stored control signal (no K-means again), with
    the config's ablation and stamp radius; ``center_point`` re-runs the shared clip -> control function on the
    stored instance and depth maps with the record's own K-means settings plus the single-point rule."""
    from levitor.control.encode import encode
    from levitor.data.records import decode_sample

    rec = decode_sample(sample, load_maps=config.control == "center_point")
    if rec.frames is None:
        raise ValueError(f"record {rec.name!r} was precomputed with frames 'none'; training needs frames: "
                         "precompute again with --frames jpeg (or raw)")
    got = (rec.meta["num_frames"], rec.meta["height"], rec.meta["width"])
    if got != (config.num_frames, config.height, config.width):
        raise ValueError(f"the shards in {config.data_root} hold {got[0]}x{got[1]}x{got[2]} clips (frames x height x "
                         f"width) but the config asks for {config.num_frames}x{config.height}x{config.width}: set "
                         "num_frames/height/width to the shards' size, or precompute at the config's size")
    signal = rec.signal
    if config.control == "no_depth":
        signal = signal.without_depth()
    elif config.control == "no_instance":
        signal = signal.without_instance()
    elif config.control == "center_point":
        from levitor.control.clip_control import ClipControl, clip_control
        from levitor.control.krule import KRule
        from levitor.depth import depth_from_disparity

        made = rec.meta.get("control", {})
        params = ClipControl(rule=KRule(lam=made.get("lam", KRule().lam), k_max=made.get("k_max", KRule().k_max)),
                             sample_stride=made.get("sample_stride", config.kmeans_stride),
                             init=made.get("init", "warm"), ablation="center_point")
        signal = clip_control(rec.instance_map.astype(np.int64), depth_from_disparity(rec.disparity), params,
                              moved_ids=rec.meta.get("moved_ids", ()), ids=rec.meta.get("object_ids"))
    return {"frames": _frames_tensor(rec.frames), "name": rec.name,
            "control": encode(signal, config.height, config.width, radius=config.control_radius)}


def check_data(config: TrainConfig) -> None:
    """Fail before any model is built when the data cannot serve this config: no data_root, no finished shards
    there, or shards of another clip size (read from the first sample's metadata only)."""
    if config.data != "shards":
        return
    from levitor.data.records import finished_shards, iter_tar_samples

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
    first = next(iter(iter_tar_samples(tars[0])), None)
    if first is not None and "json" in first:
        meta = json.loads(first["json"])
        got = (meta.get("num_frames"), meta.get("height"), meta.get("width"))
        if got != (config.num_frames, config.height, config.width):
            raise ValueError(f"the shards in {config.data_root} hold {got[0]}x{got[1]}x{got[2]} clips (frames x "
                             f"height x width) but the config asks for {config.num_frames}x{config.height}x"
                             f"{config.width}: set num_frames/height/width to the shards' size, or precompute at "
                             "the config's size")


def make_dataset(config: TrainConfig, rank: int = 0, world_size: int = 1, start: int = 0):
    """The run's data: the synthetic world (map-style, for a sampler) or a :class:`~levitor.data.shards.ShardStream`
    of this rank's share of the shards, resumed after ``start`` samples."""
    if config.data == "synthetic":
        return SyntheticControlDataset(config)
    if not config.data_root:
        raise ValueError("data 'shards' needs data_root: the folder written by `levitor precompute` or "
                         "`levitor precompute-synthetic`")
    from functools import partial

    from levitor.data.shards import ShardStream

    return ShardStream(config.data_root, partial(shard_item, config=config), rank=rank, world_size=world_size,
                       seed=config.seed, shuffle_buffer=config.shuffle_buffer, start=start,
                       batch_size=config.batch_size, num_workers=config.num_workers)


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
    from levitor.control.clip_control import clip_control
    from levitor.data.records import SHARD_DIR, ClipRecord, encode_sample, write_shard, write_stats
    from levitor.data.synthetic import generate_clip

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
                    "control": {"lam": params.rule.lam, "k_max": params.rule.k_max,
                                "sample_stride": params.sample_stride, "init": params.init}}
            rec = ClipRecord(frames=clip.frames, disparity=clip.disparity_u8(), instance_map=clip.instance,
                             signal=signal, meta=meta)
            samples.append(encode_sample(rec, frames="raw"))
        tar = out / SHARD_DIR / f"shard-{start // shard_size:06d}.tar"
        size = write_shard(tar, samples)
        write_stats(tar, {"shard": tar.stem, "samples": len(samples), "bytes": size, "videos": len(samples),
                          "videos_failed": 0, "clips_failed": 0, "empty": 0, "failures": []})
    (out / "synthetic_config.json").write_text(json.dumps(asdict(world)))
    return out
