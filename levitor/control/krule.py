"""The K rule: how many control points an object gets over a clip (the release's rule, defined here once).

K = round(max area / image area * LAMBDA), clamped to [1, K_MAX]; at least K_MIN for objects the user moves,
objects that vanish in some frame and objects whose max / min area exceeds RATIO_THRESHOLD; then the user's
scale factor: K = max(1, int(K * scale)).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass

LAMBDA = 50.0  # the release's lambda
K_MAX = 8  # cap before the scale factor (the paper's multi-point evaluation uses at most 8 points per mask)
K_MIN = 3  # minimum for moved, vanishing and strongly scaling objects (occlusion and depth stay visible)
RATIO_THRESHOLD = 10.0  # "strongly scaling": max area / min area above this
# Bounds a scene may set. Each control point is a K-means cluster of the object's sampled pixels and a 20x20 stamp
# in the conditioning: at the cap of 8, a scale of 64 already gives 512 points per object and frame, whose stamps
# cover any object whole, while K-means work grows with K (1e9 would try to allocate billions of centres).
MAX_SCALE = 64.0
MAX_K = 64  # k_max and k_min may not exceed this (the release caps K at 8)


def check_scale(scale: object) -> float:
    """The scale factor, or a ValueError that gives the bound and why it is there."""
    ok = isinstance(scale, numbers.Real) and not isinstance(scale, bool) and 0 < scale <= MAX_SCALE
    if not ok:
        raise ValueError(f"scale (control-point scale factor) must be in (0, {MAX_SCALE:g}], got {scale!r}: at "
                         f"{MAX_SCALE:g} an object already has {int(MAX_SCALE * K_MAX)} points a frame, whose "
                         "stamps cover it whole; try 0.25..8")
    return float(scale)


@dataclass
class KRule:
    """The release's rule for the number of control points of one object over a clip."""

    lam: float = LAMBDA
    k_max: int = K_MAX
    k_min: int = K_MIN
    ratio_threshold: float = RATIO_THRESHOLD
    scale: float = 1.0  # the user's control-point scale factor, applied after the cap

    def __call__(self, areas: Iterable[int], image_area: int, moved: bool = False) -> int:
        """K for an object with these per-frame pixel areas. 0 if it is never visible."""
        areas = [int(a) for a in areas]
        if image_area <= 0:
            raise ValueError(f"image_area must be positive, got {image_area}")
        check_scale(self.scale)
        if not areas or max(areas) <= 0:
            return 0
        max_a, min_a = max(areas), min(areas)
        k = min(max(round(max_a * self.lam / image_area), 1), self.k_max)
        if moved or min_a == 0 or max_a / min_a > self.ratio_threshold:
            k = max(k, self.k_min)
        return max(1, int(k * self.scale))

    @classmethod
    def single(cls) -> KRule:
        """One point per object: the paper's single-point setting and its centre-point ablation."""
        return cls(k_max=1, k_min=1)

