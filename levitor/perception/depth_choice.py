"""Which depth a scene uses, as a value the Scene can store: ``Scene.depth_source`` names it.

A photo without a depth model still needs a depth map; which guess fits depends on the photo, so the user picks:

- ``ground-plane``: a floor seen from eye level (landscapes, street scenes); above the horizon is far (depth 1);
- ``flat``: every pixel at one depth (close-ups where only the paths' depth changes should matter);
- ``nearer:N``: a flat background with every selected object N x nearer than it (a close-up of a cat);
- ``depth-anything-v2``: the model's estimate, where its weights are on this machine.

The choice round-trips through ``Scene.depth_source`` (``"nearer:2"``), so a saved scene says how its depth was
made and the Studio can repaint it when a mask changes (only ``nearer`` depends on the masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from levitor.perception.manual import (
    DEFAULT_HORIZON,
    GROUND_PLANE_SOURCE,
    flat_depth,
    ground_plane_depth,
    max_nearness,
    nearer_depth,
)

FLAT_SOURCE = "flat"
NEARER_SOURCE = "nearer"
MODEL_SOURCE = "depth-anything-v2"  # DepthEstimator.source
DEPTH_KINDS = (GROUND_PLANE_SOURCE, FLAT_SOURCE, NEARER_SOURCE, MODEL_SOURCE)
DEFAULT_NEARNESS = 2.0


@dataclass(frozen=True)
class DepthChoice:
    """One of :data:`DEPTH_KINDS` with its parameter (``nearness`` for ``nearer``)."""

    kind: str = NEARER_SOURCE
    nearness: float = DEFAULT_NEARNESS

    def __post_init__(self) -> None:
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"depth kind must be one of {DEPTH_KINDS}, got {self.kind!r}")
        if self.kind == NEARER_SOURCE and not 1.0 <= self.nearness <= max_nearness() + 1e-9:
            raise ValueError(f"nearness must be in 1..{max_nearness():.2f} (the disparity scale ends at 255), "
                             f"got {self.nearness}")

    @property
    def source(self) -> str:
        """The ``Scene.depth_source`` string: ``"nearer:2"``, ``"flat"``, ..."""
        return f"{NEARER_SOURCE}:{self.nearness:g}" if self.kind == NEARER_SOURCE else self.kind

    @property
    def uses_masks(self) -> bool:
        """True when the depth map changes with the selected objects' masks (repaint after a mask edit)."""
        return self.kind == NEARER_SOURCE

    @classmethod
    def from_source(cls, source: str) -> DepthChoice | None:
        """The choice a ``Scene.depth_source`` names, or None for depths made elsewhere (synthetic, user, ...)."""
        if source.startswith(NEARER_SOURCE + ":"):
            try:
                return cls(NEARER_SOURCE, float(source.split(":", 1)[1]))
            except ValueError:
                return None
        if source in (GROUND_PLANE_SOURCE, FLAT_SOURCE, MODEL_SOURCE):
            return cls(source)
        return None

    def depth(self, image: np.ndarray, object_masks: Sequence[np.ndarray] = (), estimator: Any = None,
              horizon: float = DEFAULT_HORIZON) -> np.ndarray:
        """The (H, W) float32 scene depth of this choice for ``image``; ``estimator``: a DepthEstimator
        (needed for ``depth-anything-v2`` only)."""
        shape = np.asarray(image).shape[:2]
        if self.kind == GROUND_PLANE_SOURCE:
            return ground_plane_depth(shape, horizon)
        if self.kind == FLAT_SOURCE:
            return flat_depth(shape)
        if self.kind == NEARER_SOURCE:
            return nearer_depth(shape, object_masks, self.nearness)
        if estimator is None:
            raise ValueError("depth-anything-v2 needs its weights: load a DepthEstimator and pass it as estimator "
                             "(or choose 'ground-plane', 'flat' or 'nearer')")
        return estimator.estimate(image)
