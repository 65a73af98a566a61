"""The evaluation harness as library functions (the ``levitor eval`` CLI only wires them together).

Protocol (paper, Sec. "Evaluation"): DAVIS 16-frame clips; in each object's first-frame mask, K-means points are
tracked through the *real* clip: these ground-truth tracks are the requested trajectories given to the model.
The same query points are then tracked through the *generated* clip; ObjMC is the mean Euclidean distance (pixels
at the generation resolution) between requested and recovered tracks, over the points visible in the real clip.
Single-point setting: one point per object; multi-point: up to 8 per object.

Typical use::

    gt = ground_truth_tracks(clip, tracker, "multi")        # -> requested tracks for the control signal
    video = generate(clip.frames[0], gt)                    # the model under test (caller's code)
    result = evaluate_clip(clip, video, tracker, "multi", gt=gt)
    csv_text, md_text = results_table([result, ...], "levitor-ours", fid=..., fvd=...)

Beside ObjMC each clip gets the metrics later trajectory-control papers compare on: TrajErr (ObjMC over the frame
diagonal, :func:`~levitor.evaluation.metrics.traj_err`) and, with a mask estimator
(:mod:`levitor.evaluation.masks`), mask IoU and box IoU of the generated objects against the clip's own masks -- the
masks its control was made from (MagicMotion's M_IoU / B_IoU), over frames 1..T-1 (frame 0 is given).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw

from levitor.control.krule import KRule
from levitor.data.clip import VideoClip
from levitor.evaluation.metrics import (
    FeatureExtractor,
    FeatureStats,
    box_iou,
    frechet_from_stats,
    mask_iou,
    objmc,
    traj_err,
)
from levitor.evaluation.tracking import Tracker, gt_query_points
from levitor.viz.colors import track_colors

Setting = Literal["single", "multi"]

# The paper's DAVIS numbers (Table 2 ablation, multi-point setting; METHOD.md). FID / FVD / ObjMC, lower is better.
PAPER_RESULTS: list[dict[str, object]] = [
    {"model": "LeviTor paper: no depth, no instance", "setting": "multi", "FID": 27.83, "FVD": 227.58, "ObjMC": 29.82},
    {"model": "LeviTor paper: depth only", "setting": "multi", "FID": 28.04, "FVD": 221.29, "ObjMC": 29.13},
    {"model": "LeviTor paper: instance only", "setting": "multi", "FID": 25.45, "FVD": 199.44, "ObjMC": 25.40},
    {"model": "LeviTor paper: full (depth + instance)", "setting": "multi", "FID": 25.41, "FVD": 190.44,
     "ObjMC": 25.97},
    {"model": "LeviTor paper: single centre point + depth", "setting": "multi", "FID": 30.91, "FVD": 253.73,
     "ObjMC": 38.21},
]
# LeviTor as measured by a third party on DAVIS (MagicMotion, arXiv:2503.16421, Table 1; M_IoU / B_IoU in %). Their
# clips, resolution and segmenter are theirs: a reference for the order of magnitude, not a like-for-like row.
THIRD_PARTY_RESULTS: list[dict[str, object]] = [
    {"model": "LeviTor, measured by MagicMotion", "source": "MagicMotion (DAVIS, Table 1)", "setting": "",
     "FID": 225.42, "FVD": 922.68, "M_IoU": 25.24, "B_IoU": 31.42},
]
TABLE_COLUMNS = ["model", "source", "setting", "clips", "points", "tracker", "FID", "FVD", "ObjMC", "TrajErr",
                 "M_IoU", "B_IoU"]
"""Ours: ObjMC in pixels, TrajErr in % of the frame diagonal, M_IoU and B_IoU in % (as MagicMotion's table)."""


def points_for_object(area: int, image_area: int, setting: Setting) -> int:
    """How many query points an object with ``area`` pixels in the first frame gets: 1 (single) or the K rule of
    :mod:`levitor.control.krule` for that one frame (multi: the release's area rule, at most 8)."""
    if setting not in ("single", "multi"):
        raise ValueError(f"setting must be 'single' or 'multi', got {setting!r}")
    return (KRule.single() if setting == "single" else KRule())([area], image_area)


@dataclass
class GroundTruth:
    """Requested trajectories: query points in frame 0 and their tracks through the real clip."""

    queries: np.ndarray           # (P, 2) xy in frame 0
    tracks: np.ndarray            # (T, P, 2) xy
    visible: np.ndarray           # (T, P) bool, as the tracker saw it in the real clip
    object_of_point: np.ndarray   # (P,) object id of each point
    setting: Setting = "multi"


def ground_truth_tracks(clip: VideoClip, tracker: Tracker, setting: Setting = "multi") -> GroundTruth:
    """K-means query points in every object's first-frame mask, tracked through the real clip."""
    first = clip.instance_map()[0]
    queries, owners = [], []
    for oid in clip.object_ids:
        mask = first == oid
        if not mask.any():
            continue   # not visible in frame 0: nothing to request for it
        k = points_for_object(int(mask.sum()), mask.size, setting)
        pts = gt_query_points(mask, k)
        queries.append(pts)
        owners += [int(oid)] * len(pts)
    if not queries:
        raise ValueError(f"clip {clip.name!r} has no object in its first frame; it cannot be evaluated")
    q = np.concatenate(queries).astype(np.float32)
    tracks, visible = tracker.track(clip.frames, q)
    return GroundTruth(q, np.asarray(tracks, np.float32), np.asarray(visible, bool), np.asarray(owners), setting)


@dataclass
class ClipResult:
    """ObjMC of one generated clip, with the tracks that produced it (for drawing and re-scoring)."""

    name: str
    setting: Setting
    objmc: float
    tracker: str
    requested: np.ndarray = field(repr=False)         # (T, P, 2)
    recovered: np.ndarray = field(repr=False)         # (T, P, 2)
    visible: np.ndarray = field(repr=False)           # (T, P) bool: points counted (visible in the real clip)
    object_of_point: np.ndarray = field(repr=False)   # (P,)
    traj_err: float = float("nan")                    # ObjMC / frame diagonal
    mask_iou: float = float("nan")                    # generated vs control masks, frames 1..T-1 (NaN: no masks)
    box_iou: float = float("nan")
    masks: np.ndarray | None = field(default=None, repr=False)   # (T, N, H, W) estimated generated-object masks

    @property
    def num_points(self) -> int:
        return int(self.requested.shape[1])

    def row(self) -> dict[str, object]:
        return {"name": self.name, "setting": self.setting, "objmc": self.objmc, "points": self.num_points,
                "tracker": self.tracker, "traj_err": self.traj_err, "mask_iou": self.mask_iou,
                "box_iou": self.box_iou}


def evaluate_clip(clip: VideoClip, generated_frames: np.ndarray | torch.Tensor, tracker: Tracker,
                  setting: Setting = "multi", gt: GroundTruth | None = None, masker=None) -> ClipResult:
    """ObjMC and TrajErr of a generated clip against the ground-truth tracks of the real ``clip``; with ``masker``
    (a :class:`~levitor.evaluation.masks.MaskEstimator`) also mask IoU and box IoU.

    generated_frames: (T, H, W, 3) uint8 at the real clip's size (crop/resize the real clip to the generation size
    with ``clip.center_crop_resize`` first). Pass ``gt`` when it was already computed to build the model's input.
    """
    gen = generated_frames.detach().cpu().numpy() if isinstance(generated_frames, torch.Tensor) else generated_frames
    gen = np.asarray(gen)
    if gen.shape != clip.frames.shape or gen.dtype != np.uint8:
        raise ValueError(
            f"generated frames must be uint8 {clip.frames.shape} like the real clip, got {gen.dtype} {gen.shape}. "
            "Resize the real clip with clip.center_crop_resize(height, width) to the generation size, and convert "
            "float frames with (x * 255).round().astype(np.uint8)."
        )
    if gt is None:
        gt = ground_truth_tracks(clip, tracker, setting)
    recovered, _ = tracker.track(gen, gt.queries)
    value = objmc(gt.tracks, recovered, gt.visible)
    result = ClipResult(clip.name, setting, value, getattr(tracker, "name", type(tracker).__name__), gt.tracks,
                        np.asarray(recovered, np.float32), gt.visible, gt.object_of_point,
                        traj_err=traj_err(gt.tracks, recovered, gt.visible, clip.height, clip.width))
    if masker is not None:
        control = control_masks(clip, gt)
        result.masks = masker.masks(gen, control[0])
        result.mask_iou = mask_iou(result.masks[1:], control[1:])
        result.box_iou = box_iou(result.masks[1:], control[1:])
    return result


def control_masks(clip: VideoClip, gt: GroundTruth) -> np.ndarray:
    """(T, N, H, W) bool masks of the objects that got control points (in the order of their first point)."""
    ids = list(dict.fromkeys(int(i) for i in gt.object_of_point))
    channel = {int(oid): n for n, oid in enumerate(clip.object_ids)}
    return clip.object_masks()[:, [channel[i] for i in ids]]


# ---------------------------------------------------------------------------------------- FID / FVD
FEATURE_KINDS = ("real_frames", "fake_frames", "real_videos", "fake_videos")  # QualityStats' statistics


@dataclass
class QualityStats:
    """Feature statistics of real and generated frames (FID) and clips (FVD), filled clip by clip.

    Keep one per worker and :meth:`merge` them; FVD needs more clips than I3D feature dimensions (400) for a
    full-rank covariance, so evaluate on many clips (all DAVIS clips, several starts per sequence).
    """

    image_extractor: FeatureExtractor | None = None
    video_extractor: FeatureExtractor | None = None
    real_frames: FeatureStats | None = None
    fake_frames: FeatureStats | None = None
    real_videos: FeatureStats | None = None
    fake_videos: FeatureStats | None = None

    def __post_init__(self) -> None:
        if self.image_extractor is not None:
            self.real_frames = self.real_frames or FeatureStats(self.image_extractor.dim)
            self.fake_frames = self.fake_frames or FeatureStats(self.image_extractor.dim)
        if self.video_extractor is not None:
            self.real_videos = self.real_videos or FeatureStats(self.video_extractor.dim)
            self.fake_videos = self.fake_videos or FeatureStats(self.video_extractor.dim)

    def features(self, real: np.ndarray, fake: np.ndarray) -> dict[str, np.ndarray]:
        """The features of one real clip and its generated counterpart (both (T, H, W, 3) uint8), by statistic name
        (``real_frames`` ...), as the extractors return them: what a resumable evaluation stores per clip."""
        real_t, fake_t = torch.as_tensor(np.asarray(real)), torch.as_tensor(np.asarray(fake))
        out = {}
        if self.image_extractor is not None:
            out["real_frames"] = self.image_extractor(real_t).numpy()
            out["fake_frames"] = self.image_extractor(fake_t).numpy()
        if self.video_extractor is not None:
            out["real_videos"] = self.video_extractor(real_t[None]).numpy()
            out["fake_videos"] = self.video_extractor(fake_t[None]).numpy()
        return out

    @property
    def dims(self) -> dict[str, int]:
        """Feature size of each statistic this QualityStats keeps."""
        return {name: getattr(self, name).dim for name in FEATURE_KINDS
                if getattr(self, name) is not None}

    def add_features(self, feats: dict[str, np.ndarray]) -> None:
        for name, value in feats.items():
            getattr(self, name).update(value)

    def add(self, real: np.ndarray, fake: np.ndarray) -> None:
        """Add one real clip and its generated counterpart, both (T, H, W, 3) uint8."""
        self.add_features(self.features(real, fake))

    def merge(self, other: QualityStats) -> QualityStats:
        for name in FEATURE_KINDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else mine.merge(theirs))
        return self

    def fid(self) -> float:
        if self.real_frames is None:
            raise ValueError("no image extractor was given, so there is no FID")
        return frechet_from_stats(self.real_frames, self.fake_frames)

    def fvd(self) -> float:
        if self.real_videos is None:
            raise ValueError("no video extractor was given, so there is no FVD")
        return frechet_from_stats(self.real_videos, self.fake_videos)


# ------------------------------------------------------------------------------------------- tables
def _per_setting(value: float | dict[str, float] | None, setting: str) -> float | None:
    return value.get(setting) if isinstance(value, dict) else value


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _as_row(r: ClipResult | dict[str, object]) -> dict[str, object]:
    return r.row() if isinstance(r, ClipResult) else dict(r)


def _mean(rows: list[dict[str, object]], key: str, scale: float = 1.0) -> float:
    values = [float(r[key]) for r in rows if r.get(key) is not None and not math.isnan(float(r[key]))]
    return float(np.mean(values)) * scale if values else float("nan")


def results_table(results: Sequence[ClipResult | dict[str, object]], model_name: str,
                  fid: float | dict[str, float] | None = None, fvd: float | dict[str, float] | None = None,
                  include_paper: bool = True) -> tuple[str, str]:
    """(CSV text, Markdown text): our means per setting (over clips) beside the paper's DAVIS rows and a third
    party's measurement of LeviTor (:data:`THIRD_PARTY_RESULTS`).

    ``results``: ClipResults or their ``row()`` dicts (a resumed evaluation has only the rows). ``fid`` / ``fvd``
    are one number or one per setting. The paper reports only the multi-point ablation (its Table 2), so
    single-point rows have no paper counterpart here.
    """
    rows: list[dict[str, object]] = []
    all_rows = [_as_row(r) for r in results]
    for setting in ("single", "multi"):
        mine = [r for r in all_rows if r["setting"] == setting]
        if not mine:
            continue
        rows.append({
            "model": model_name, "source": "ours", "setting": setting, "clips": len(mine),
            "points": sum(int(r["points"]) for r in mine), "tracker": ",".join(sorted({str(r["tracker"])
                                                                                      for r in mine})),
            "FID": _per_setting(fid, setting), "FVD": _per_setting(fvd, setting), "ObjMC": _mean(mine, "objmc"),
            "TrajErr": _mean(mine, "traj_err", 100.0), "M_IoU": _mean(mine, "mask_iou", 100.0),
            "B_IoU": _mean(mine, "box_iou", 100.0),
        })
    if include_paper:
        rows += [{**r, "source": "paper (DAVIS, Table 2)", "clips": None, "points": None, "tracker": "cotracker"}
                 for r in PAPER_RESULTS]
        rows += [dict(r) for r in THIRD_PARTY_RESULTS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r.get(k)) for k in TABLE_COLUMNS})
    md = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"]
    md += ["| " + " | ".join(_fmt(r.get(k)) for k in TABLE_COLUMNS) + " |" for r in rows]
    return buf.getvalue(), "\n".join(md) + "\n"


# ------------------------------------------------------------------------------------------ drawing
TRACK_RADIUS = 3  # pixels: the dot of a track in the evaluation videos
TRACK_TAIL = 8  # frames of a track drawn behind its dot


def draw_tracks(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray | None = None,
                colors: np.ndarray | None = None, radius: int = TRACK_RADIUS, tail: int = TRACK_TAIL,
                hollow: bool = False) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 with each track's last ``tail`` positions as a line and a dot at the current one.

    Invisible points are drawn hollow and their trail is not drawn through them. Use ``hollow=True`` for the
    requested tracks and filled dots for the recovered ones to show both on one video.
    """
    frames = np.asarray(frames)
    tracks = np.asarray(tracks, np.float64)
    if frames.ndim != 4 or tracks.ndim != 3 or tracks.shape[0] != frames.shape[0]:
        raise ValueError(f"need frames (T, H, W, 3) and tracks (T, P, 2) with the same T, got {frames.shape} "
                         f"and {tracks.shape}")
    t, p = tracks.shape[:2]
    vis = np.ones((t, p), bool) if visible is None else np.asarray(visible, bool)
    cols = track_colors(p) if colors is None else np.asarray(colors, np.uint8).reshape(p, 3)
    out = np.empty_like(frames)
    for i in range(t):
        im = Image.fromarray(frames[i])
        draw = ImageDraw.Draw(im)
        for j in range(p):
            c = tuple(int(v) for v in cols[j])
            seg = [(float(x), float(y)) for (x, y), v in zip(tracks[max(0, i - tail) : i + 1, j],
                                                             vis[max(0, i - tail) : i + 1, j]) if v]
            if len(seg) > 1:
                draw.line(seg, fill=c, width=max(1, radius // 2))
            x, y = tracks[i, j]
            box = (x - radius, y - radius, x + radius, y + radius)
            if vis[i, j] and not hollow:
                draw.ellipse(box, fill=c, outline=(255, 255, 255))
            else:
                draw.ellipse(box, outline=c, width=max(1, radius // 2))
        out[i] = np.asarray(im)
    return out


def draw_result(frames: np.ndarray, result: ClipResult, radius: int = TRACK_RADIUS, tail: int = TRACK_TAIL
                ) -> np.ndarray:
    """A per-clip evaluation video: requested tracks as rings, recovered tracks as dots, same colour per point."""
    cols = track_colors(result.num_points)
    out = draw_tracks(frames, result.requested, result.visible, cols, radius=radius + 2, tail=tail, hollow=True)
    return draw_tracks(out, result.recovered, None, cols, radius=radius, tail=tail)
