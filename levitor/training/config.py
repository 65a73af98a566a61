"""What a training run depends on: :class:`TrainConfig`, its presets (``paper``, ``mini``) and the YAML loader."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from levitor.control.clip_control import ABLATIONS, ClipControl
from levitor.control.encode import GAUSSIAN_RADIUS
from levitor.control.points import SAMPLE_STRIDE
from levitor.data.shards import SHUFFLE_BUFFER
from levitor.data.synthetic import SyntheticConfig
from levitor.defaults import (
    FPS,
    MINI_PATCH_SIZE,
    MINI_SIGMA_MAX,
    MINI_SIGMA_MIN,
    MOTION_BUCKET_ID,
    NOISE_AUG_STRENGTH,
    NUM_INFERENCE_STEPS,
    RELEASE_DEMO_SIZE,
    nearest_multiple,
)
from levitor.weights import SVD_XT_ID

CONTROLS = ABLATIONS  # the paper's Table 2: full | no_depth | no_instance | center_point


EVAL_SEED_OFFSET = 1_000_000_000  # held-out synthetic clips use seeds from here on; training seeds stay below


@dataclass
class TrainConfig:
    """Everything a run depends on. Load with :func:`load_config`; unknown keys are errors."""

    # --- model
    model: str = "svd"                  # "svd": pretrained SVD (UNet frozen); "mini": levitor.generation.mini from
                                        #   scratch
    pretrained: str = SVD_XT_ID          # SVD base (hub id or folder) for model "svd"
    controlnet_init: str | None = None  # start the ControlNet from these weights instead of the UNet's encoder
    init_from: str | None = None        # model "mini": start from exported mini weights (unet/, controlnet/,
                                        #   image_encoder/; e.g. levitor/assets/mini) instead of from scratch
    train_unet: bool = False            # the paper trains only the ControlNet; the mini model has no pretrained UNet
    motion_loss_weight: float = 0.0     # > 0: the loss counts (1 + this) times where a frame differs from the
                                        #   first (see motion_mask); 0 is SVD's plain loss, as in the paper
    mini_channels: tuple[int, ...] = (32, 64)  # mini UNet widths (multiples of 32: GroupNorm)
    mini_layers_per_block: int = 1
    mini_patch_size: int = MINI_PATCH_SIZE  # PatchVAE factor (levitor.defaults: the mini model's recipe)
    mini_sigma_max: float = MINI_SIGMA_MAX  # the mini model's sampler's noise range
    mini_sigma_min: float = MINI_SIGMA_MIN
    mini_prediction: str = "v_prediction"  # "sample": the mini UNet outputs the clean latents itself (see
                                        #   levitor.generation.mini.MiniX0UNetSVD: no grain from the sampler)
    gradient_checkpointing: bool = False

    # --- data
    data: str = "shards"                # "shards": WebDataset shards of `levitor precompute` (real data) or
                                        #   `levitor precompute-synthetic`; "synthetic": the world, on the fly
    data_root: str | None = None        # the precompute output folder (its shards/*.tar)
    shuffle_buffer: int = SHUFFLE_BUFFER  # samples each DataLoader worker holds for shuffling (shards)
    synthetic: dict = field(default_factory=dict)  # SyntheticConfig overrides (height/width/frames come from here)
    height: int = RELEASE_DEMO_SIZE.height  # the release's demo size (portrait; training's is not published)
    width: int = RELEASE_DEMO_SIZE.width
    num_frames: int = RELEASE_DEMO_SIZE.num_frames
    num_workers: int = 4
    max_consecutive_skips: int = 1000   # damaged samples in a row that stop the run: one flipped bit in 250K files
                                        #   should not end a week of training, a thousand in a row is broken data
                                        #   (a shard's worth or more); 0: never stop

    # --- control signal
    control: str = "full"               # full | no_depth | no_instance | center_point (paper Table 2)
    control_radius: int = GAUSSIAN_RADIUS  # the release's gaussian_r; the mini model's 32x32 frames use 2
    kmeans_stride: int = SAMPLE_STRIDE  # K-means on every n-th mask pixel (the release's); tiny frames need 1

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
    fps: int = FPS                      # conditioned as fps - 1, as SVD
    motion_bucket_id: int = MOTION_BUCKET_ID
    noise_aug_strength: float = NOISE_AUG_STRENGTH
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
    sample_steps: int = NUM_INFERENCE_STEPS
    max_minutes: float = 0.0            # stop (with a checkpoint) after this much wall time in this session (0: off)
    num_threads: int = 0                # torch CPU threads (0: torch's default); 1 is fastest on a loaded CPU
    num_processes: int = 0              # > 0: refuse to run unless the launch started this many processes
    peer_timeout_minutes: float = 10.0  # ranks give up on a peer that does not answer (or join) after this long; it
                                        #   must exceed the longest work one rank does alone between two steps: a
                                        #   checkpoint with its export and sample video (the log says how long one
                                        #   took), or loading the models from slow storage
    trace_samples: bool = False         # write trace/rank-N.jsonl: each step's clips, noise seed, parameter sum

    def clip_control(self) -> ClipControl:
        """How this run turns a clip's masks into its control (shared with precompute and evaluation)."""
        return ClipControl(sample_stride=self.kmeans_stride, ablation=self.control)

    def __post_init__(self) -> None:
        if self.mini_prediction not in ("v_prediction", "sample"):
            raise ValueError(f"mini_prediction must be 'v_prediction' or 'sample', got {self.mini_prediction!r}")
        if self.model not in ("svd", "mini"):
            raise ValueError(f"model must be 'svd' or 'mini', got {self.model!r}")
        if self.data in ("sav", "davis", "cache"):
            raise ValueError(f"data {self.data!r} is no longer read directly: run `levitor precompute` (real data) or "
                             "`levitor precompute-synthetic` into a folder and train with data: shards, data_root: "
                             "that folder")
        if self.data not in ("synthetic", "shards"):
            raise ValueError(f"data must be 'shards' or 'synthetic', got {self.data!r}")
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {self.control!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        self.mini_channels = tuple(self.mini_channels)
        self.adam_betas = tuple(self.adam_betas)
        for name in ("height", "width"):
            if getattr(self, name) < 8 or getattr(self, name) % 8:
                raise ValueError(f"{name} must be a positive multiple of 8, got {getattr(self, name)}: use "
                                 f"{nearest_multiple(getattr(self, name))}")
        for name, (ok, valid) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(value):
                raise ValueError(f"{name} must be {valid}, got {value}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        if not self.mini_channels or any(c < 32 or c % 32 for c in self.mini_channels):
            raise ValueError(f"mini_channels must be multiples of 32 (GroupNorm), got {list(self.mini_channels)}")
        if not 0 < self.mini_sigma_min < self.mini_sigma_max:
            raise ValueError(f"need 0 < mini_sigma_min < mini_sigma_max, got {self.mini_sigma_min} and "
                             f"{self.mini_sigma_max}")
        self._check_synthetic()

    def _check_synthetic(self) -> None:
        """Unknown keys of ``synthetic`` fail here, not in a DataLoader worker after the models are built."""
        known = {f.name for f in dataclasses.fields(SyntheticConfig)} - {"height", "width", "num_frames"}
        unknown = sorted(set(self.synthetic) - known)
        if unknown:
            raise ValueError(f"unknown synthetic key(s) {unknown}; known: {sorted(known)} (height, width and "
                             "num_frames are the config's own keys)")
        if self.data == "synthetic":        # its own range checks
            SyntheticConfig(height=self.height, width=self.width, num_frames=self.num_frames, **self.synthetic)


def _at_least(n: float, note: str = "") -> tuple:
    return (lambda v: v >= n, f">= {n:g}" + (f" {note}" if note else ""))


def _above(n: float) -> tuple:
    return (lambda v: v > n, f"> {n:g}")


_RANGES = {   # field -> (test, the valid range as the error says it)
    "lr": _above(0),
    "batch_size": _at_least(1),
    "grad_accum": _at_least(1),
    "max_steps": _at_least(1),
    "warmup_steps": _at_least(0),
    "weight_decay": _at_least(0),
    "max_grad_norm": _at_least(0, "(0: no clipping)"),
    "num_frames": _at_least(2),
    "num_workers": _at_least(0),
    "shuffle_buffer": _at_least(0),
    "control_radius": _at_least(0),
    "kmeans_stride": _at_least(1),
    "p_std": _above(0),
    "p_low_fraction": (lambda v: 0 <= v <= 1, "in [0, 1] (0: the single log-normal)"),
    "p_low_std": _above(0),
    "loss_weight_cap": _at_least(0, "(0: no cap)"),
    "fps": _at_least(1),
    "motion_bucket_id": _at_least(0),
    "noise_aug_strength": _at_least(0),
    "motion_loss_weight": _at_least(0),
    "ema_decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "mini_layers_per_block": _at_least(1),
    "mini_patch_size": _at_least(1),
    "log_every": _at_least(1),
    "checkpoint_every": _at_least(1),
    "checkpoint_minutes": _at_least(0, "(0: off)"),
    "keep_checkpoints": _at_least(1),
    "sample_every": _at_least(0, "(0: off)"),
    "sample_steps": _at_least(1),
    "max_minutes": _at_least(0, "(0: off)"),
    "num_threads": _at_least(0, "(0: torch's default)"),
    "num_processes": _at_least(0, "(0: any)"),
    "max_consecutive_skips": _at_least(0, "(0: never stop)"),
    "peer_timeout_minutes": _above(0),
}


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


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def _as_bool(key: str, value: Any, base: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise TypeError


def _as_int(key: str, value: Any, base: str) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    if isinstance(value, str) or (isinstance(value, float) and value.is_integer()):
        return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
    raise TypeError


def _as_float(key: str, value: Any, base: str) -> float:
    if isinstance(value, bool):
        raise TypeError
    return float(value)


def _as_str(key: str, value: Any, base: str) -> str:
    if isinstance(value, bool):
        raise ValueError(f"{key} is a string, got the YAML boolean {value} (YAML reads no/off/yes/on as "
                         f"booleans): quote it, e.g. {key}: \"no\"")
    if not isinstance(value, str):
        raise TypeError
    return value


def _as_tuple(key: str, value: Any, base: str) -> tuple:
    seq = yaml.safe_load(value) if isinstance(value, str) else value
    item = float if "float" in base else int
    if not isinstance(seq, (list, tuple)):
        raise TypeError
    return tuple(item(v) for v in seq)


def _as_dict(key: str, value: Any, base: str) -> dict:
    d = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(d, dict):
        raise TypeError
    return d


_PARSERS = {"bool": _as_bool, "int": _as_int, "float": _as_float, "str": _as_str, "tuple": _as_tuple,
            "dict": _as_dict}


def coerce(key: str, value: Any, type_name: str | None = None) -> Any:
    """``value`` as the type of TrainConfig field ``key``; ValueError naming the field, the value and the type.

    Strings are parsed by the field's type (so ``--set lr=1e-3`` is a float and ``mixed_precision=no`` stays the
    string "no"); YAML's values are checked (a float field takes ints, a str field refuses YAML 1.1 booleans)."""
    type_name = type_name or _field_types()[key]
    optional = "None" in type_name
    base = type_name.replace(" | None", "").strip()
    if value is None or (isinstance(value, str) and optional and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ValueError(f"{key} cannot be empty (type {base})")
    parse = _PARSERS.get("tuple" if base.startswith("tuple") else base)
    if parse is None:
        return value
    try:
        return parse(key, value, base)
    except ValueError as err:
        if str(err).startswith(key):
            raise
        raise ValueError(f"{key} must be {base}, got {value!r}") from None
    except TypeError:
        raise ValueError(f"{key} must be {base}, got {value!r} ({type(value).__name__})") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-4", "max_steps=10"]`` -> typed values, each checked against TrainConfig's field types."""
    types = _field_types()
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if k == "base":
            out[k] = v
            continue
        if k not in types:
            raise ValueError(f"--set {k}: unknown config key; known keys: {sorted(types)}")
        out[k] = coerce(k, v, types[k])
    return out


def load_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A TrainConfig from a YAML/JSON file (``base: paper|mini`` picks the preset it starts from)."""
    data: dict = {}
    if path is not None:
        data = _read_config_file(Path(path))
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    data.update(overrides)
    base = data.pop("base", "paper")
    if base not in PRESETS:
        raise ValueError(f"base must be one of {sorted(PRESETS)}, got {base!r}")
    types = _field_types()
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} in {path or 'overrides'}; known keys: {sorted(types)}")
    return dataclasses.replace(PRESETS[base], **{k: coerce(k, v, types[k]) for k, v in data.items()})


def _read_config_file(path: Path) -> Any:
    """The parsed file; every way it can be unusable is a one-line ValueError naming the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"config file {path} not found; pass a YAML/JSON config such as configs/paper.yaml or "
                         "configs/mini.yaml") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {path} cannot be read: {err}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"config file {path} is not valid YAML{where}: {what}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {path} is not valid JSON at line {err.lineno}, column {err.colno}: "
                         f"{err.msg} (YAML configs must end in .yaml or .yml)") from None


def synthetic_config(config: TrainConfig) -> SyntheticConfig:
    return SyntheticConfig(height=config.height, width=config.width, num_frames=config.num_frames,
                           **config.synthetic)
