"""Train the LeviTor ControlNet with accelerate: one CPU, one GPU, or many GPUs on many nodes.

    levitor train configs/paper.yaml                              # one process
    accelerate launch --multi_gpu --num_processes 8 -m levitor.train configs/paper.yaml
    # a cluster, per node (2 nodes x 8 GPUs; node rank 0 is the main node):
    accelerate launch --num_machines 2 --num_processes 16 --machine_rank $NODE_RANK \\
        --main_process_ip $MASTER_ADDR --main_process_port 29500 --mixed_precision fp16 \\
        -m levitor.train configs/paper.yaml

What trains (EDM / v-prediction, as SVD): a clip's frames are encoded by the VAE; the first frame (with
``noise_aug_strength`` noise) is the image condition, concatenated to every frame's noisy latents, and its CLIP
embedding the cross-attention context; noise levels are log-normal (``p_mean``, ``p_std``); the loss is SVD's
EDM-weighted error of the denoised latents. The ControlNet sees the control video of the clip (K-means points
of every object mask, instance ids, depth values: :mod:`levitor.control`), computed on the fly from masks and
depth, or read from a cache made by :func:`precompute_synthetic`.

Two presets (:data:`PRESETS`): ``paper`` (real SVD-xt, UNet frozen, ControlNet from the UNet's encoder, the
paper's hyper-parameters) and ``mini`` (the small model of :mod:`levitor.mini`, UNet and ControlNet trained
from scratch on the synthetic world on a CPU). Table 2's ablations: ``control: no_depth | no_instance |
center_point``.

A run folder holds ``config.json``, ``log.jsonl`` (one line per ``log_every`` steps) and its picture
``loss_curve.png`` (redrawn at each checkpoint), ``checkpoints/step_N/``
(accelerate state: models, optimizer, scheduler, RNG, EMA, ``progress.json``), ``export/`` (inference weights
of the latest checkpoint), ``samples/`` and TensorBoard logs. Running the same config again resumes from the
latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

SVD_XT = "stabilityai/stable-video-diffusion-img2vid-xt"
CONTROLS = ("full", "no_depth", "no_instance", "center_point")
EVAL_SEED_OFFSET = 1_000_000_000  # held-out synthetic clips use seeds from here on; training seeds stay below


@dataclass
class TrainConfig:
    """Everything a run depends on. Load with :func:`load_config`; unknown keys are errors."""

    # --- model
    model: str = "svd"                  # "svd": pretrained SVD (UNet frozen); "mini": levitor.mini from scratch;
                                        # "tiny": levitor.testing.tiny random models (tests)
    pretrained: str = SVD_XT            # SVD base (hub id or folder) for model "svd"
    controlnet_init: str | None = None  # start the ControlNet from these weights instead of the UNet's encoder
    init_from: str | None = None        # model "mini": start from exported mini weights (unet/, controlnet/,
                                        #   image_encoder/; e.g. levitor/assets/mini) instead of from scratch
    train_unet: bool = False            # the paper trains only the ControlNet; the mini model has no pretrained UNet
    motion_loss_weight: float = 0.0     # > 0: the loss counts (1 + this) times where a frame differs from the
                                        #   first (see motion_mask); 0 is SVD's plain loss, as in the paper
    mini_channels: tuple[int, ...] = (32, 64)  # mini UNet widths (multiples of 32: GroupNorm)
    mini_layers_per_block: int = 1
    mini_patch_size: int = 4            # PatchVAE factor: latents are H/4 x W/4 x 48
    mini_sigma_max: float = 80.0        # the mini model's sampler starts here (SVD's 700 is for big latents)
    mini_sigma_min: float = 0.002       # ... and returns its denoised estimate at this noise level
    gradient_checkpointing: bool = False

    # --- data
    data: str = "sav"                   # "synthetic", "cache" (precompute_synthetic output), "sav", "davis"
    data_root: str | None = None        # SA-V / DAVIS root, or the cache folder
    depth_root: str | None = None       # real data: <depth_root>/<clip name>.npy, (F, H, W) uint8 disparity
    synthetic: dict = field(default_factory=dict)  # SyntheticConfig overrides (height/width/frames come from here)
    height: int = 512                   # the release's demo size (portrait 288x512)
    width: int = 288
    num_frames: int = 16                # the official checkpoint was trained at 16 frames
    num_workers: int = 4

    # --- control signal
    control: str = "full"               # full | no_depth | no_instance | center_point (paper Table 2)
    control_radius: int = 10            # the release's gaussian_r; the mini model's 32x32 frames use 2
    kmeans_stride: int = 10             # K-means on every n-th mask pixel (the release: 10); tiny frames need 1

    # --- optimisation (the paper: AdamW, lr 1e-5, batch 16 on 16 A100, 200K iterations)
    lr: float = 1e-5
    batch_size: int = 1                 # per process
    grad_accum: int = 1
    max_steps: int = 200_000            # optimizer steps
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    mixed_precision: str = "fp16"       # "no", "fp16", "bf16" (accelerate)
    p_mean: float = 0.7                 # log-normal noise levels of SVD's fine-tuning
    p_std: float = 1.6
    fps: int = 6                        # conditioned as fps - 1, as SVD
    motion_bucket_id: int = 100
    noise_aug_strength: float = 0.02
    ema: bool = False
    ema_decay: float = 0.999

    # --- bookkeeping
    output_dir: str = "runs/paper"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000        # steps
    checkpoint_minutes: float = 0.0     # also checkpoint after this much wall time (0: off)
    keep_checkpoints: int = 3
    sample_every: int = 1000            # write a sample video every n steps (0: off)
    sample_steps: int = 25
    max_minutes: float = 0.0            # stop (with a checkpoint) after this much wall time in this session (0: off)
    num_threads: int = 0                # torch CPU threads (0: torch's default); 1 is fastest on a loaded CPU

    def __post_init__(self) -> None:
        if self.model not in ("svd", "mini", "tiny"):
            raise ValueError(f"model must be 'svd', 'mini' or 'tiny', got {self.model!r}")
        if self.data not in ("synthetic", "cache", "sav", "davis"):
            raise ValueError(f"data must be 'synthetic', 'cache', 'sav' or 'davis', got {self.data!r}")
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {self.control!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        self.mini_channels = tuple(self.mini_channels)
        self.adam_betas = tuple(self.adam_betas)
        for name in ("height", "width"):
            if getattr(self, name) % 8:
                raise ValueError(f"{name} must be a multiple of 8, got {getattr(self, name)}")


PRESETS = {
    "paper": TrainConfig(),
    "mini": TrainConfig(
        model="mini", train_unet=True, data="synthetic", height=32, width=32, num_frames=8,
        synthetic=dict(min_sprites=1, max_sprites=3, texture=0.3, sprite_size=(0.12, 0.2), camera_pan_prob=0.0,
                       background_instances=True,
                       sprite_disparity=(40.0, 100.0)),
        control_radius=2, kmeans_stride=1, lr=3e-4, batch_size=4, max_steps=100_000, warmup_steps=100,
        weight_decay=0.0, mixed_precision="no", num_workers=0, output_dir="runs/mini", log_every=10,
        checkpoint_every=200, checkpoint_minutes=5.0, sample_every=500, sample_steps=20, num_threads=1,
        ema=True, ema_decay=0.995,
    ),
}


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from a YAML/JSON file (``base: paper|mini`` picks the preset it starts from)."""
    data: dict = {}
    if path is not None:
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    data.update(overrides)
    base = data.pop("base", "paper")
    if base not in PRESETS:
        raise ValueError(f"base must be one of {sorted(PRESETS)}, got {base!r}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {path or 'overrides'}; known keys: {sorted(known)}")
    return dataclasses.replace(PRESETS[base], **data)


# ------------------------------------------------------------------------------------------- data


def control_video(instance: np.ndarray, depth: np.ndarray, moved_ids, config: TrainConfig) -> torch.Tensor:
    """(F, 3, H, W) raw conditioning video of a clip's instance maps and scene depth, with the config's ablation."""
    from levitor.control.encode import encode
    from levitor.control.points import KRule, control_from_masks

    rule = KRule(k_max=1, k_min=1) if config.control == "center_point" else KRule()
    signal = control_from_masks(torch.as_tensor(instance, dtype=torch.int64), torch.as_tensor(depth),
                                moved_ids=moved_ids, rule=rule, sample_stride=config.kmeans_stride)
    if config.control == "no_depth":
        signal = signal.without_depth()
    elif config.control == "no_instance":
        signal = signal.without_instance()
    return encode(signal, instance.shape[-2], instance.shape[-1], radius=config.control_radius)


def synthetic_config(config: TrainConfig):
    from levitor.data.synthetic import SyntheticConfig

    return SyntheticConfig(height=config.height, width=config.width, num_frames=config.num_frames,
                           **config.synthetic)


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


class _ResumableSampler(torch.utils.data.Sampler):
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
    from levitor.control.points import KRule, control_from_masks
    from levitor.data.synthetic import generate_clip

    config = config or PRESETS["mini"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = synthetic_config(config)
    for start in range(0, num_clips, shard_size):
        frames, signals, centres = [], [], []
        for seed in range(start, min(start + shard_size, num_clips)):
            clip = generate_clip(seed_offset + seed, world)
            inst, depth = torch.from_numpy(clip.instance), torch.from_numpy(clip.depth)
            frames.append(torch.from_numpy(clip.frames))
            signals.append(control_from_masks(inst, depth, moved_ids=clip.moved_ids,
                                              sample_stride=config.kmeans_stride))
            centres.append(control_from_masks(inst, depth, moved_ids=clip.moved_ids, rule=KRule(k_max=1, k_min=1),
                                              sample_stride=config.kmeans_stride))
        torch.save({"frames": torch.stack(frames), "signal": signals, "signal_center": centres},
                   out / f"shard_{start // shard_size:05d}.pt")
    (out / "synthetic_config.json").write_text(json.dumps(asdict(world)))
    return out


# ------------------------------------------------------------------------------------------- models


def build_models(config: TrainConfig):
    """(vae, image_encoder, unet, controlnet, scheduler, feature_extractor) for the config's model."""
    if config.model == "mini":
        from levitor import mini

        unet_config = mini.mini_unet_config(
            num_frames=config.num_frames, patch_size=config.mini_patch_size, channels=config.mini_channels,
            layers_per_block=config.mini_layers_per_block, heads=(2,) * len(config.mini_channels),
            sample_size=config.height // config.mini_patch_size)
        vae, image_encoder, unet, controlnet = mini.build_mini_models(unet_config, config.mini_patch_size,
                                                                      config.seed)
        if config.init_from:  # fine-tune an exported model: all three trained parts come from there
            from transformers import CLIPVisionModelWithProjection

            init = Path(config.init_from)
            unet = mini.ControlledUNetSVD.from_pretrained(init / "unet")
            controlnet = mini.MiniControlNetSVD.from_pretrained(init / "controlnet")
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(init / "image_encoder")
        if config.controlnet_init:
            controlnet = mini.MiniControlNetSVD.from_pretrained(config.controlnet_init)
        scheduler = mini.mini_scheduler(config.mini_sigma_max, config.mini_sigma_min)
        return mini.make_pipeline(vae, image_encoder, unet, controlnet, scheduler)
    if config.model == "tiny":
        from levitor.testing import tiny

        return tiny.tiny_pipeline(config.seed, zero_init_controlnet=True)

    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from levitor.models.controlnet_svd import ControlNetSVD
    from levitor.models.unet_svd import ControlledUNetSVD
    from levitor.pipeline import LeviTorPipeline

    unet = ControlledUNetSVD.from_pretrained(config.pretrained, subfolder="unet")
    if config.controlnet_init:
        from levitor.models.convert import load_controlnet

        controlnet = load_controlnet(config.controlnet_init)
    else:
        controlnet = ControlNetSVD.from_unet(unet, conditioning_channels=3)
    pipe = LeviTorPipeline(
        vae=AutoencoderKLTemporalDecoder.from_pretrained(config.pretrained, subfolder="vae"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(config.pretrained, subfolder="image_encoder"),
        unet=unet, controlnet=controlnet,
        scheduler=EulerDiscreteScheduler.from_pretrained(config.pretrained, subfolder="scheduler"),
        feature_extractor=CLIPImageProcessor.from_pretrained(config.pretrained, subfolder="feature_extractor"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def edm_loss(pipe, unet, controlnet, batch: dict, config: TrainConfig, generator: torch.Generator | None = None):
    """SVD's EDM training loss of one batch (mean over everything), with the ControlNet in the loop.

    batch["frames"]: (B, F, 3, H, W) in [-1, 1]; batch["control"]: (B, F, 3, H, W) raw control values.
    """
    frames, control = batch["frames"], batch["control"]
    B, F = frames.shape[:2]
    device, dtype = frames.device, next(unet.parameters()).dtype
    vae = pipe.vae
    with torch.no_grad():
        latents = vae.encode(frames.flatten(0, 1).to(vae.dtype)).latent_dist.sample(generator)
        latents = (latents * vae.config.scaling_factor).unflatten(0, (B, F)).to(dtype)
        first = frames[:, 0]
        cond_image = first + config.noise_aug_strength * torch.randn(first.shape, generator=generator,
                                                                      device=device, dtype=first.dtype)
        image_latents = vae.encode(cond_image.to(vae.dtype)).latent_dist.mode().to(dtype)  # unscaled, as SVD
        image_latents = image_latents[:, None].expand(-1, F, -1, -1, -1)
        clip_input = pipe._clip_input(((first + 1) / 2).clamp(0, 1))  # resized to 224 as the pipeline does
        embeddings = pipe._encode_image(clip_input, device, 1, False).to(dtype)
        added_time_ids = torch.tensor([[config.fps - 1, config.motion_bucket_id, config.noise_aug_strength]],
                                      device=device, dtype=dtype).expand(B, -1)

    sigma = torch.exp(config.p_mean + config.p_std * torch.randn(B, generator=generator, device=device)).to(dtype)
    s = sigma.view(B, 1, 1, 1, 1)
    noisy = latents + s * torch.randn(latents.shape, generator=generator, device=device, dtype=dtype)
    model_input = torch.cat([noisy / (s**2 + 1).sqrt(), image_latents], dim=2)
    t = 0.25 * sigma.log()  # the scheduler's continuous timestep for v-prediction
    down, mid = controlnet(model_input, t, embeddings, control.to(dtype), added_time_ids, return_dict=False)
    v = unet(model_input, t, embeddings, added_time_ids, down_block_additional_residuals=down,
             mid_block_additional_residual=mid).sample
    denoised = v * (-s / (s**2 + 1).sqrt()) + noisy / (s**2 + 1)
    weight = (1 + s**2) / s**2
    err = (denoised.float() - latents.float()) ** 2
    if config.motion_loss_weight:
        weight = weight * (1 + config.motion_loss_weight * motion_mask(frames, latents.shape[-2:]))
    return (weight.float() * err).mean()


def motion_mask(frames: torch.Tensor, size: tuple[int, int], threshold: float = 0.1) -> torch.Tensor:
    """(B, F, 1, h, w) 1 where a frame differs from the first one (what moved, or was uncovered), at latent size.

    Most of a clip is still background, so a plain loss is mostly learnt by copying the first frame;
    weighting the moving regions makes following the control pay (an option of the mini config)."""
    B, F = frames.shape[:2]
    moved = ((frames - frames[:, :1]).abs().amax(2, keepdim=True) > threshold).float()  # (B, F, 1, H, W)
    pooled = torch.nn.functional.adaptive_max_pool2d(moved.flatten(0, 1), tuple(size))
    return pooled.unflatten(0, (B, F))


# ------------------------------------------------------------------------------------------- training


def _checkpoints(out: Path) -> list[Path]:
    folders = [p for p in (out / "checkpoints").glob("step_*") if (p / "progress.json").exists()]
    return sorted(folders, key=lambda p: int(p.name.split("_")[1]))


def train(config: TrainConfig, resume: str | bool = True) -> dict:
    """Run (or resume) training. ``resume``: True = the latest checkpoint in output_dir, a path, or False.

    Returns the final progress: {"step", "loss", "wall_s", "checkpoint"}.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trackers = []
    try:
        import tensorboard  # noqa: F401

        trackers = ["tensorboard"]
    except ImportError:
        pass
    accelerator = Accelerator(mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum,
                              log_with=trackers or None,
                              project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tb")))
    set_seed(config.seed)

    pipe = build_models(config)
    unet, controlnet = pipe.unet, pipe.controlnet
    pipe.vae.requires_grad_(False)
    pipe.image_encoder.requires_grad_(False)
    unet.requires_grad_(config.train_unet)
    controlnet.requires_grad_(True)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        if config.train_unet:
            unet.enable_gradient_checkpointing()
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    pipe.vae.to(accelerator.device, dtype=weight_dtype if config.model == "svd" else torch.float32)
    pipe.image_encoder.to(accelerator.device, dtype=weight_dtype)
    if not config.train_unet:
        unet.to(accelerator.device, dtype=weight_dtype)

    trained = [controlnet] + ([unet] if config.train_unet else [])
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.warmup_steps,
                                 num_training_steps=config.max_steps)
    ema = None
    if config.ema:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=config.ema_decay)

    # resume: progress first (it decides where the data stream starts)
    ckpts = _checkpoints(out)
    resume_from = None
    if resume is True and ckpts:
        resume_from = ckpts[-1]
    elif isinstance(resume, (str, Path)):
        resume_from = Path(resume)
    progress = {"step": 0, "wall_s": 0.0, "loss": None}
    if resume_from is not None:
        progress = json.loads((resume_from / "progress.json").read_text())

    dataset = make_dataset(config)
    samples_per_step = config.batch_size * config.grad_accum * accelerator.num_processes
    sampler = _ResumableSampler(len(dataset), progress["step"] * samples_per_step, config.seed,
                                shuffle=config.data != "synthetic")
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                                         num_workers=config.num_workers, drop_last=True,
                                         persistent_workers=config.num_workers > 0)

    if config.train_unet:
        controlnet, unet, optimizer, lr_scheduler = accelerator.prepare(controlnet, unet, optimizer, lr_scheduler)
    else:
        controlnet, optimizer, lr_scheduler = accelerator.prepare(controlnet, optimizer, lr_scheduler)
    loader = accelerator.prepare_data_loader(loader, device_placement=True) if accelerator.num_processes > 1 \
        else loader
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        # the config's learning rate wins over the checkpoint's (so a resumed run can be re-tuned)
        inner = getattr(lr_scheduler, "scheduler", lr_scheduler)
        inner.base_lrs = [config.lr for _ in inner.base_lrs]
        for group in optimizer.param_groups:
            group["initial_lr"] = config.lr
            group["lr"] = config.lr * inner.lr_lambdas[0](inner.last_epoch)
        accelerator.print(f"resumed from {resume_from} at step {progress['step']}")

    if accelerator.is_main_process:
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
        accelerator.init_trackers("levitor", config={k: str(v) for k, v in asdict(config).items()})

    stop = {"now": False}

    def _request_stop(signum, frame):  # SIGTERM/SIGINT: finish the step, checkpoint, exit cleanly
        stop["now"] = True

    old_handlers = {s: signal.signal(s, _request_stop) for s in (signal.SIGTERM, signal.SIGINT)} \
        if _is_main_thread() else {}

    def save_checkpoint() -> Path:
        folder = out / "checkpoints" / f"step_{progress['step']:07d}"
        accelerator.wait_for_everyone()
        accelerator.save_state(str(folder))
        if accelerator.is_main_process:
            (folder / "progress.json").write_text(json.dumps(progress))
            export(accelerator, pipe, controlnet, unet, ema, params, config, out / "export", progress)
            write_loss_curve(log_file, out / "loss_curve.png")
            for old in _checkpoints(out)[:-config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    session_start = time.time()
    wall_at_start = progress["wall_s"]
    last_ckpt_time = time.time()
    log_file = out / "log.jsonl"
    running, running_n, t_log = 0.0, 0, time.time()
    generator = torch.Generator(device=accelerator.device).manual_seed(config.seed + progress["step"])
    data_iter = iter(loader)
    controlnet.train()
    unet.train(config.train_unet)
    last_folder = None
    while progress["step"] < config.max_steps and not stop["now"]:
        for _ in range(config.grad_accum):
            batch = next(data_iter)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(*trained):
                with accelerator.autocast():
                    loss = edm_loss(pipe, accelerator.unwrap_model(unet) if not config.train_unet else unet,
                                    controlnet, batch, config, generator)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {progress['step']}; lower lr "
                                             "or use mixed_precision 'bf16'/'no'")
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running += float(loss.detach()) / config.grad_accum
        running_n += 1
        if ema is not None:
            ema.step(params)
        progress["step"] += 1
        progress["wall_s"] = wall_at_start + time.time() - session_start
        if progress["step"] % config.log_every == 0:
            mean = running / running_n
            progress["loss"] = mean
            rec = {"step": progress["step"], "loss": round(mean, 6), "lr": lr_scheduler.get_last_lr()[0],
                   "s_per_step": round((time.time() - t_log) / running_n, 3), "wall_s": round(progress["wall_s"], 1)}
            accelerator.log({"loss": mean, "lr": rec["lr"]}, step=progress["step"])
            if accelerator.is_main_process:
                with open(log_file, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
            running, running_n, t_log = 0.0, 0, time.time()
        timed = config.checkpoint_minutes > 0 and time.time() - last_ckpt_time > 60 * config.checkpoint_minutes
        out_of_time = config.max_minutes > 0 and time.time() - session_start > 60 * config.max_minutes
        if progress["step"] % config.checkpoint_every == 0 or timed or out_of_time:
            last_folder = save_checkpoint()
            last_ckpt_time = time.time()
        if config.sample_every and progress["step"] % config.sample_every == 0 and accelerator.is_main_process:
            write_sample(pipe, ema, params, config, out / "samples" / f"step_{progress['step']:07d}")
        if out_of_time:
            break
    if last_folder is None or not last_folder.name.endswith(f"{progress['step']:07d}"):
        last_folder = save_checkpoint()
    accelerator.end_training()
    for s, h in old_handlers.items():
        signal.signal(s, h)
    return {**progress, "checkpoint": str(last_folder)}


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _EmaWeights:
    """``with _EmaWeights(ema, params):`` swaps the EMA weights in, and the training weights back after."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def export(accelerator, pipe, controlnet, unet, ema, params, config: TrainConfig, folder: Path, progress: dict):
    """Inference weights (EMA ones if EMA is on): the ControlNet, and the UNet when it trains."""
    cn, un = accelerator.unwrap_model(controlnet), accelerator.unwrap_model(unet)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _EmaWeights(ema, params):
        if config.model == "mini":
            from levitor.mini import save_mini

            save_mini(tmp, un, cn, mini_model_info(config, progress), image_encoder=pipe.image_encoder)
        else:
            cn.save_pretrained(tmp / "controlnet")
            if config.train_unet:
                un.save_pretrained(tmp / "unet")
            (tmp / "progress.json").write_text(json.dumps(progress))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def mini_model_info(config: TrainConfig, progress: dict) -> dict:
    """What :func:`levitor.mini.load_mini_pipeline` needs to know beyond the weights."""
    return {"height": config.height, "width": config.width, "num_frames": config.num_frames,
            "patch_size": config.mini_patch_size, "control_radius": config.control_radius,
            "kmeans_stride": config.kmeans_stride, "control": config.control, "fps": config.fps,
            "motion_bucket_id": config.motion_bucket_id, "noise_aug_strength": config.noise_aug_strength,
            "num_inference_steps": config.sample_steps, "sigma_max": config.mini_sigma_max,
            "sigma_min": config.mini_sigma_min, "seed": config.seed,
            "synthetic": {k: list(v) if isinstance(v, tuple) else v for k, v in config.synthetic.items()},
            "trained_steps": progress["step"], "train_wall_s": round(progress["wall_s"], 1),
            "train_loss": progress.get("loss"), "motion_loss_weight": config.motion_loss_weight,
            **(_lineage(config.init_from) if config.init_from else {})}


def _lineage(init_from: str) -> dict:
    """Where a fine-tuned mini model started: its parent's training, so the total is on record."""
    from levitor.mini import mini_info

    parent = mini_info(init_from)
    earlier = parent.get("earlier_steps", 0) + parent.get("trained_steps", 0)
    return {"init_from": str(init_from), "earlier_steps": earlier,
            "earlier_wall_s": round(parent.get("earlier_wall_s", 0) + parent.get("train_wall_s", 0), 1)}


def write_loss_curve(log_file: Path, png: Path) -> Path | None:
    """Redraw the run's loss curve beside its log, so a glance tells whether a long run is still learning."""
    from PIL import Image

    from levitor.viz import loss_curve, read_loss_log

    if not log_file.exists():
        return None
    steps, losses = read_loss_log(log_file)
    if len(steps) < 2:
        return None
    Image.fromarray(loss_curve(steps, losses, title=f"training loss ({png.parent.name})")).save(png)
    return png


@torch.no_grad()
def write_sample(pipe, ema, params, config: TrainConfig, stem: Path) -> Path | None:
    """A side-by-side strip (rows: ground truth, generated) of a held-out synthetic clip, as PNG."""
    if config.data not in ("synthetic", "cache"):
        return None
    from PIL import Image

    item = SyntheticControlDataset(config, seed_offset=EVAL_SEED_OFFSET)[0]
    first = ((item["frames"][0] + 1) / 2).clamp(0, 1)
    was_training = (pipe.unet.training, pipe.controlnet.training)
    pipe.unet.eval()
    pipe.controlnet.eval()
    with _EmaWeights(ema, params):
        video = pipe(first, control=item["control"], num_inference_steps=config.sample_steps,
                     min_guidance_scale=1.0, max_guidance_scale=1.0, fps=config.fps,
                     motion_bucket_id=config.motion_bucket_id, noise_aug_strength=config.noise_aug_strength,
                     generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
    pipe.unet.train(was_training[0] and config.train_unet)
    pipe.controlnet.train(was_training[1])
    truth = ((item["frames"].permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).numpy().astype(np.uint8)
    gen = (np.asarray(video) * 255).clip(0, 255).astype(np.uint8)
    strip = np.concatenate([np.concatenate(list(truth), 1), np.concatenate(list(gen), 1)], 0)
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".png")
    Image.fromarray(strip).resize((strip.shape[1] * 4, strip.shape[0] * 4), Image.NEAREST).save(path)
    return path


# ------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``levitor train CONFIG [--set key=value ...] [--no-resume]``."""
    parser = argparse.ArgumentParser(prog="levitor train", description="train the LeviTor ControlNet")
    parser.add_argument("config", help="a YAML/JSON config (configs/paper.yaml, configs/mini.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (YAML value syntax), e.g. --set max_steps=10")
    parser.add_argument("--no-resume", action="store_true", help="start fresh even if checkpoints exist")
    args = parser.parse_args(argv)
    import yaml

    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    config = load_config(args.config, **overrides)
    result = train(config, resume=not args.no_resume)
    print(json.dumps(result))
    return 0


def precompute_main(argv: list[str] | None = None) -> int:
    """``levitor precompute-synthetic OUT --clips N [--config CONFIG]``."""
    parser = argparse.ArgumentParser(prog="levitor precompute-synthetic",
                                     description="render synthetic clips and control signals into a training cache")
    parser.add_argument("out")
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--config", help="a training config whose synthetic world and sizes to use (default: mini)")
    parser.add_argument("--shard-size", type=int, default=500)
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else PRESETS["mini"]
    t = time.time()
    precompute_synthetic(args.out, args.clips, config, shard_size=args.shard_size)
    print(f"wrote {args.clips} clips to {args.out} in {time.time() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
