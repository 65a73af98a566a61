"""Training data: clips with their control videos, as ``{"frames", "control"}`` items for the training loop."""

from __future__ import annotations

import dataclasses
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


class CacheDataset(torch.utils.data.Dataset):
    """Clips written by :func:`precompute_synthetic`: ``shard_*.pt`` with uint8 frames and full control signals;
    the control video (with the config's ablation and radius) is drawn on the fly from the cached points."""

    def __init__(self, config: TrainConfig):
        if not config.data_root:
            raise ValueError("data 'cache' needs data_root: the folder written by `levitor precompute-synthetic`")
        self.config = config
        self.shards = sorted(Path(config.data_root).glob("shard_*.pt"))
        if not self.shards:
            raise FileNotFoundError(f"no shard_*.pt in {config.data_root}; run `levitor precompute-synthetic` first")
        self.index = []
        for s, path in enumerate(self.shards):
            n = torch.load(path, map_location="cpu", weights_only=False)["frames"].shape[0]
            self.index += [(s, j) for j in range(n)]
        self._loaded: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        from levitor.control.encode import encode
        from levitor.control.signal import ControlSignal

        s, j = self.index[int(i) % len(self.index)]
        if self._loaded is None or self._loaded[0] != s:
            self._loaded = (s, torch.load(self.shards[s], map_location="cpu", weights_only=False))
        shard = self._loaded[1]
        key = {"full": "signal", "no_depth": "signal", "no_instance": "signal", "center_point": "signal_center"}
        sig: ControlSignal = shard[key[self.config.control]][j]
        if self.config.control == "no_depth":
            sig = sig.without_depth()
        elif self.config.control == "no_instance":
            sig = sig.without_instance()
        frames = shard["frames"][j]
        return {"frames": _frames_tensor(frames.numpy()),
                "control": encode(sig, frames.shape[1], frames.shape[2], radius=self.config.control_radius)}


class VideoControlDataset(torch.utils.data.Dataset):
    """Real clips (SA-V or DAVIS readers) with depth from ``depth_root`` and control computed on the fly.

    The depth cache holds one (F, H, W) uint8 disparity array per clip, ``<depth_root>/<clip.name>.npy``, at
    the training size (DepthAnythingV2's output min-max normalised, :func:`levitor.depth.disparity_u8_from_relative`).
    """

    def __init__(self, config: TrainConfig):
        if not config.data_root or not config.depth_root:
            raise ValueError(f"data {config.data!r} needs data_root (the data set) and depth_root (its depth cache)")
        from levitor.data.sampling import ClipSampling

        sampling = ClipSampling(num_frames=config.num_frames, starts="all")
        if config.data == "davis":
            from levitor.data.davis import DavisDataset

            reader = DavisDataset(config.data_root, split="train", sampling=sampling)
        else:
            from levitor.data.sav import SavDataset

            reader = SavDataset(config.data_root, sampling=sampling)
        self.config = config
        self.clips = list(reader.clips())

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        from levitor.depth import depth_from_disparity

        clip = self.clips[int(i) % len(self.clips)].center_crop_resize(self.config.height, self.config.width)
        disparity = np.load(Path(self.config.depth_root) / f"{clip.name}.npy")
        instance = clip.masks if clip.masks.ndim == 3 else _instance_map(clip.masks, clip.object_ids)
        return {"frames": _frames_tensor(clip.frames),
                "control": control_video(instance, depth_from_disparity(disparity), (), self.config)}


def _instance_map(masks: np.ndarray, ids: np.ndarray) -> np.ndarray:
    out = np.zeros(masks.shape[:1] + masks.shape[2:], dtype=np.int64)
    for n, i in enumerate(ids):
        out[masks[:, n]] = i
    return out


def make_dataset(config: TrainConfig) -> torch.utils.data.Dataset:
    if config.data == "synthetic":
        return SyntheticControlDataset(config)
    if config.data == "cache":
        return CacheDataset(config)
    return VideoControlDataset(config)


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
    """Render ``num_clips`` synthetic clips with their control signals (full and single-centre-point) into
    ``out/shard_*.pt``, for ``data: cache``. Frames are uint8; control videos are drawn at load time."""
    from levitor.control.clip_control import clip_control
    from levitor.data.synthetic import generate_clip

    config = config or PRESETS["mini"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = synthetic_config(config)
    for start in range(0, num_clips, shard_size):
        frames, signals, centres = [], [], []
        for seed in range(start, min(start + shard_size, num_clips)):
            clip = generate_clip(seed_offset + seed, world)
            frames.append(torch.from_numpy(clip.frames))
            for ablation, out_list in (("full", signals), ("center_point", centres)):
                params = dataclasses.replace(config.clip_control(), ablation=ablation)
                out_list.append(clip_control(clip.instance, clip.depth, params, moved_ids=clip.moved_ids))
        torch.save({"frames": torch.stack(frames), "signal": signals, "signal_center": centres},
                   out / f"shard_{start // shard_size:05d}.pt")
    (out / "synthetic_config.json").write_text(json.dumps(asdict(world)))
    return out
