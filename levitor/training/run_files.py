"""The files of a run folder besides the models' own: each checkpoint's ``progress.json`` and EMA state, the inference
export of the latest checkpoint, the loss curve, sample strips, the per-rank sample trace, and logs cut back to a
checkpoint on resume. Written by :mod:`levitor.training.loop`."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from levitor._util.io import atomic_path, write_text_atomic
from levitor.training.config import EVAL_SEED_OFFSET, TrainConfig
from levitor.training.datasets import SyntheticControlDataset
from levitor.viz.pictures import loss_curve, read_loss_log

PROGRESS_FILE = "progress.json"    # written last into a checkpoint: it marks the checkpoint whole


@dataclass
class Progress:
    """Where a run is; each checkpoint holds it as ``progress.json``."""

    step: int = 0
    wall_s: float = 0.0
    loss: float | None = None           # the mean of the last logged stretch

    @classmethod
    def read(cls, folder: Path) -> Progress:
        data = json.loads((Path(folder) / PROGRESS_FILE).read_text())
        return cls(step=int(data["step"]), wall_s=float(data.get("wall_s", 0.0)), loss=data.get("loss"))


def checkpoint_folder(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step_{step:07d}"


def whole_checkpoints(out: Path) -> list[Path]:
    folders = [p for p in (out / "checkpoints").glob("step_*") if (p / PROGRESS_FILE).exists()]
    return sorted(folders, key=lambda p: int(p.name.split("_")[1]))


def cut_log(path: Path, step: int) -> None:
    """Keep the JSON lines of ``path`` up to ``step`` (a resumed run repeats the steps after its checkpoint) and
    drop a line torn by a kill; atomically, so a second kill leaves the old or the new file."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            rec = json.loads(line) if line.endswith("\n") else None
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            kept.append(line)
    write_text_atomic(path, "".join(kept))


EMA_FILE = "ema.pt"
OLD_EMA_FILE = "custom_checkpoint_0.pkl"   # where accelerate's register_for_checkpointing put it (older runs)


def save_ema(ema, folder: Path) -> Path:
    """The EMA state (tensors and numbers only) beside accelerate's state, atomically."""
    path = Path(folder) / EMA_FILE
    with atomic_path(path) as tmp:
        torch.save(ema.state_dict(), tmp)
    return path


def load_ema(ema, folder: Path, device) -> None:
    """Restore the EMA of a checkpoint with ``weights_only=True`` (no pickled code is run); older checkpoints kept
    it in accelerate's custom_checkpoint_0.pkl, which holds the same plain state."""
    folder = Path(folder)
    path = folder / EMA_FILE if (folder / EMA_FILE).is_file() else folder / OLD_EMA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {folder} has no EMA state ({EMA_FILE}) but the config has ema: true; "
                                "resume with ema: false, or from a checkpoint made with EMA")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # UnpicklingError and friends: the file is not plain tensors
        raise ValueError(f"{path} is not a plain EMA state (tensors and numbers); refusing to unpickle it: {err}") \
            from err
    ema.load_state_dict(state)


class Tracer:
    """``trace_samples``: one JSON line per step and rank (clips, noise seed, parameter sum) to check a launch."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = out / "trace" / f"rank-{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rank = rank

    def write(self, step: int, names: list[str], noise_seed: int, params) -> None:
        total = float(sum(p.detach().double().sum() for p in params))
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, "rank": self.rank, "names": names, "noise_seed": noise_seed,
                                 "param_sum": total}) + "\n")


class EmaWeights:
    """``with EmaWeights(ema, params):`` swaps the EMA weights in, and the training weights back after."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def export(accelerator, pipe, controlnet, unet, ema, params, config: TrainConfig, folder: Path, progress: Progress):
    """Inference weights (EMA ones if EMA is on): the ControlNet, and the UNet when it trains."""
    cn, un = accelerator.unwrap_model(controlnet), accelerator.unwrap_model(unet)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with EmaWeights(ema, params):
        if config.model == "mini":
            from levitor.generation.mini import save_mini

            save_mini(tmp, un, cn, mini_model_info(config, progress), image_encoder=pipe.image_encoder)
        else:
            cn.save_pretrained(tmp / "controlnet")
            if config.train_unet:
                un.save_pretrained(tmp / "unet")
            (tmp / PROGRESS_FILE).write_text(json.dumps(asdict(progress)))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def mini_model_info(config: TrainConfig, progress: Progress) -> dict:
    """What :func:`levitor.generation.mini.load_mini_pipeline` needs to know beyond the weights."""
    return {"height": config.height, "width": config.width, "num_frames": config.num_frames,
            "patch_size": config.mini_patch_size, "control_radius": config.control_radius,
            "kmeans_stride": config.kmeans_stride, "control": config.control, "fps": config.fps,
            "motion_bucket_id": config.motion_bucket_id, "noise_aug_strength": config.noise_aug_strength,
            "num_inference_steps": config.sample_steps, "sigma_max": config.mini_sigma_max,
            "sigma_min": config.mini_sigma_min, "seed": config.seed, "prediction_type": config.mini_prediction,
            "synthetic": {k: list(v) if isinstance(v, tuple) else v for k, v in config.synthetic.items()},
            "trained_steps": progress.step, "train_wall_s": round(progress.wall_s, 1),
            "train_loss": progress.loss, "motion_loss_weight": config.motion_loss_weight,
            **(_lineage(config.init_from) if config.init_from else {})}


def _lineage(init_from: str) -> dict:
    """Where a fine-tuned mini model started: its parent's training, so the total is on record."""
    from levitor.generation.model_choice import mini_info

    parent = mini_info(init_from)
    earlier = parent.get("earlier_steps", 0) + parent.get("trained_steps", 0)
    return {"init_from": str(init_from), "earlier_steps": earlier,
            "earlier_wall_s": round(parent.get("earlier_wall_s", 0) + parent.get("train_wall_s", 0), 1)}


def write_loss_curve(log_file: Path, png: Path) -> Path | None:
    """Redraw the run's loss curve beside its log, so a glance tells whether a long run is still learning."""
    from PIL import Image

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
    with EmaWeights(ema, params):
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
