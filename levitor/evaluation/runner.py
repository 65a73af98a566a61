"""``levitor eval``: the paper's DAVIS evaluation, end to end, for one model.

For every DAVIS clip (16 frames, centre-cropped and resized to the generation size) and each setting:

1. ground truth: K-means query points in each object's first-frame mask, tracked through the real clip
   (:func:`levitor.evaluation.protocol.ground_truth_tracks`); single-point: 1 per object, multi-point: up to 8;
2. control: :func:`~levitor.control.points.control_from_masks` on the clip's own instance maps (single: 1 point per
   object, multi: the release's K rule, at most 8), depth from the estimator or flat;
3. generation from the clip's first frame and that control (``--model preview``: no generation, the real clip
   itself, the sanity baseline whose ObjMC must be about 0);
4. the query points tracked through the generated clip; ObjMC = mean distance to the requested tracks (pixels at
   the generation size); optional FID / FVD.

Writes to ``--out``: ``results.csv`` and ``results.md`` (ours beside the paper's numbers), ``per_clip.csv``,
``summary.json`` and ``videos/<setting>/<clip>_tracks.mp4`` (requested tracks as rings, recovered as dots).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from levitor._util.device import resolve_device
from levitor.control.clip_control import ClipControl, clip_control
from levitor.control.krule import KRule
from levitor.control.signal import ControlSignal
from levitor.data.clip import DataReadError, VideoClip
from levitor.data.davis import DavisDataset
from levitor.data.sampling import ClipSampling
from levitor.defaults import DEFAULT_SIZE, RELEASE_SEED, video_size
from levitor.depth import depth_from_disparity
from levitor.evaluation.protocol import (
    ClipResult,
    QualityStats,
    draw_result,
    evaluate_clip,
    ground_truth_tracks,
    results_table,
)
from levitor.evaluation.tracking import FallbackTracker, Tracker
from levitor.generation.presets import DEFAULT_PRESET
from levitor.perception.depth_fn import FLAT_DISPARITY, DepthFn, load_depth_fn
from levitor.viz.video import write_video

log = logging.getLogger("levitor.eval")

SETTINGS = ("single", "multi")
PREVIEW = "preview"          # --model preview: the real clip stands in for a generated one

Generator = Callable[[VideoClip, ControlSignal], np.ndarray]
"""(real clip at the generation size, control signal) -> generated (F, H, W, 3) uint8 frames."""


# -------------------------------------------------------------------------------------------- models
def preview_generator(clip: VideoClip, signal: ControlSignal) -> np.ndarray:
    """No generation: the real clip. A perfect tracker then gives ObjMC 0; any other value is tracker noise."""
    return clip.frames.copy()


@dataclass
class PipelineGenerator:
    """A LeviTorPipeline generating from the clip's first frame and the control signal."""

    pipe: Any
    steps: int = 25
    seed: int = RELEASE_SEED
    fps: int = 6                      # the release conditions on fps 6
    motion_bucket_id: int = 100       # the release demo's default
    controlnet_conditioning_scale: float = 1.0

    def __call__(self, clip: VideoClip, signal: ControlSignal) -> np.ndarray:
        out = self.pipe(Image.fromarray(clip.frames[0]), control=signal, num_frames=clip.num_frames,
                        height=clip.height, width=clip.width, num_inference_steps=self.steps,
                        generator=torch.Generator().manual_seed(self.seed), fps=self.fps,
                        motion_bucket_id=self.motion_bucket_id,
                        controlnet_conditioning_scale=self.controlnet_conditioning_scale, output_type="np")
        return (np.clip(np.asarray(out.frames[0]), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def load_generator(model: str, base: str | None = None, device: str = "auto", steps: int = 25,
                   seed: int = RELEASE_SEED, preset: str = DEFAULT_PRESET) -> tuple[Generator, str]:
    """(generator, model label) for ``--model``: 'preview', or LeviTor weights / a saved LeviTorPipeline folder."""
    if model == PREVIEW:
        return preview_generator, "preview (real clip, no generation)"
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(
            f"--model {model!r} is neither 'preview' nor an existing folder. Pass the LeviTor weights folder "
            "(release layout, see docs/weights.md) or a saved LeviTorPipeline folder."
        )
    from levitor.generation.generate import load_pipeline

    pipe = load_pipeline(str(path), base, device, preset, allow_download=False)
    return PipelineGenerator(pipe, steps=steps, seed=seed), path.name


def load_tracker(name: str, checkpoint: str | None = None, device: str = "cpu") -> Tracker:
    if name == "fallback":
        return FallbackTracker()
    if name == "cotracker":
        from levitor.evaluation.tracking import CoTrackerTracker

        return CoTrackerTracker.load(checkpoint, device=device)
    raise ValueError(f"tracker must be 'fallback' or 'cotracker', got {name!r}")


# ------------------------------------------------------------------------------------------- control
def control_for_clip(clip: VideoClip, setting: str, depth_fn: DepthFn | None = None,
                     kmeans_init: str = "warm") -> ControlSignal:
    """The control signal of a real clip from its own masks: 1 point per object (single) or the release's K rule
    capped at 8 (multi), depth from ``depth_fn`` per frame (flat when None). ``kmeans_init``: "release" for the
    released weights (their K-means), "warm" for levitor-trained ones (see :func:`generator_kmeans_init`)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    rule = KRule.single() if setting == "single" else KRule()
    instance = clip.instance_map()
    if depth_fn is None:
        depth = np.full(instance.shape, depth_from_disparity(np.array(FLAT_DISPARITY)), np.float32)
    else:
        disparity = np.stack([np.asarray(depth_fn(f), np.uint8) for f in clip.frames])
        depth = depth_from_disparity(disparity)
    return clip_control(instance, depth, ClipControl(rule=rule, init=kmeans_init), ids=clip.object_ids.tolist())


def generator_kmeans_init(generator: Generator) -> str:
    """The K-means the generator's weights were trained with: "release" for the released LeviTor ControlNet
    (``pipe.control_rules``), "warm" for levitor-trained models and the preview baseline."""
    from levitor.control.rules import ControlRules

    pipe = getattr(generator, "pipe", None)
    return ControlRules.named(getattr(pipe, "control_rules", "levitor")).kmeans


# ----------------------------------------------------------------------------------------------- run
@dataclass
class EvalConfig:
    height: int = DEFAULT_SIZE.height  # generation size; DAVIS 480p is centre-cropped to this aspect first
    width: int = DEFAULT_SIZE.width
    num_frames: int = 16        # the paper evaluates 16-frame clips
    settings: tuple[str, ...] = SETTINGS
    starts: str = "first"       # one clip per sequence (the paper's protocol); 'all' gives more clips for FVD
    max_clips: int | None = None
    write_videos: bool = True
    video_fps: float = 6.0
    kmeans_init: str | None = None  # None: what the model's weights were trained with (generator_kmeans_init)


@dataclass
class ClipTiming:
    name: str
    setting: str
    objmc: float
    points: int
    generate_s: float
    total_s: float


@dataclass
class EvalSummary:
    model: str
    tracker: str
    results: list[ClipResult]
    timings: list[ClipTiming]
    failures: list[dict[str, str]] = field(default_factory=list)
    fid: dict[str, float] = field(default_factory=dict)
    fvd: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def mean_objmc(self, setting: str) -> float:
        vals = [r.objmc for r in self.results if r.setting == setting and np.isfinite(r.objmc)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def seconds_per_clip(self) -> float:
        n = len({t.name for t in self.timings})
        return self.seconds / n if n else float("nan")


def run_eval(
    davis_root: str | Path,
    generator: Generator,
    tracker: Tracker,
    out_dir: str | Path,
    config: EvalConfig | None = None,
    model_name: str = "model",
    depth_fn: DepthFn | None = None,
    split: str = "val",
    sequences: Sequence[str] | None = None,
    quality: QualityStats | None = None,
    progress: Callable[[ClipTiming], None] | None = None,
) -> EvalSummary:
    """Evaluate ``generator`` on DAVIS and write the tables and videos to ``out_dir`` (see the module doc)."""
    config = config or EvalConfig()
    bad = set(config.settings) - set(SETTINGS)
    if bad or not config.settings:
        raise ValueError(f"settings must be a non-empty subset of {SETTINGS}, got {config.settings}")
    t_start = time.perf_counter()
    ds = DavisDataset(davis_root, split=split,
                      sampling=ClipSampling(num_frames=config.num_frames, starts=config.starts))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = EvalSummary(model_name, getattr(tracker, "name", type(tracker).__name__), [], [])
    kmeans_init = config.kmeans_init or generator_kmeans_init(generator)
    stats = {s: _copy_quality(quality) for s in config.settings} if quality is not None else {}

    def on_error(name: str, err: DataReadError) -> None:
        log.warning("skipping DAVIS sequence %s: %s", name, err)
        summary.failures.append({"clip": name, "error": str(err), "type": type(err).__name__})

    n_clips = 0
    for clip in ds.clips(list(sequences) if sequences is not None else None, on_error=on_error):
        if config.max_clips is not None and n_clips >= config.max_clips:
            break
        clip = clip.center_crop_resize(config.height, config.width)
        n_clips += 1
        for setting in config.settings:
            t0 = time.perf_counter()
            try:
                gt = ground_truth_tracks(clip, tracker, setting)
            except ValueError as err:        # no object in the first frame: nothing to request
                on_error(clip.name, err)
                break
            signal = control_for_clip(clip, setting, depth_fn, kmeans_init)
            t_gen = time.perf_counter()
            frames = generator(clip, signal)
            gen_s = time.perf_counter() - t_gen
            result = evaluate_clip(clip, frames, tracker, setting, gt=gt)
            summary.results.append(result)
            if setting in stats:
                stats[setting].add(clip.frames, frames)
            if config.write_videos:
                write_video(draw_result(frames, result), out / "videos" / setting / f"{_slug(clip.name)}_tracks.mp4",
                            fps=config.video_fps)
            timing = ClipTiming(clip.name, setting, result.objmc, result.num_points, gen_s, time.perf_counter() - t0)
            summary.timings.append(timing)
            if progress is not None:
                progress(timing)
    for setting, st in stats.items():
        try:
            if st.image_extractor is not None:
                summary.fid[setting] = st.fid()
            if st.video_extractor is not None:
                summary.fvd[setting] = st.fvd()
        except ValueError as err:            # fewer than 2 clips: no covariance
            log.warning("no FID/FVD for %s: %s", setting, err)
    summary.seconds = time.perf_counter() - t_start
    write_outputs(summary, out, config)
    return summary


def _copy_quality(q: QualityStats) -> QualityStats:
    return QualityStats(image_extractor=q.image_extractor, video_extractor=q.video_extractor)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "_", name)


def write_outputs(summary: EvalSummary, out: Path, config: EvalConfig) -> None:
    """results.csv / results.md (mean per setting beside the paper), per_clip.csv and summary.json."""
    csv_text, md_text = results_table(summary.results, summary.model, fid=summary.fid or None,
                                      fvd=summary.fvd or None)
    (out / "results.csv").write_text(csv_text)
    note = ("ObjMC in pixels at the generation size "
            f"{config.height}x{config.width}; ours: mean over clips, {summary.tracker} tracker.")
    if summary.tracker != "cotracker":
        note += (" The fallback (Lucas-Kanade) tracker is weaker than the paper's CoTracker: our ObjMC is "
                 "comparable between models run here, not with the paper's column.")
    note += " The paper's rows are its reported numbers (its generation size may differ from ours)."
    (out / "results.md").write_text(f"# DAVIS evaluation: {summary.model}\n\n{md_text}\n{note}\n")
    with open(out / "per_clip.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ClipTiming.__dataclass_fields__), lineterminator="\n")
        w.writeheader()
        for t in summary.timings:
            w.writerow({**asdict(t), "objmc": f"{t.objmc:.4f}", "generate_s": f"{t.generate_s:.3f}",
                        "total_s": f"{t.total_s:.3f}"})
    (out / "summary.json").write_text(json.dumps({
        "model": summary.model, "tracker": summary.tracker, "config": asdict(config),
        "clips": len({t.name for t in summary.timings}),
        "objmc": {s: summary.mean_objmc(s) for s in config.settings},
        "fid": summary.fid, "fvd": summary.fvd, "seconds": round(summary.seconds, 3),
        "seconds_per_clip": round(summary.seconds_per_clip, 3), "failures": summary.failures,
    }, indent=1))


# ------------------------------------------------------------------------------------------------ CLI
def _quality(kind: str, device: str) -> QualityStats | None:
    if kind == "none":
        return None
    if kind == "random":
        from levitor.evaluation.metrics import RandomConvFeatures

        return QualityStats(RandomConvFeatures(kind="image"), RandomConvFeatures(kind="video"))
    from levitor.evaluation.metrics import I3DFeatures, InceptionFeatures

    return QualityStats(InceptionFeatures.load(device=device), I3DFeatures.load(device=device))


def eval_main(argv: list[str] | None = None) -> int:
    """``python -m levitor.evaluation.runner``: the same as ``levitor eval``."""
    from levitor.evaluation.commands import eval_parser

    return run_eval_command(eval_parser().parse_args(argv))


def run_eval_command(args: argparse.Namespace) -> int:
    """``levitor eval``: returns a process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        # no levitor.generation.generate import here: it pulls in diffusers (seconds), which the preview
        # baseline never needs
        device = str(resolve_device(args.device))
        generator, label = load_generator(args.model, args.base, device, args.steps, args.seed, args.preset)
        name = args.name or label
        out = Path(args.out) if args.out else Path("eval_out") / _slug(name.split(" ")[0])
        tracker = load_tracker(args.tracker, args.cotracker_checkpoint, device)
        depth_fn = None if args.depth in ("none", "flat") else load_depth_fn(args.depth, device)
        size = video_size(args.size) if getattr(args, "size", None) else DEFAULT_SIZE
        config = EvalConfig(height=args.height or size.height, width=args.width or size.width,
                            num_frames=args.num_frames or size.num_frames,
                            settings=SETTINGS if args.setting == "both" else (args.setting,), starts=args.starts,
                            max_clips=args.max_clips, write_videos=not args.no_videos,
                            kmeans_init=getattr(args, "kmeans_init", None))

        def progress(t: ClipTiming) -> None:
            print(f"  {t.name} [{t.setting}]: ObjMC {t.objmc:.2f} px over {t.points} points, generation "
                  f"{t.generate_s:.1f} s, total {t.total_s:.1f} s", file=sys.stderr, flush=True)

        summary = run_eval(args.davis, generator, tracker, out, config, name, depth_fn, args.split,
                           args.sequences, _quality(args.quality, device), progress)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"levitor eval: error: {err}", file=sys.stderr)
        return 2
    if not summary.results:
        print(f"levitor eval: no clip was evaluated ({len(summary.failures)} failures; see {out}/summary.json)",
              file=sys.stderr)
        return 1
    means = ", ".join(f"{s} {summary.mean_objmc(s):.2f}" for s in config.settings)
    print(f"levitor eval: {name}: {len({t.name for t in summary.timings})} clips, ObjMC {means} px "
          f"({summary.tracker}); {summary.seconds_per_clip:.1f} s per clip. Wrote {out}/results.md, results.csv, "
          f"per_clip.csv{', videos/' if config.write_videos else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(eval_main())
