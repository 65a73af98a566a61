"""Point trackers for the evaluation: where do the query points of frame 0 go in a video?

The paper's ground truth and its ObjMC both come from CoTracker. :class:`CoTrackerTracker` wraps a local CoTracker
checkpoint; :class:`FallbackTracker` is a weight-free pyramidal Lucas-Kanade tracker so the harness runs anywhere.
The fallback is **weaker** (drifts on long or fast motion, textureless regions and occlusions; its visibility is a
forward-backward consistency check, not a learned occlusion model): ObjMC numbers made with it are for smoke tests and
relative comparisons, not for comparison with the paper.

Coordinates: (x, y) in pixels, x right, y down, integer values at pixel centres.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from levitor._util.paths import models_dir
from levitor.weights import FILES, resolve_file

KMEANS_SEED = 0
KMEANS_MAX_PIXELS = 5000    # K-means on a strided subset of big masks: centres move by well under a pixel, 10x faster


@runtime_checkable
class Tracker(Protocol):
    """Tracks query points given at frame 0 through a video."""

    name: str

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (T, H, W, 3) uint8, queries (P, 2) xy at frame 0 -> tracks (T, P, 2) float32, visible (T, P)."""
        ...


def _check_inputs(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    queries = np.asarray(queries, np.float32).reshape(-1, 2)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    return frames, queries


# ---------------------------------------------------------------------------------------- fallback (LK)
@dataclass
class FallbackTracker:
    """Pyramidal Lucas-Kanade (frame to frame) with a forward-backward visibility test; needs no weights.

    Weaker than CoTracker; see the module docstring.
    """

    window: int = 15             # patch side in pixels at every pyramid level
    levels: int = 4              # 4 levels follow motions up to ~ window/2 * 2^3 = 56 px per frame
    iterations: int = 12         # Gauss-Newton steps per level
    fb_threshold: float = 2.0    # px: a point whose forward-backward error exceeds this is marked not visible
    name: str = "fallback-lk"
    _offsets: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd number >= 3, got {self.window}")
        r = torch.arange(self.window, dtype=torch.float32) - self.window // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        self._offsets = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)   # (K, 2) xy

    @torch.no_grad()
    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames, queries = _check_inputs(frames, queries)
        t, h, w = frames.shape[:3]
        pyr = self._pyramids(frames)                       # per level: image, d/dx, d/dy, each (T, 1, H_l, W_l)
        pts = torch.from_numpy(queries).float()
        tracks = torch.zeros(t, len(pts), 2)
        tracks[0] = pts
        fb_ok = torch.ones(t, len(pts), dtype=torch.bool)
        for i in range(1, t):
            fwd = self._step(pyr, i - 1, i, tracks[i - 1])
            back = self._step(pyr, i, i - 1, fwd)
            tracks[i] = fwd
            fb_ok[i] = (back - tracks[i - 1]).norm(dim=-1) <= self.fb_threshold
        # once lost, a frame-to-frame tracker does not know when it is found again: stay invisible
        fb_ok = torch.cummin(fb_ok.int(), dim=0).values.bool()
        inside = (tracks[..., 0] >= 0) & (tracks[..., 0] <= w - 1) & (tracks[..., 1] >= 0) & (tracks[..., 1] <= h - 1)
        return tracks.numpy().astype(np.float32), (fb_ok & inside).numpy()

    def _pyramids(self, frames: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        luma = torch.tensor([0.299, 0.587, 0.114]) / 255.0
        gray = (torch.from_numpy(frames).float() @ luma)[:, None]      # (T, 1, H, W), contiguous: 2x faster
        out = []
        img = _blur(gray)                                   # removes JPEG/codec noise before gradients
        for level in range(self.levels):
            if level:
                if min(img.shape[-2:]) < 2 * self.window:
                    break                                   # coarser levels would be smaller than the patch
                img = F.avg_pool2d(_blur(img), 2)
            p = F.pad(img, (1, 1, 1, 1), mode="replicate")
            gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5   # central differences
            gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5
            out.append((img, gx, gy))
        return out

    def _sample(self, img: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Bilinear values (P, K) of a (1, 1, H, W) image at ``pts`` (P, 2) + the window offsets."""
        h, w = img.shape[-2:]
        xy = pts[:, None, :] + self._offsets[None]                    # (P, K, 2)
        grid = torch.stack([xy[..., 0] / max(w - 1, 1), xy[..., 1] / max(h - 1, 1)], dim=-1) * 2 - 1
        return F.grid_sample(img, grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0, 0]

    def _step(self, pyr, src: int, dst: int, pts: torch.Tensor) -> torch.Tensor:
        """Positions in frame ``dst`` of points ``pts`` (P, 2) of frame ``src``."""
        guess = torch.zeros_like(pts)
        for level in reversed(range(len(pyr))):
            img, gx_all, gy_all = pyr[level]
            s = 2.0**level
            p = (pts + 0.5) / s - 0.5                                   # level-0 pixel centres -> level pixels
            tmpl = self._sample(img[src : src + 1], p)
            gx, gy = self._sample(gx_all[src : src + 1], p), self._sample(gy_all[src : src + 1], p)
            gxx, gxy, gyy = (gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1)
            det = gxx * gyy - gxy * gxy
            ok = det > 1e-9                                             # textureless patch: keep the guess
            inv_det = torch.where(ok, 1.0 / det.clamp(min=1e-9), torch.zeros_like(det))
            d = guess.clone()
            for _ in range(self.iterations):
                err = tmpl - self._sample(img[dst : dst + 1], p + d)
                bx, by = (err * gx).sum(1), (err * gy).sum(1)
                step = torch.stack([gyy * bx - gxy * by, gxx * by - gxy * bx], dim=-1) * inv_det[:, None]
                d = d + step
                if step.abs().max() < 0.01:
                    break
            guess = d * 2.0 if level else d
        return pts + guess


def _blur(img: torch.Tensor) -> torch.Tensor:
    """Separable [1, 2, 1] / 4 binomial blur of (T, 1, H, W), edges replicated (slicing: much faster than a
    1-channel conv2d on CPU)."""
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    rows = (p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]) * 0.25
    return (rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]) * 0.25


# ------------------------------------------------------------------------------------------- CoTracker
@dataclass
class CoTrackerTracker:
    """CoTracker (the paper's tracker) from a local checkpoint; use :meth:`load`."""

    predictor: torch.nn.Module
    device: str = "cpu"
    name: str = "cotracker"

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, device: str = "cpu",
             allow_download: bool = True) -> CoTrackerTracker:
        """Build the predictor from ``checkpoint``, else CoTracker3's offline weights (found or downloaded by
        :func:`levitor.weights.resolve_file`; a CoTracker2 checkpoint already there is used too)."""
        try:
            from cotracker.predictor import CoTrackerPredictor
        except ImportError as err:
            raise ImportError(
                "CoTracker is not installed (it is not on PyPI). Install it from source: "
                "pip install git+https://github.com/facebookresearch/co-tracker , or evaluate with "
                "FallbackTracker (weaker, no weights; its ObjMC is not comparable to the paper's)."
            ) from err
        if checkpoint is None:
            v2 = models_dir() / FILES["cotracker2"].filename
            checkpoint = v2 if v2.is_file() and not (models_dir() / FILES["cotracker3"].filename).is_file() \
                else resolve_file("cotracker3", allow_download=allow_download)
        checkpoint = resolve_file(checkpoint, allow_download=allow_download)
        kwargs = {}
        params = inspect.signature(CoTrackerPredictor.__init__).parameters
        if "offline" in params and "offline" in checkpoint.name:   # CoTracker3 offline weights need their mode
            kwargs.update(offline=True, window_len=60)
        if "v2" in params and "cotracker2" in checkpoint.name:
            kwargs.update(v2=True)
        predictor = CoTrackerPredictor(checkpoint=str(checkpoint), **kwargs)
        return cls(predictor=predictor.to(device).eval(), device=device)

    @torch.no_grad()
    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames, queries = _check_inputs(frames, queries)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().to(self.device)   # (1, T, 3, H, W), 0..255
        q = torch.from_numpy(queries).float()
        q = torch.cat([torch.zeros(len(q), 1), q], dim=1)[None].to(self.device)          # (1, P, 3): (t=0, x, y)
        tracks, visible = self.predictor(video, queries=q)
        return tracks[0].float().cpu().numpy(), visible[0].bool().cpu().numpy()


# --------------------------------------------------------------------------------------- query points
def gt_query_points(first_frame_mask: np.ndarray, k: int, seed: int = KMEANS_SEED) -> np.ndarray:
    """(min(k, pixels), 2) xy query points: K-means centres of the mask's pixels, snapped into the mask.

    As in the paper's evaluation (k=1 single-point, k <= 8 multi-point). A centre of a non-convex mask (a ring, a
    person with spread arms) can fall on the background, which would then be tracked instead of the object; each
    centre therefore moves to the nearest pixel of its own cluster.
    """
    mask = np.asarray(first_frame_mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"first_frame_mask must be (H, W), got {mask.shape}")
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("the first-frame mask is empty: the object is not visible in frame 0, nothing to track")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    if len(pts) > KMEANS_MAX_PIXELS:
        pts = pts[:: int(np.ceil(len(pts) / KMEANS_MAX_PIXELS))]
    k = min(k, len(pts))
    if k == 1:
        centres, labels = pts.mean(axis=0, keepdims=True), np.zeros(len(pts), int)
    else:
        try:
            from sklearn.cluster import KMeans
            from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
        except ImportError as err:
            raise ImportError("gt_query_points needs scikit-learn for K-means: pip install scikit-learn") from err
        with threadpool_limits(1):   # a few thousand 2-D points: OpenMP threads only add spin-up (10x on 2 cores)
            km = KMeans(n_clusters=k, random_state=seed, n_init=2).fit(pts)
        centres, labels = km.cluster_centers_, km.labels_
    out = np.empty((k, 2), np.float32)
    for j in range(k):
        members = pts[labels == j] if np.any(labels == j) else pts
        c = centres[j]
        if mask[int(round(c[1])), int(round(c[0]))]:
            out[j] = c
        else:
            out[j] = members[np.argmin(((members - c) ** 2).sum(axis=1))]
    return out
