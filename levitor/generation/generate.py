"""Scene -> video: the engine's control signal through the LeviTor pipeline, written to disk with the scene.

Used by the CLI (``levitor generate``) and the Studio's Generate button. Without weights it raises
:class:`~levitor.weights.WeightsNotFoundError` (the message says what to download and where); callers that
want something to show anyway write :meth:`levitor.engine.Engine.write_preview` instead.

``weights="mini"`` (or a mini model folder) runs the shipped mini model instead of SVD: a 32x32, 8-frame toy
trained on synthetic sprites (docs/mini_model.md), there so that Generate does something real on any CPU with
no download. Its frames are enlarged back to the scene's size, pixels left visible.

The control signal is built by the rules the weights were trained with (:mod:`levitor.control.rules`): the
release's for the released LeviTor ControlNet (its loader marks it so), levitor's own for levitor-trained models
and the mini model. ``rules=`` overrides that.

``guidance="ttm"`` generates training-free (:mod:`levitor.generation.guidance`): the SVD-xt weights alone, steered
by the engine's warped video of the scene and the moved objects' mask (:mod:`levitor.generation.reference`);
``"controlnet+ttm"`` uses both. The record (``<name>.json``) says which, with TTM's schedule.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from levitor._util.device import resolve_device
from levitor._util.io import make_folder, write_text_atomic
from levitor.control.lost import ControlWarning
from levitor.control.rules import ControlRules
from levitor.defaults import FPS, VideoSize, check_seed, video_size
from levitor.engine import Engine
from levitor.generation.guidance import (
    DEFAULT_GUIDANCE,
    TSTRONG_FRACTION,
    TTM,
    TWEAK_FRACTION,
    TTMSchedule,
    check_guidance,
    uses_controlnet,
    uses_ttm,
)
from levitor.generation.model_choice import MINI, control_rules_of, default_steps, is_mini, mini_folder, mini_info
from levitor.generation.presets import DEFAULT_PRESET
from levitor.generation.reference import warped_reference
from levitor.scene import Scene
from levitor.viz.colors import colors_by_mask
from levitor.viz.pictures import contact_sheet, overlay
from levitor.viz.video import VIDEO_SUFFIXES, write_video
from levitor.weights import LEVITOR_ID, SVD_XT_ID, WeightsNotFoundError, load_once

__all__ = ["MINI", "GenerateResult", "WeightsNotFoundError", "generate", "is_mini", "load_pipeline",
           "side_by_side"]


@dataclass
class GenerateResult:
    video_path: Path  # the generated video (mp4)
    frames: np.ndarray  # (F, H, W, 3) uint8
    scene_path: Path  # the scene it was made from, saved beside it
    control_path: Path  # the control overlay video beside it
    used_model: bool  # False only for callers that fell back to the preview
    seconds: float
    warnings: list[ControlWarning] = field(default_factory=list)  # objects that got no control points, and why


def load_pipeline(weights: str | Path | None = None, base: str | Path | None = None, device: str = "auto",
                  preset: str = DEFAULT_PRESET, allow_download: bool = True, guidance: str = DEFAULT_GUIDANCE):
    """The LeviTor pipeline, loaded once per (weights, base, device, preset, with or without ControlNet) and kept.

    weights: LeviTor ControlNet (release folder, a ControlNet folder, or a saved LeviTorPipeline folder);
    base: the SVD base (default SVD-xt). A saved LeviTorPipeline folder as ``weights`` needs no base.
    guidance: "ttm" loads no ControlNet (only the base's weights are needed); a missing ControlNet for the other
    modes says that "ttm" would run without it.
    """
    from levitor.generation.pipeline import LeviTorPipeline  # diffusers (seconds): only when a pipeline is loaded

    dev = resolve_device(device)
    with_controlnet = uses_controlnet(guidance)
    saved = weights is not None and (Path(weights) / "model_index.json").is_file()
    if not with_controlnet and weights is not None and not saved:
        raise ValueError(f"guidance {guidance!r} runs no ControlNet, so the weights {weights} would not be used: "
                         "leave them out (it needs only the SVD-xt base, `--base`), or use guidance "
                         "'controlnet+ttm' to steer with both")

    def build():
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
        if saved:  # the folder holds the base (and its ControlNet, left out for ttm)
            pipe = LeviTorPipeline.from_pretrained(weights, "auto" if with_controlnet else None, torch_dtype=dtype,
                                                   allow_download=False)
        else:
            controlnet = (weights or "auto") if with_controlnet else None
            pipe = LeviTorPipeline.from_pretrained(base or SVD_XT_ID, controlnet, torch_dtype=dtype,
                                                   allow_download=allow_download)
        return pipe.apply_preset(preset, device=dev)

    try:
        return _cached((str(weights), str(base), str(dev), preset, with_controlnet), build)
    except WeightsNotFoundError as err:
        if with_controlnet and "LeviTor" in str(err):
            raise WeightsNotFoundError(f"{err}\n\nWithout the LeviTor weights, training-free guidance runs on the "
                                       "SVD-xt weights alone: `levitor generate --guidance ttm` (generate(..., "
                                       "guidance='ttm')).") from err
        raise


def _cached(key: tuple, build: Callable[[], object]):
    """The pipeline for ``key``, built on first use and kept; one at a time (they are large)."""

    def build_quiet():
        pipe = build()
        pipe.set_progress_bar_config(leave=False)
        return pipe

    return load_once(f"pipeline|{key}", build_quiet, group="pipeline")


def load_mini(weights: str | Path = MINI, device: str = "auto"):
    """The mini model's pipeline, loaded once per (folder, device) like :func:`load_pipeline`."""
    from levitor.generation.mini import load_mini_pipeline

    folder = mini_folder(weights)
    dev = resolve_device(device)
    return _cached(("mini", str(folder), str(dev)), lambda: load_mini_pipeline(folder, device=dev))


def generate(
    scene: Scene,
    out_dir: str | Path,
    weights: str | Path | None = None,
    base: str | Path | None = None,
    device: str = "auto",
    steps: int | None = None,
    preset: str = DEFAULT_PRESET,
    seed: int | None = None,
    fps: int = FPS,
    callback: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    pipeline=None,
    allow_download: bool = True,
    name: str = "levitor",
    rules: str | ControlRules | None = None,
    size: str | VideoSize | None = None,
    suffix: str = ".mp4",
    guidance: str = DEFAULT_GUIDANCE,
    tweak_fraction: float = TWEAK_FRACTION,
    tstrong_fraction: float = TSTRONG_FRACTION,
) -> GenerateResult:
    """Generate the scene's video and save ``<name><suffix>`` (.mp4 or .gif), ``<name>_control<suffix>`` and
    ``<name>.scene.json``.

    steps: denoising steps (default: :data:`~levitor.defaults.NUM_INFERENCE_STEPS` for SVD, the mini model's own
        (its mini.json's) for ``weights="mini"``).
    callback(step, total) is called after every denoising step (for progress bars); setting ``cancel`` stops
    after the current step (the partly denoised video is still decoded and saved).
    rules: how the control signal is built ("levitor", "release" or a ControlRules); default the ones the weights
        were trained with (``pipe.control_rules``: "release" for the released LeviTor weights).
    size: generate at a named size (levitor.defaults.SIZES, e.g. "release-demo": 512x288, what the release's demo
        runs) instead of the scene's: the image is resized and the control points scaled; another aspect ratio
        stretches the picture, as the release's demo does with its uploads. Frames stay the scene's.
    guidance: "controlnet" (default), "ttm" (training-free: no ControlNet, only the SVD-xt weights; with
        ``weights="mini"`` the mini model's UNet alone) or "controlnet+ttm"; ``tweak_fraction`` and
        ``tstrong_fraction`` set TTM's schedule (:mod:`levitor.generation.guidance`).
    """
    t0 = time.perf_counter()
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}; leave it out for the model's default")
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"the video format {suffix!r} is not supported; use one of {VIDEO_SUFFIXES}")
    scene.validate()
    check_guidance(guidance, tweak_fraction, tstrong_fraction)
    if seed is not None:
        check_seed(seed)
    mini = is_mini(weights)
    if mini and size is not None:
        _refuse_size_for_mini(size, weights, scene)
    out_dir = make_folder(Path(out_dir))
    scene_path = scene.save(out_dir / f"{name}.scene.json")  # first: nothing the user built is lost
    if not scene.masks:
        raise ValueError("the scene has no masks, so the video would have no control at all; make a mask for each "
                         "object (levitor studio photo.jpg: a box around it, or a click with SAM) and select the "
                         f"ones to move, then generate again (the scene is saved: {scene_path})")
    target = video_size(size) if isinstance(size, str) else size
    seed = scene.seed if seed is None else seed
    if mini:
        pipe = pipeline or load_mini(weights, device)
    else:
        pipe = pipeline or load_pipeline(weights, base, device, preset, allow_download=allow_download,
                                         guidance=guidance)
    steps = steps or default_steps(weights)  # the mini model's own (its mini.json's), SVD's otherwise
    rules = ControlRules.named(rules if rules is not None else control_rules_of(weights, guidance, pipe))
    engine = Engine(scene, rules=rules)
    result = engine.update()
    colors = colors_by_mask(engine.instance_map().mask_of_id, len(scene.masks))  # the Studio's canvas colours

    def on_step(p, step, t, tensors):
        if callback is not None:
            callback(step + 1, p.num_timesteps)  # TTM runs fewer steps than asked for: it starts at tweak
        if cancel is not None and cancel.is_set():
            p._interrupt = True
        return {}

    if mini:
        from levitor.generation.mini import even_frames

        result = result.select_frames(even_frames(scene.num_frames, pipe.mini_info["num_frames"]))
    steering = {"guidance": guidance}
    if uses_ttm(guidance):
        reference, mask = warped_reference(result)
        steering.update(reference=reference, reference_mask=mask, tweak_fraction=tweak_fraction,
                        tstrong_fraction=tstrong_fraction)
    with _progress_shown_by_caller(pipe, callback is not None):
        if mini:
            from levitor.generation.mini import generate_mini

            small = generate_mini(pipe, Image.fromarray(scene.image), result.signal, num_inference_steps=steps,
                                  seed=seed, callback_on_step_end=on_step, **steering)
            frames = _enlarge((np.clip(small, 0, 1) * 255).round().astype(np.uint8), scene.width, scene.height)
        else:
            gen = torch.Generator().manual_seed(seed)
            hw = {} if target is None else {"height": target.height, "width": target.width}
            control = result.signal if uses_controlnet(guidance) else None
            out = pipe(Image.fromarray(scene.image), control=control, num_inference_steps=steps, generator=gen,
                       fps=fps, output_type="np", callback_on_step_end=on_step, **hw, **steering)
            frames = (np.clip(out.frames[0], 0, 1) * 255).round().astype(np.uint8)
    video_path = write_video(frames, out_dir / f"{name}{suffix}", fps=fps)
    control_path = write_video(side_by_side(frames, result, colors), out_dir / f"{name}_control{suffix}", fps=fps)
    meta = {"steps": steps, "preset": preset, "seed": seed, "device": device,
            "weights": _weights_record(weights, guidance),
            "base": "mini model (no SVD)" if mini else str(base or SVD_XT_ID),
            "control_rules": rules.name, "control": rules.describe(),
            "size": f"{frames.shape[0]}x{frames.shape[1]}x{frames.shape[2]}",
            "warnings": [w.to_dict() for w in result.warnings],
            **guidance_record(guidance, tweak_fraction, tstrong_fraction, steps)}
    write_text_atomic(out_dir / f"{name}.json", json.dumps(meta, indent=1))
    return GenerateResult(video_path, frames, scene_path, control_path, True, time.perf_counter() - t0,
                          result.warnings)


def _refuse_size_for_mini(size: str | VideoSize, weights: str | Path, scene: Scene) -> None:
    """``size`` picks the resolution SVD generates at; the mini model has one, the size it was trained at, so a
    size would only change how far its frames are enlarged: refused rather than quietly ignored."""
    info = mini_info(mini_folder(weights))
    name = size if isinstance(size, str) else f"{size.height}x{size.width}"
    raise ValueError(f"size {name!r} sets the resolution SVD generates at, but the mini model generates only at the "
                     f"size it was trained at ({info['height']}x{info['width']}, {info['num_frames']} frames), "
                     f"enlarged to the scene's {scene.height}x{scene.width}: leave --size out with --weights mini")


def guidance_record(guidance: str, tweak_fraction: float, tstrong_fraction: float, steps: int) -> dict:
    """What a generation's record says about its guidance: the mode and, with TTM, its schedule (the fractions
    and the steps they gave)."""
    record: dict = {"guidance": guidance}
    if uses_ttm(guidance):
        schedule = TTMSchedule.from_fractions(tweak_fraction, tstrong_fraction, steps)
        record["ttm"] = {"tweak_fraction": tweak_fraction, "tstrong_fraction": tstrong_fraction,
                         **schedule.to_meta()}
    return record


def _weights_record(weights, guidance: str) -> str:
    if str(weights) == MINI:
        return MINI
    if guidance == TTM and weights is None:
        return "none (training-free: no ControlNet)"
    return str(weights or LEVITOR_ID)


@contextlib.contextmanager
def _progress_shown_by_caller(pipe, shown: bool):
    """One progress bar per generation: while a caller shows its own (``callback``), the pipeline's is off."""
    if not shown:
        yield
        return
    config = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**config, "disable": True})
    try:
        yield
    finally:
        pipe.set_progress_bar_config(**config)


def _enlarge(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """The mini model's tiny frames at the scene's size, nearest neighbour: its pixels stay visible."""
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.NEAREST)) for f in frames])


def side_by_side(frames: np.ndarray, result, colors: np.ndarray | None = None) -> np.ndarray:
    """Generated frames next to the control overlay (instances + points) of the same frame; ``colors``: per
    instance id (:func:`levitor.viz.colors.colors_by_mask`, the Studio's), default the ids' own."""
    out = []
    for f, frame in enumerate(frames):
        ctrl = overlay(result.color[f].numpy(), result.instance[f].numpy(), result.signal, f, colors=colors)
        if ctrl.shape[:2] != frame.shape[:2]:
            ctrl = np.asarray(Image.fromarray(ctrl).resize((frame.shape[1], frame.shape[0])))
        out.append(contact_sheet([frame, ctrl], cols=2, pad=0))
    return np.stack(out)
