"""Paths to per-frame motion, and pixels to 3D points and back (pinhole camera, still).

The camera never moves: identity rotation, zero translation, the same intrinsics in every frame. An object
follows its path by (1) shifting its pixels by the path's 2D displacement, at their own depth, and then
(2) adding the path's depth change to every pixel's depth. Step 2 scales the object about the image centre
(cx, cy), which is what an object approaching along a fixed camera ray looks like: it grows, and an
off-centre object drifts outward. This is the release's order of operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from levitor.depth import MIN_DEPTH
from levitor.scene import INTERPOLATIONS, Intrinsics, PathPoint

# Points closer than this are clamped: avoids a divide-by-zero for objects touching the camera.
MIN_Z = MIN_DEPTH / 4


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

    frames = [p.frame for p in path]
    if all(f is None for f in frames):
        times = np.linspace(0.0, num_frames - 1, len(path))
    elif any(f is None for f in frames):
        raise ValueError("give a frame index for every path point or for none")
    else:
        times = np.asarray(frames, dtype=np.float64)
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"path point frames must strictly increase, got {frames}")
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


def object_path_3d(track: np.ndarray, K: Intrinsics) -> np.ndarray:
    """The 3D path of an object's reference point (the first click): (F, 3) camera-space points.

    Consistent with :func:`move`: the 2D shift happens at the reference depth, then Z becomes the path depth.
    """
    t = torch.as_tensor(track, dtype=torch.float64)
    pts = lift(t[:, :2], t[:1, 2].expand(len(t)), K)
    pts[:, 2] = t[:, 2]
    return pts.numpy()
