"""``levitor eval``: the paper's DAVIS evaluation, end to end, for one model -- on DAVIS or on the records of
``levitor precompute`` shards, in one process or sharded over the ranks of torchrun / srun.

For every clip (16 frames at the generation size; DAVIS is centre-cropped and resized, records already are) and
each setting:

1. ground truth: K-means query points in each object's first-frame mask, tracked through the real clip
   (:func:`levitor.evaluation.protocol.ground_truth_tracks`); single-point: 1 per object, multi-point: up to 8;
2. control: the shared clip -> control function on the clip's own instance maps (single: 1 point per object,
   multi: the release's K rule, at most 8; a record's stored signal for multi when its K-means is the model's),
   depth from the estimator, from the record, or flat; K-means as the model was trained (:func:`generator_kmeans_init`);
3. generation from the clip's first frame and that control (``--model preview``: no generation, the real clip
   itself, the sanity baseline whose ObjMC must be about 0);
4. the query points tracked through the generated clip: ObjMC (pixels) and TrajErr (over the frame diagonal); the
   generated objects' masks (:mod:`levitor.evaluation.masks`) against the clip's masks: mask IoU, box IoU;
   optional FID / FVD.

Sharding and resuming (:mod:`levitor.evaluation.store`): rank r of W evaluates clips r, r+W, ... of the plan and
appends each (clip, setting) to ``per_clip/rank-r.jsonl`` as it is done, with its FID/FVD features; a rerun skips
what is there (any number of ranks); at the end rank 0 merges the ranks' rows and feature statistics.

Writes to ``--out``: ``results.csv`` and ``results.md`` (ours beside the paper's numbers), ``per_clip.csv``,
``summary.json``, ``videos/<setting>/<clip>_tracks.mp4`` (requested tracks as rings, recovered as dots) and the
store's files.

    torchrun --nproc-per-node 8 -m levitor eval DATA --model WEIGHTS --out OUT   # 8 GPUs
    srun levitor eval DATA --model WEIGHTS --out OUT                             # SLURM tasks
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from levitor._util.io import write_text_atomic
from levitor._util.launch import LaunchInfo
from levitor._util.threads import torch_threads
from levitor.control.clip_control import ClipControl, clip_control
from levitor.control.krule import KRule
from levitor.control.points import INITS
from levitor.control.rules import ControlRules
from levitor.control.signal import ControlSignal
from levitor.data.clip import DataReadError, VideoClip
from levitor.data.sampling import ClipSampling
from levitor.defaults import DEFAULT_SIZE, FPS, MOTION_BUCKET_ID, NUM_INFERENCE_STEPS, RELEASE_SEED
from levitor.depth import FLAT_DISPARITY, depth_from_disparity
from levitor.evaluation.masks import MaskEstimator
from levitor.evaluation.metrics import I3DFeatures, InceptionFeatures, RandomConvFeatures
from levitor.evaluation.protocol import (
    QualityStats,
    draw_result,
    evaluate_clip,
    ground_truth_tracks,
    results_table,
)
from levitor.evaluation.sources import EvalClip, EvalItem, open_source
from levitor.evaluation.store import FAILED, ResultStore, slug
from levitor.evaluation.tracking import CoTrackerTracker, FallbackTracker, Tracker
from levitor.generation.generate import load_pipeline
from levitor.generation.presets import DEFAULT_PRESET
from levitor.perception.depth_fn import DepthFn, depth_of_frames
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
    steps: int = NUM_INFERENCE_STEPS
    seed: int = RELEASE_SEED
    fps: int = FPS
    motion_bucket_id: int = MOTION_BUCKET_ID
    controlnet_conditioning_scale: float = 1.0

    def __call__(self, clip: VideoClip, signal: ControlSignal) -> np.ndarray:
        out = self.pipe(Image.fromarray(clip.frames[0]), control=signal, num_frames=clip.num_frames,
                        height=clip.height, width=clip.width, num_inference_steps=self.steps,
                        generator=torch.Generator().manual_seed(self.seed), fps=self.fps,
                        motion_bucket_id=self.motion_bucket_id,
                        controlnet_conditioning_scale=self.controlnet_conditioning_scale, output_type="np")
        return (np.clip(np.asarray(out.frames[0]), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def load_generator(model: str, base: str | None = None, device: str = "auto", steps: int = NUM_INFERENCE_STEPS,
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

    pipe = load_pipeline(str(path), base, device, preset, allow_download=False)
    return PipelineGenerator(pipe, steps=steps, seed=seed), path.name


def load_tracker(name: str, checkpoint: str | None = None, device: str = "cpu") -> Tracker:
    if name == "fallback":
        return FallbackTracker()
    if name == "cotracker":
        return CoTrackerTracker.load(checkpoint, device=device)
    raise ValueError(f"tracker must be 'fallback' or 'cotracker', got {name!r}")


# ------------------------------------------------------------------------------------------- control
def control_for_clip(clip: VideoClip, setting: str, depth_fn: DepthFn | None = None,
                     disparity: np.ndarray | None = None, params: ClipControl | None = None,
                     kmeans_init: str | None = None) -> ControlSignal:
    """The control signal of a real clip from its own masks: 1 point per object (single) or the K rule of
    ``params`` (default: the release's, capped at 8; multi). Depth: ``disparity`` (T, H, W) uint8 when given (a
    record's), else ``depth_fn`` over the frames (batched where it can be), else flat. ``kmeans_init`` (default:
    ``params.init``): "release" for the released weights (their K-means), "warm" for levitor-trained ones (see
    :func:`generator_kmeans_init`)."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    params = params or ClipControl()
    rule = KRule.single() if setting == "single" else params.rule
    instance = clip.instance_map()
    if disparity is None and depth_fn is not None:
        disparity = depth_of_frames(depth_fn, clip.frames)
    if disparity is None:
        depth = np.full(instance.shape, depth_from_disparity(np.array(FLAT_DISPARITY)), np.float32)
    else:
        depth = depth_from_disparity(np.asarray(disparity, np.uint8))
    params = replace(params, rule=rule, init=kmeans_init or params.init)
    return clip_control(instance, depth, params, ids=clip.object_ids.tolist())


def generator_kmeans_init(generator: Generator) -> str:
    """The K-means the generator's weights were trained with: "release" for the released LeviTor ControlNet
    (``pipe.control_rules``), "warm" for levitor-trained models and the preview baseline."""

    pipe = getattr(generator, "pipe", None)
    return ControlRules.named(getattr(pipe, "control_rules", "levitor")).kmeans


# ----------------------------------------------------------------------------------------------- run
@dataclass
class EvalConfig:
    height: int = DEFAULT_SIZE.height  # generation size; DAVIS 480p is centre-cropped to this aspect first
    width: int = DEFAULT_SIZE.width
    num_frames: int = DEFAULT_SIZE.num_frames  # the paper evaluates 16-frame clips
    settings: tuple[str, ...] = SETTINGS
    starts: str = "first"       # one clip per sequence (the paper's protocol); 'all' gives more clips for FVD
    max_clips: int | None = None
    write_videos: bool = True
    video_fps: float = float(FPS)  # a float in eval_settings.json, as written before
    source: str = "auto"        # davis | shards (a `levitor precompute` output) | auto: by the folder's content
    depth: str = "none"         # what depth_fn is (the --depth spec), recorded so a resume cannot mix them
    kmeans_init: str | None = None  # None: what the model's weights were trained with (generator_kmeans_init)
    threads: int = 1            # torch CPU threads per rank: the figures depend on it (76 of 190 per-clip values
                                # changed from 1 to 2 threads), and on a busy node more threads were 20x slower

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8 or self.height % 8 or self.width % 8:
            raise ValueError(f"height and width must be positive multiples of 8, got {self.height}x{self.width}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be >= 1 (or unset: every clip), got {self.max_clips}")
        if self.source not in ("auto", "davis", "shards"):
            raise ValueError(f"source must be 'auto', 'davis' or 'shards', got {self.source!r}")
        if self.kmeans_init is not None and self.kmeans_init not in INITS:
            raise ValueError(f"kmeans_init must be one of {INITS} (or None: the model's), got {self.kmeans_init!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {self.threads!r}")


@dataclass
class ClipRow:
    """One (clip, setting) of the results: what ``per_clip.csv`` and the rank files hold."""

    key: str
    name: str
    setting: str
    objmc: float
    traj_err: float
    mask_iou: float
    box_iou: float
    points: int
    tracker: str
    generate_s: float
    total_s: float
    rank: int = 0
    threads: int | None = None     # torch CPU threads that computed the row (None: not recorded, older runs)



@dataclass
class EvalSummary:
    model: str
    tracker: str
    rows: list[ClipRow]
    failures: list[dict[str, str]] = field(default_factory=list)
    fid: dict[str, float] = field(default_factory=dict)
    fvd: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    evaluated_now: int = 0      # (clip, setting) pairs this process computed (the rest were already done)

    @property
    def results(self) -> list[ClipRow]:
        return self.rows

    def mean_objmc(self, setting: str) -> float:
        vals = [r.objmc for r in self.rows if r.setting == setting and np.isfinite(r.objmc)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def clips(self) -> int:
        return len({r.key for r in self.rows})

    @property
    def seconds_per_clip(self) -> float:
        n = len({r.key for r in self.rows})
        return sum(r.total_s for r in self.rows) / n if n else float("nan")


def run_eval(
    data_root: str | Path,
    generator: Generator,
    tracker: Tracker,
    out_dir: str | Path,
    config: EvalConfig | None = None,
    model_name: str = "model",
    depth_fn: DepthFn | None = None,
    split: str = "val",
    sequences: Sequence[str] | None = None,
    quality: QualityStats | None = None,
    progress: Callable[[ClipRow], None] | None = None,
    masker: MaskEstimator | None = None,
    launch: LaunchInfo | None = None,
    barrier: Callable[[], None] | None = None,
    resume: bool = True,
    allow_thread_change: bool = False,
) -> EvalSummary:
    """Evaluate ``generator`` on DAVIS or precompute shards and write the tables and videos to ``out_dir``.

    Sharded over ranks: with ``launch`` (rank r of W; default one process) this process evaluates the clips r, r+W,
    ... of the plan, writing each (clip, setting) as it is done (:class:`~levitor.evaluation.store.ResultStore`);
    after ``barrier`` (every rank must call run_eval) rank 0 merges the ranks' rows and FID/FVD statistics and writes
    the tables. With ``resume`` what the folder already holds is kept and skipped; a folder evaluated with another
    ``config.threads`` is refused unless ``allow_thread_change`` (each row records its thread count).
    """
    config = config or EvalConfig()
    launch = launch or LaunchInfo()
    barrier = barrier or (lambda: None)
    bad = set(config.settings) - set(SETTINGS)
    if bad or not config.settings:
        raise ValueError(f"settings must be a non-empty subset of {SETTINGS}, got {config.settings}")
    t_start = time.perf_counter()
    source = open_source(data_root, config.source, split, ClipSampling(num_frames=config.num_frames,
                                                                       starts=config.starts))
    plan = source.items(list(sequences) if sequences is not None else None)
    plan = plan[: config.max_clips] if config.max_clips is not None else plan
    out = Path(out_dir)
    store = ResultStore(out, launch.rank, launch.world_size)
    if not resume and launch.rank == 0:
        store.clear()
    barrier()                      # nobody reads the folder before rank 0 has cleared it
    kmeans_init = config.kmeans_init or generator_kmeans_init(generator)
    _check_threads(store, config.threads, allow_thread_change)
    store.check_settings(_settings(config, source.kind, model_name, tracker, masker, quality, kmeans_init),
                         may_change=("threads",))
    with torch_threads(config.threads):
        evaluated = _evaluate(plan[launch.rank :: launch.world_size], source, store, config, generator, tracker,
                              kmeans_init, depth_fn, quality, masker, launch, out, progress)
    barrier()                      # every rank's rows and statistics are on disk
    # rank 0 merges the statistics; the others only need the rows (and may have run alone, before rank 0)
    summary = merge_results(store, plan, config, model_name, getattr(tracker, "name", type(tracker).__name__),
                            quality if launch.rank == 0 else None)
    summary.seconds = time.perf_counter() - t_start
    summary.evaluated_now = evaluated
    if launch.rank == 0:
        write_outputs(summary, out, config)
    barrier()                      # no rank leaves (and tears the group down) while rank 0 still writes
    return summary


def _check_threads(store: ResultStore, threads: int, allow_change: bool) -> None:
    """Refuse to add rows made with another torch thread count than the folder's (their figures would differ)."""
    old = store.saved_settings()
    if old is None or old.get("threads") == threads or allow_change:
        if old is not None and old.get("threads") != threads:
            log.warning("%s was evaluated with %s torch threads per rank, now %d (--allow-thread-change); each row of "
                        "per_clip.csv records its own", store.out, old.get("threads", "unrecorded"), threads)
        return
    if "threads" in old:
        was, again = f"with {old['threads']} torch threads per rank", f"--threads {old['threads']} to go on as before, "
    else:
        was, again = "before levitor recorded its torch thread count", ""
    raise ValueError(f"{store.out} was evaluated {was} and this run asks for {threads}: per-clip figures depend on the "
                     f"thread count. Pass {again}--allow-thread-change to mix them (per_clip.csv records each row's), "
                     "or --no-resume to start over.")


def _evaluate(mine: list[EvalItem], source, store: ResultStore, config: EvalConfig, generator: Generator,
              tracker: Tracker, kmeans_init: str, depth_fn: DepthFn | None, quality: QualityStats | None,
              masker: MaskEstimator | None, launch: LaunchInfo, out: Path,
              progress: Callable[[ClipRow], None] | None) -> int:
    """This rank's share of the plan: each (clip, setting) not done yet, appended to the store as it is done, then
    this rank's FID/FVD statistics. Returns how many (clip, setting) pairs it computed."""
    done = store.done()
    name = getattr(tracker, "name", type(tracker).__name__)
    evaluated = 0
    for item in mine:
        todo = [s for s in config.settings if (item.key, s) not in done]
        if not todo or (item.key, FAILED) in done:
            continue
        try:
            ev = source.load(item)
        except DataReadError as err:         # a bad item of the data set; a wrong setup raises ValueError
            log.warning("skipping %s: %s", item.key, err)
            store.append({"key": item.key, "name": item.key, "setting": FAILED, "error": str(err),
                          "type": type(err).__name__, "rank": launch.rank})
            continue
        ev = _at_size(ev, config, source.kind)
        for setting in todo:
            t0 = time.perf_counter()
            try:
                gt = ground_truth_tracks(ev.clip, tracker, setting)
            except ValueError as err:        # no object in the first frame: nothing to request
                store.append({"key": item.key, "name": ev.clip.name, "setting": FAILED, "error": str(err),
                              "type": type(err).__name__, "rank": launch.rank})
                break
            params = replace(ev.control, init=kmeans_init)   # the model's K-means (a record's may differ)
            stored = setting == "multi" and ev.signal is not None and ev.control.init == kmeans_init
            signal = ev.signal if stored else control_for_clip(ev.clip, setting, depth_fn, ev.disparity, params)
            t_gen = time.perf_counter()
            frames = generator(ev.clip, signal)
            gen_s = time.perf_counter() - t_gen
            result = evaluate_clip(ev.clip, frames, tracker, setting, gt=gt, masker=masker)
            if quality is not None:          # features first: a row on disk means its features are too
                store.save_features(item.key, setting, quality.features(ev.clip.frames, frames))
            if config.write_videos:
                write_video(draw_result(frames, result), out / "videos" / setting / f"{slug(ev.clip.name)}_tracks.mp4",
                            fps=config.video_fps)
            row = ClipRow(item.key, ev.clip.name, setting, result.objmc, result.traj_err, result.mask_iou,
                          result.box_iou, result.num_points, name, gen_s, time.perf_counter() - t0, launch.rank,
                          config.threads)
            store.append(asdict(row))
            evaluated += 1
            if progress is not None:
                progress(row)
    if quality is not None:
        rows_now = {(r["key"], r["setting"]) for r in store.rows()}
        for setting in config.settings:
            store.save_rank_stats(setting, [i.key for i in mine if (i.key, setting) in rows_now], quality.dims)
    return evaluated


def _at_size(ev: EvalClip, config: EvalConfig, kind: str) -> EvalClip:
    """DAVIS clips are cut to the generation size here; records were at precompute, so theirs must match."""
    clip = ev.clip
    if kind == "davis":
        return EvalClip(clip.center_crop_resize(config.height, config.width), ev.disparity, ev.signal, ev.control)
    if (clip.num_frames, clip.height, clip.width) != (config.num_frames, config.height, config.width):
        raise ValueError(f"record {clip.name!r} is {clip.num_frames}x{clip.height}x{clip.width} (frames x height x "
                         f"width) but the evaluation asks for {config.num_frames}x{config.height}x{config.width}: "
                         "pass --num-frames/--height/--width of the shards")
    return ev


def _settings(config: EvalConfig, kind: str, model: str, tracker: Tracker, masker, quality,
              kmeans_init: str) -> dict:
    """What the numbers depend on (not the plan: a resume may add clips, e.g. a larger --max-clips)."""
    cfg = asdict(config)
    for k in ("max_clips", "write_videos", "video_fps", "settings", "source", "threads"):
        cfg.pop(k)
    cfg["kmeans_init"] = kmeans_init   # the resolved one: a default that means the model's is recorded as what ran
    return {"config": cfg, "source": kind, "model": model, "threads": config.threads,
            "tracker": getattr(tracker, "name", str(tracker)),
            "masks": getattr(masker, "name", "none"),
            "quality": sorted(quality.dims.items()) if quality is not None else None}


def merge_results(store: ResultStore, plan: list[EvalItem], config: EvalConfig, model: str, tracker: str,
                  quality: QualityStats | None) -> EvalSummary:
    """Every rank's rows of the plan, in plan order, and FID/FVD from the ranks' merged statistics."""
    order = {item.key: i for i, item in enumerate(plan)}
    fields_ = set(ClipRow.__dataclass_fields__)
    rows, failures = [], []
    for r in store.rows():
        if r["key"] not in order:
            continue                   # of another plan (a run with other --sequences / --max-clips)
        if r["setting"] == FAILED:
            failures.append({"clip": r["name"], "error": r["error"], "type": r["type"]})
        elif r["setting"] in config.settings:
            rows.append(ClipRow(**{k: v for k, v in r.items() if k in fields_}))
    rows.sort(key=lambda r: (order[r.key], SETTINGS.index(r.setting)))
    summary = EvalSummary(model, tracker, rows, failures)
    if quality is not None:
        for setting in config.settings:
            if sum(r.setting == setting for r in rows) < 2:
                log.warning("no FID/FVD for %s: fewer than 2 clips", setting)
                continue
            stats = store.merged_stats(setting, quality.dims)
            merged = QualityStats(real_frames=stats.get("real_frames"), fake_frames=stats.get("fake_frames"),
                                  real_videos=stats.get("real_videos"), fake_videos=stats.get("fake_videos"))
            if merged.real_frames is not None:
                summary.fid[setting] = merged.fid()
            if merged.real_videos is not None:
                summary.fvd[setting] = merged.fvd()
    return summary


def write_outputs(summary: EvalSummary, out: Path, config: EvalConfig) -> None:
    """results.csv / results.md (mean per setting beside the paper), per_clip.csv and summary.json."""
    csv_text, md_text = results_table([asdict(r) for r in summary.rows], summary.model, fid=summary.fid or None,
                                      fvd=summary.fvd or None)
    write_text_atomic(out / "results.csv", csv_text)
    note = (f"ObjMC in pixels at the generation size {config.height}x{config.width}, TrajErr in % of the frame "
            "diagonal (ObjMC / sqrt(H^2 + W^2)), M_IoU / B_IoU in % (generated-object masks against the clip's "
            f"own masks, frames 1..T-1); ours: mean over clips, {summary.tracker} tracker.")
    if summary.tracker != "cotracker":
        note += (" The fallback (Lucas-Kanade) tracker is weaker than the paper's CoTracker: our ObjMC is "
                 "comparable between models run here, not with the paper's column.")
    note += (" The paper's rows are its reported numbers (its generation size may differ from ours); MagicMotion's "
             "row is LeviTor as that paper measured it, on its own DAVIS clips, resolution and segmenter.")
    write_text_atomic(out / "results.md", f"# Evaluation: {summary.model}\n\n{md_text}\n{note}\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ClipRow.__dataclass_fields__), lineterminator="\n")
    w.writeheader()
    for r in summary.rows:
        w.writerow({**asdict(r), **{k: f"{getattr(r, k):.6f}" for k in ("objmc", "traj_err", "mask_iou", "box_iou")},
                    "generate_s": f"{r.generate_s:.3f}", "total_s": f"{r.total_s:.3f}"})
    write_text_atomic(out / "per_clip.csv", buf.getvalue())
    means = {k: {s: _mean([getattr(r, k) for r in summary.rows if r.setting == s]) for s in config.settings}
             for k in ("objmc", "traj_err", "mask_iou", "box_iou")}
    write_text_atomic(out / "summary.json", json.dumps({
        "model": summary.model, "tracker": summary.tracker, "config": asdict(config), "clips": summary.clips,
        **means, "fid": summary.fid, "fvd": summary.fvd, "seconds": round(summary.seconds, 3),
        "seconds_per_clip": round(summary.seconds_per_clip, 3), "failures": summary.failures,
    }, indent=1))


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


# ---------------------------------------------------------------------------------------- FID / FVD
def load_quality(kind: str, device: str = "cpu") -> QualityStats | None:
    """``--quality``: none, random (a meaningless smoke test) or fid-fvd (the Inception and I3D files)."""
    if kind == "none":
        return None
    if kind == "random":
        return QualityStats(RandomConvFeatures(kind="image"), RandomConvFeatures(kind="video"))

    return QualityStats(InceptionFeatures.load(device=device), I3DFeatures.load(device=device))
