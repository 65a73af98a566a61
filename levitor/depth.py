"""The depth convention, in one place.

LeviTor's release works on a *disparity* scale: DepthAnythingV2's relative inverse depth (larger = nearer),
min-max normalised to 0..255 and cast to uint8. The depth used for lifting to 3D is ``1 / disparity``
(0 -> 1), so scene depths live in (0, 1] and **smaller = nearer**. The control signal carries
``round(1 / depth)`` back on the 0..255 disparity scale, with depth 1 mapped to 0.

Users never see these numbers directly: the Studio shows "2x nearer"; :func:`depth_from_nearness` and
:func:`nearness_from_depth` convert between that and the scene depth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from levitor._util.lazy import is_torch_tensor

if TYPE_CHECKING:
    import torch

DISPARITY_MAX = 255
MIN_DEPTH = 1.0 / DISPARITY_MAX  # the nearest depth the 0..255 disparity scale can express
FAR_DEPTH = 1.0  # the far end of (0, 1] (disparity 0): where nothing of the scene is seen
DEFAULT_HORIZON = 0.4  # fraction of the height: a typical eye-level photo has its horizon a bit above the middle
FLAT_DISPARITY = 128  # a flat scene: every pixel at mid disparity (what a flat DepthAnything map normalises to)


def disparity_u8_from_relative(relative_inverse_depth: np.ndarray) -> np.ndarray:
    """Min-max normalise DepthAnything's output (larger = nearer) to uint8 0..255, as the release does."""
    x = np.asarray(relative_inverse_depth, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (H, W) depth map, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the depth estimator returned NaN or inf values; check the input image")
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-12:
        return np.full(x.shape, FLAT_DISPARITY, dtype=np.uint8)
    return ((x - lo) / (hi - lo) * 255.0).astype(np.uint8)  # truncation, as the release's astype


def depth_from_disparity(disparity: np.ndarray | torch.Tensor):
    """0..255 disparity -> scene depth in (0, 1] (``1 / disparity``, with 0 -> 1)."""
    if is_torch_tensor(disparity):
        import torch

        d = disparity.to(torch.float32)
        return torch.where(d > 0, 1.0 / d.clamp(min=1.0), torch.ones_like(d))
    d = np.asarray(disparity, dtype=np.float32)
    out = np.ones_like(d)
    np.divide(1.0, d, out=out, where=d > 0)
    return np.minimum(out, 1.0)


def disparity_from_depth(depth: np.ndarray | torch.Tensor):
    """Scene depth -> the control signal's 0..255 value: ``round(1 / depth)``, with depth 1 -> 0.

    As the release computes it: the float32 depth's reciprocal in float64, rounded half to even (Python's round).
    Depths below 1/255 give 255 (the release writes round(1 / depth), above 255)."""
    if is_torch_tensor(depth):
        import torch

        d = depth.to(torch.float32).to(torch.float64).clamp(min=MIN_DEPTH)
        v = torch.round(1.0 / d)
        return torch.where(v <= 1, torch.zeros_like(v), v).clamp(max=DISPARITY_MAX).to(torch.float32)
    d = np.maximum(np.asarray(depth, dtype=np.float32).astype(np.float64), MIN_DEPTH)
    v = np.round(1.0 / d)
    return np.where(v <= 1, 0, np.minimum(v, DISPARITY_MAX)).astype(np.float32)


def depth_from_nearness(reference_depth: float, nearness: float) -> float:
    """"2x nearer" -> scene depth: the object at ``reference_depth`` moved to ``reference_depth / nearness``.

    ``nearness`` > 1 is nearer, < 1 farther, 1 unchanged. The result is clipped to the scale's range.
    """
    if not np.isfinite(nearness) or nearness <= 0:
        raise ValueError(f"nearness must be a positive number (2 means '2x nearer'), got {nearness}")
    return float(np.clip(reference_depth / nearness, MIN_DEPTH, 1.0))


def nearness_from_depth(reference_depth: float, depth: float) -> float:
    """Scene depth -> "x times nearer" than ``reference_depth`` (the inverse of :func:`depth_from_nearness`)."""
    if depth <= 0:
        raise ValueError(f"depth must be > 0, got {depth}")
    return float(reference_depth / depth)


def nearness_range(reference_depth: float) -> tuple[float, float]:
    """The "x nearer" values a point can reach from ``reference_depth``: depths stay in [MIN_DEPTH, 1] (1/255 is
    the nearest the disparity scale expresses, 1 the farthest)."""
    return reference_depth / 1.0, reference_depth / MIN_DEPTH


def check_depth_map(depth: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a scene depth map: (H, W), finite, in (0, 1]. Returns it as float32."""
    d = np.asarray(depth)
    if d.ndim != 2:
        raise ValueError(f"depth must be an (H, W) map, got shape {d.shape}; give one depth per pixel of the image")
    if shape is not None and d.shape != tuple(shape):
        raise ValueError(f"depth map has shape {d.shape} but the image is {tuple(shape)}; resize one of them")
    d = d.astype(np.float32)
    if not np.all(np.isfinite(d)):
        raise ValueError(
            f"depth has {int((~np.isfinite(d)).sum())} NaN/inf values. Recompute it with DepthEstimator "
            "or fill them (e.g. np.nan_to_num(depth, nan=1.0)) before building the scene."
        )
    if d.min() <= 0 or d.max() > 1.0 + 1e-6:
        raise ValueError(
            f"depth must be in (0, 1] (smaller = nearer), got min {d.min():.3g}, max {d.max():.3g}. "
            "Convert a 0..255 disparity map with levitor.depth.depth_from_disparity()."
        )
    return d
