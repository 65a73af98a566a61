"""What a training run depends on: :class:`TrainConfig`, its presets (``paper``, ``mini``) and the YAML loader."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from levitor.control.clip_control import ABLATIONS, ClipControl
from levitor.defaults import RELEASE_DEMO_SIZE, nearest_multiple
from levitor.weights import SVD_XT_ID

CONTROLS = ABLATIONS  # the paper's Table 2: full | no_depth | no_instance | center_point


EVAL_SEED_OFFSET = 1_000_000_000  # held-out synthetic clips use seeds from here on; training seeds stay below


@dataclass
class TrainConfig:
    """Everything a run depends on. Load with :func:`load_config`; unknown keys are errors."""

    # --- model
    model: str = "svd"                  # "svd": pretrained SVD (UNet frozen); "mini": levitor.generation.mini from
                                        #   scratch;
                                        # "tiny": levitor.testing.tiny random models (tests)
    pretrained: str = SVD_XT_ID          # SVD base (hub id or folder) for model "svd"
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
    mini_prediction: str = "v_prediction"  # "sample": the mini UNet outputs the clean latents itself (see
                                        #   levitor.generation.mini.MiniX0UNetSVD: no grain from the sampler)
    gradient_checkpointing: bool = False

    # --- data
    data: str = "sav"                   # "synthetic", "cache" (precompute_synthetic output), "sav", "davis"
    data_root: str | None = None        # SA-V / DAVIS root, or the cache folder
    depth_root: str | None = None       # real data: <depth_root>/<clip name>.npy, (F, H, W) uint8 disparity
    synthetic: dict = field(default_factory=dict)  # SyntheticConfig overrides (height/width/frames come from here)
    height: int = RELEASE_DEMO_SIZE.height  # the release's demo size (portrait; training's is not published)
    width: int = RELEASE_DEMO_SIZE.width
    num_frames: int = RELEASE_DEMO_SIZE.num_frames
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
    p_low_fraction: float = 0.0         # this share of each batch draws its noise level from the low band below
    p_low_mean: float = -1.2            #   (EDM's P_mean / P_std: sigma ~0.05-1.5), where a model learns to
    p_low_std: float = 1.2              #   remove fine noise; 0 keeps the single log-normal above
    loss_weight_cap: float = 0.0        # > 0: the EDM weight (1 + 1/sigma^2) is capped at this (min-SNR weighting,
                                        #   Hang et al. 2023): an x0-predicting model's low-noise errors then do not
                                        #   drown the rest
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

    def clip_control(self) -> ClipControl:
        """How this run turns a clip's masks into its control (shared with precompute and evaluation)."""
        return ClipControl(sample_stride=self.kmeans_stride, ablation=self.control)

    def __post_init__(self) -> None:
        if self.mini_prediction not in ("v_prediction", "sample"):
            raise ValueError(f"mini_prediction must be 'v_prediction' or 'sample', got {self.mini_prediction!r}")
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
                raise ValueError(f"{name} must be a multiple of 8, got {getattr(self, name)}: use "
                                 f"{nearest_multiple(getattr(self, name))}")


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


def synthetic_config(config: TrainConfig):
    from levitor.data.synthetic import SyntheticConfig

    return SyntheticConfig(height=config.height, width=config.width, num_frames=config.num_frames,
                           **config.synthetic)
