"""Masks of the generated object, for mask IoU and box IoU (MagicMotion's M_IoU / B_IoU) against the control masks.

A generated video has no annotation, so its object masks must be estimated. Two ways:

- :class:`PointMaskPropagator` (no weights, the default): up to ``points_per_object`` points on a grid inside each
  object's first-frame mask (eroded, so the points sit on the object, not on its outline) are tracked through the
  *generated* video with the evaluation's tracker; in every frame a similarity transform (shift, scale, rotation;
  least squares, one round of outlier rejection) from the points' frame-0 positions to their tracked positions
  carries the first-frame mask along. That covers what trajectory control asks of an object -- a move, the scale
  change of a move in depth, a turn -- but not articulation (a walking person's legs), so it favours rigid
  objects; a lost object (no point visible) gets an empty mask. The masks are only as good as the tracker (the
  fallback tracker drags points of objects smaller than its 15 px window towards the background), so, like ObjMC
  with that tracker, the numbers compare models run here.
- :class:`SamMaskRefiner` (where SAM weights are present): each frame of the generated video is segmented by SAM
  prompted with the propagated mask's box and the object's visible tracked points, the prompt SAM's own video
  evaluation uses per frame; closer to the protocol's segmenter (MagicMotion reports SAM2-based masks; SAM2 is not
  available to levitor, the image SAM prompted frame by frame is the nearest we have).

Both return (T, N, H, W) bool, object ``n`` = ``object_ids[n]``; frame 0 is the given mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from levitor.evaluation.metrics import mask_boxes
from levitor.evaluation.tracking import Tracker
from levitor.perception.cache import FeatureCache
from levitor.perception.segmenter import Segmenter

MIN_SIMILARITY_POINTS = 3   # fewer visible points: translation only (two fit any similarity exactly)
MIN_SPREAD_PX = 8.0         # points closer together (RMS distance to their centre): translation only, since a
                            # 0.5 px tracking error over a 6 px spread would already read as an 8% change of scale


class MaskEstimator(Protocol):
    """Estimates the masks of objects given in frame 0 through a (generated) video."""

    name: str

    def masks(self, frames: np.ndarray, first_masks: np.ndarray) -> np.ndarray:
        """frames (T, H, W, 3) uint8, first_masks (N, H, W) bool -> (T, N, H, W) bool."""
        ...


def grid_points(mask: np.ndarray, max_points: int, erode: int = 2) -> np.ndarray:
    """(P, 2) xy pixel centres on a regular grid inside ``mask`` (eroded by ``erode`` px when anything remains),
    P <= max_points; deterministic, so the same mask always gives the same points."""
    mask = np.asarray(mask, bool)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    inner = ndimage.binary_erosion(mask, iterations=erode) if erode > 0 else mask
    if not inner.any():
        inner = mask
    ys, xs = np.nonzero(inner)
    if len(xs) == 0:
        return np.zeros((0, 2), np.float32)
    step = max(1, int(np.sqrt(len(xs) / max_points)))
    while len(xs[(ys % step == 0) & (xs % step == 0)]) > max_points:
        step += 1
    keep = (ys % step == 0) & (xs % step == 0)
    if not keep.any():                 # a thin sliver between grid lines: evenly spaced pixels of it instead
        keep = np.zeros(len(xs), bool)
        keep[np.linspace(0, len(xs) - 1, min(max_points, len(xs))).astype(int)] = True
    return np.stack([xs[keep], ys[keep]], axis=1).astype(np.float32)


def fit_similarity(src: np.ndarray, dst: np.ndarray, outlier_px: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """(A (2, 2), b (2,)) with dst ~ src @ A.T + b, A a scaled rotation [[s c, -s r], [s r, s c]]: least squares,
    refitted once without the points whose residual exceeds max(outlier_px, 3 x the median residual). Fewer than
    MIN_SIMILARITY_POINTS points, or spread less than MIN_SPREAD_PX: the median translation.

    A similarity (4 parameters), not a full affine map (6): what trajectory control moves -- a shift, the uniform
    scale of a move in depth, a turn -- with no shear or squash, which the tracking noise of points packed in a
    small object would otherwise turn into a distorted mask."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) == 0:
        raise ValueError(f"need two (P, 2) point sets of the same shape, P >= 1; got {src.shape} and {dst.shape}")
    spread = float(np.sqrt(((src - src.mean(axis=0)) ** 2).sum(axis=1).mean()))
    if len(src) < MIN_SIMILARITY_POINTS or spread < MIN_SPREAD_PX:
        return np.eye(2), np.median(dst - src, axis=0)
    keep = np.ones(len(src), bool)
    for _ in range(2):
        x, y = src[keep, 0], src[keep, 1]
        one, zero = np.ones_like(x), np.zeros_like(x)
        m = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])   # (2P, 4)
        rhs = np.concatenate([dst[keep, 0], dst[keep, 1]])
        (c, r, tx, ty), *_ = np.linalg.lstsq(m, rhs, rcond=None)
        a, b = np.array([[c, -r], [r, c]]), np.array([tx, ty])
        res = np.linalg.norm(src @ a.T + b - dst, axis=1)
        new = res <= max(outlier_px, 3.0 * float(np.median(res)))
        if new.sum() < MIN_SIMILARITY_POINTS or np.array_equal(new, keep):
            break
        keep = new
    return a, b


def warp_mask(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``mask`` (H, W) carried by x' = A x + b (pixel centres), nearest neighbour: each target pixel looks up
    where it came from. A singular A (an object squashed to a line) gives an empty mask."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    if abs(np.linalg.det(a)) < 1e-6:
        return np.zeros_like(mask)
    inv = np.linalg.inv(a)
    ys, xs = np.mgrid[0:h, 0:w]
    pts = np.stack([xs.ravel() - b[0], ys.ravel() - b[1]], axis=0)                  # (2, H*W)
    sx, sy = inv @ pts
    ix, iy = np.floor(sx + 0.5).astype(np.int64), np.floor(sy + 0.5).astype(np.int64)   # halves round up
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    out = np.zeros(h * w, bool)
    out[inside] = mask[iy[inside], ix[inside]]
    return out.reshape(h, w)


@dataclass
class PointMaskPropagator:
    """The weight-free estimator (see the module doc): grid points tracked with ``tracker``, a similarity per frame."""

    tracker: Tracker
    points_per_object: int = 32
    erode: int = 4
    name: str = "propagate"

    def track_objects(self, frames: np.ndarray, first_masks: np.ndarray
                      ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """(per object its (P_n, 2) frame-0 points, tracks (T, P, 2), visible (T, P)) for all objects at once."""
        first_masks = np.asarray(first_masks, bool)
        points = [grid_points(m, self.points_per_object, self.erode) for m in first_masks]
        queries = np.concatenate(points) if points else np.zeros((0, 2), np.float32)
        if len(queries) == 0:
            t = len(frames)
            return points, np.zeros((t, 0, 2), np.float32), np.zeros((t, 0), bool)
        tracks, visible = self.tracker.track(np.asarray(frames), queries)
        return points, np.asarray(tracks, np.float64), np.asarray(visible, bool)

    def masks(self, frames: np.ndarray, first_masks: np.ndarray) -> np.ndarray:
        first_masks = _check(frames, first_masks)
        points, tracks, visible = self.track_objects(frames, first_masks)
        return propagate(first_masks, points, tracks, visible)


def propagate(first_masks: np.ndarray, points: list[np.ndarray], tracks: np.ndarray, visible: np.ndarray
              ) -> np.ndarray:
    """(T, N, H, W): each first-frame mask carried along by the similarity fit of its own points' tracks."""
    t = tracks.shape[0]
    n, h, w = first_masks.shape
    out = np.zeros((t, n, h, w), bool)
    out[0] = first_masks
    at = 0
    for j, pts in enumerate(points):
        sl = slice(at, at + len(pts))
        at += len(pts)
        for i in range(1, t):
            vis = visible[i, sl]
            if len(pts) == 0 or not vis.any():
                continue                            # lost: nothing says where the object is
            a, b = fit_similarity(pts[vis], tracks[i, sl][vis])
            out[i, j] = warp_mask(first_masks[j], a, b)
    return out


@dataclass
class SamMaskRefiner:
    """SAM per frame, prompted with the propagated mask's box and the visible tracked points of each object."""

    segmenter: Any                     # a levitor.perception.Segmenter
    propagator: PointMaskPropagator
    name: str = "sam"

    def masks(self, frames: np.ndarray, first_masks: np.ndarray) -> np.ndarray:
        first_masks = _check(frames, first_masks)
        points, tracks, visible = self.propagator.track_objects(frames, first_masks)
        coarse = propagate(first_masks, points, tracks, visible)
        out = coarse.copy()
        boxes = mask_boxes(coarse)                                  # (T, N, 4), NaN when empty
        for i in range(1, len(frames)):
            self.segmenter.set_image(frames[i])
            at = 0
            for j, pts in enumerate(points):
                sl = slice(at, at + len(pts))
                at += len(pts)
                vis = visible[i, sl]
                if not vis.any() or np.isnan(boxes[i, j]).any():
                    continue
                box = boxes[i, j] - np.array([0.0, 0.0, 1.0, 1.0])  # SAM boxes are inclusive pixel corners
                masks, _ = self.segmenter.predict(points=tracks[i, sl][vis].astype(np.float32), box=box,
                                                  multimask_output=False)
                out[i, j] = masks[0]
        return out


def _check(frames: np.ndarray, first_masks: np.ndarray) -> np.ndarray:
    frames, first_masks = np.asarray(frames), np.asarray(first_masks, bool)
    if frames.ndim != 4 or first_masks.ndim != 3 or first_masks.shape[1:] != frames.shape[1:3]:
        raise ValueError(f"need frames (T, H, W, 3) and first-frame masks (N, H, W) of the same size, got "
                         f"{frames.shape} and {first_masks.shape}")
    return first_masks


def load_mask_estimator(kind: str, tracker: Tracker, sam: str | None = None, device: str = "cpu"
                        ) -> MaskEstimator | None:
    """``--masks``: none, propagate (no weights) or sam (``sam``: a SAM name/folder/.pth; needs its weights)."""
    if kind == "none":
        return None
    propagator = PointMaskPropagator(tracker)
    if kind == "propagate":
        return propagator
    if kind == "sam":  # no cache: every generated frame is seen once
        seg = Segmenter.load(sam or "vit_h", device=device, cache=FeatureCache(max_bytes=0), allow_download=False)
        return SamMaskRefiner(seg, propagator)
    raise ValueError(f"masks must be 'none', 'propagate' or 'sam', got {kind!r}")
