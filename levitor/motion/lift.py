"""Paths to per-frame motion, and pixels to 3D points and back (pinhole camera, still).

The camera never moves: identity rotation, zero translation, the same intrinsics in every frame. The renderers
move an object's pixels along a *release-terms* track (:func:`move`): (1) shift every pixel by the track's 2D
displacement, at its own depth, then (2) add the track's depth change to every pixel's depth; step 2 scales the
object about the image centre (cx, cy). This per-pixel formula is the release's. A path the user draws is in
*handle terms* (the object's anchor lands on each path point at every depth); the engine converts it to the
release-terms track that does so (:mod:`levitor.motion.handles`), so what the Studio draws is what happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from levitor.motion.handles import MIN_Z, anchor_path_3d
from levitor.scene import INTERPOLATIONS, Intrinsics, PathPoint

__all__ = ["MIN_Z", "interpolate_path", "lift", "move", "object_path_3d", "path_point_times", "project"]


def interpolate_path(path: Sequence[PathPoint], num_frames: int, method: str = "pchip") -> np.ndarray:
    """Per-frame (x, y, depth) of a path: (num_frames, 3) float64.

    Clicks without frame indices are spread evenly over the clip (first click at frame 0, last at the last
    frame); with frame indices, the path holds still before the first and after the last given frame.
    A single click is a still object. Depth is interpolated like x and y.
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {INTERPOLATIONS}, got {method!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(path) == 0:
        raise ValueError("a path needs at least one point; click where the object should go")
    values = np.array([[p.x, p.y, p.depth] for p in path], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"path points must be finite numbers, got {values.tolist()}")
    if np.any(values[:, 2] <= 0):
        raise ValueError(f"path depths must be > 0 (smaller = nearer), got {values[:, 2].tolist()}")
    if len(path) == 1:
        return np.repeat(values, num_frames, axis=0)

    times = path_point_times(path, num_frames)
    t = np.clip(np.arange(num_frames, dtype=np.float64), times[0], times[-1])  # hold before/after

    if method == "linear" or len(path) == 2:
        return np.stack([np.interp(t, times, values[:, c]) for c in range(3)], axis=1)
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator  # imported on first use: 1-2 s off a cold start

        return PchipInterpolator(times, values, axis=0)(t)
    # Catmull-Rom: tangents from neighbouring points (one-sided at the ends), non-uniform times allowed.
    slopes = np.gradient(values, times, axis=0)
    from scipy.interpolate import CubicHermiteSpline

    return CubicHermiteSpline(times, values, slopes, axis=0)(t)


def path_point_times(path: Sequence[PathPoint], num_frames: int) -> np.ndarray:
    """(len(path),) the (fractional) frame at which the object reaches each path point: its ``frame``, or spread
    evenly over the clip when no point has one (the first at frame 0, the last at the last frame). With it a
    per-frame note (e.g. a :class:`levitor.control.lost.ControlWarning`'s frames) can be shown at its points."""
    frames = [p.frame for p in path]
    if all(f is None for f in frames):
        return np.linspace(0.0, num_frames - 1, len(path)) if len(path) > 1 else np.zeros(len(path))
    if any(f is None for f in frames):
        raise ValueError("give a frame index for every path point or for none (or clear them all to spread the "
                         "points evenly over the clip)")
    times = np.asarray([int(f) for f in frames], dtype=np.float64)
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"path point frames must strictly increase, got {[int(f) for f in frames]}; give each "
                         "later point a later frame")
    return times


def lift(pixels: torch.Tensor, depth: torch.Tensor, K: Intrinsics) -> torch.Tensor:
    """Back-project pixels to camera space.

    pixels: (N, 2) float, (x, y) in image pixels.
    depth: (N,) float, the scene convention: (0, 1], smaller is nearer.
    Returns (N, 3) camera-space points (X, Y, Z) with Z == depth.
    """
    z = depth.to(pixels.dtype)
    x = (pixels[..., 0] - K.cx) * z / K.fx
    y = (pixels[..., 1] - K.cy) * z / K.fy
    return torch.stack([x, y, z], dim=-1)


def project(points: torch.Tensor, K: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera space -> (x, y) pixels and depth. points: (..., 3). Points behind the camera get z clamped."""
    z = points[..., 2].clamp(min=MIN_Z)
    u = K.fx * points[..., 0] / z + K.cx
    v = K.fy * points[..., 1] / z + K.cy
    return torch.stack([u, v], dim=-1), z


def move(
    pixels: torch.Tensor, depth: torch.Tensor, track: torch.Tensor, K: Intrinsics
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move an object's pixels along a per-frame track, in 3D, and project them back.

    pixels: (N, 2) (x, y) of the object's pixels in frame 0; depth: (N,) their scene depth.
    track: (F, 3) per-frame (x, y, depth) of the path; its frame-0 row is the reference.
    Returns (F, N, 2) projected pixels and (F, N) depths.
    """
    delta = (track - track[:1]).to(pixels.dtype)  # (F, 3): displacement relative to the first frame
    shifted = pixels[None] + delta[:, None, :2]  # step 1: 2D shift at the pixel's own depth
    pts = lift(shifted, depth[None].expand(shifted.shape[:2]), K)
    z_new = (pts[..., 2] + delta[:, None, 2]).clamp(min=MIN_Z)  # step 2: depth change
    pts = torch.stack([pts[..., 0], pts[..., 1], z_new], dim=-1)
    return project(pts, K)


def object_path_3d(track: np.ndarray, K: Intrinsics, anchor_depth: float | None = None,
                   terms: str = "handle") -> np.ndarray:
    """The 3D path of an object's anchor (its P1 lifted, see :mod:`levitor.motion.handles`): (F, 3) camera-space
    points. track: the per-frame (x, y, depth) path in ``terms``; anchor_depth: the anchor's scene depth z_a
    (default: P1's path depth). In handle terms the anchor projects onto (x_t, y_t) at depth z_a + d_t - d_0."""
    z_a = float(track[0][2]) if anchor_depth is None else float(anchor_depth)
    return anchor_path_3d(np.asarray(track, dtype=np.float64), z_a, K.fx, K.fy, K.cx, K.cy, terms)
