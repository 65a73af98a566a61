"""perceive(): depth and masks for a photo from whichever models (or no-weights tools) the user has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from levitor._util.images import as_rgb_uint8
from levitor.depth import DEFAULT_HORIZON, check_depth_map, disparity_from_depth
from levitor.perception.automask import AutoMaskConfig, AutoMaskResult, AutomaticMaskGenerator
from levitor.perception.depth_estimator import DepthEstimator
from levitor.perception.manual import (
    CONSTANT_SOURCE,
    GROUND_PLANE_SOURCE,
    constant_depth,
    ground_plane_depth,
)
from levitor.perception.segmenter import Segmenter
from levitor.scene import MASK_SOURCES, Scene

SAM_AUTO_SOURCE = "sam-auto"
USER_DEPTH_SOURCE = "user"

@dataclass
class PerceptionResult:
    """Depth and masks for one image, with where each came from (what a Scene records)."""

    depth: np.ndarray  # (H, W) float32 scene depth in (0, 1], smaller = nearer
    masks: list[np.ndarray] = field(default_factory=list)  # (H, W) bool; user masks first, then automatic ones
    mask_sources: list[str] = field(default_factory=list)  # one of levitor.scene.MASK_SOURCES per mask
    depth_source: str = "unknown"  # "depth-anything-v2", "ground-plane", "constant" or "user"
    automatic: AutoMaskResult | None = None  # the automatic masks with their scores and pixel lookup

    @property
    def disparity(self) -> np.ndarray:
        """The depth on the control signal's 0..255 disparity scale (255 = nearest), float32."""
        return disparity_from_depth(self.depth)

    def to_scene(self, image: Any, **scene_fields: Any) -> Scene:
        """A :class:`Scene` holding this image, depth, masks and their sources (plus any other Scene fields)."""
        return Scene(
            image=image, depth=self.depth, masks=list(self.masks), mask_sources=list(self.mask_sources),
            depth_source=self.depth_source, **scene_fields,
        )


def perceive(
    image: Any,
    depth: DepthEstimator | np.ndarray | float | str = GROUND_PLANE_SOURCE,
    segmenter: Segmenter | AutomaticMaskGenerator | None = None,
    masks: Sequence[np.ndarray] = (),
    mask_sources: Sequence[str] | None = None,
    horizon: float = DEFAULT_HORIZON,
    automask: AutoMaskConfig | None = None,
    progress: bool = True,
) -> PerceptionResult:
    """Depth and masks for ``image`` from whatever the user has.

    depth: a :class:`DepthEstimator`; ``"ground-plane"`` (a floor whose horizon is at ``horizon`` of the
    height); ``"constant"`` (the floor, with every mask flattened to the depth where it stands on it); an
    (H, W) scene-depth array (source "user"); or one number in (0, 1] for a flat scene (source "constant").
    segmenter: a :class:`Segmenter` or :class:`AutomaticMaskGenerator` adds SAM's automatic masks
    (source "sam-auto"); None adds none (no-weights mode).
    masks / mask_sources: masks the user already has (clicked, lassoed, ...) and their tools; they come first,
    as the release orders user-selected masks before automatic ones.
    """
    rgb = as_rgb_uint8(image)
    shape = rgb.shape[:2]
    all_masks = [np.asarray(m, dtype=bool) for m in masks]
    sources = list(mask_sources) if mask_sources is not None else ["user"] * len(all_masks)
    if len(sources) != len(all_masks):
        raise ValueError(f"got {len(all_masks)} masks but {len(sources)} mask_sources; give one source per mask")
    for i, (m, s) in enumerate(zip(all_masks, sources)):
        if m.shape != shape:
            raise ValueError(f"masks[{i}] has shape {m.shape}, but the image is {shape}")
        if s not in MASK_SOURCES:
            raise ValueError(f"mask_sources[{i}] = {s!r} is not one of {MASK_SOURCES}")

    auto_result = None
    if segmenter is not None:
        if isinstance(segmenter, Segmenter):
            generator = AutomaticMaskGenerator(segmenter, automask)
        elif isinstance(segmenter, AutomaticMaskGenerator):
            generator = segmenter
        else:
            raise TypeError(
                f"segmenter must be a Segmenter, an AutomaticMaskGenerator or None, got {type(segmenter).__name__}"
            )
        auto_result = generator.generate(rgb, progress=progress)
        all_masks += auto_result.arrays()
        sources += [SAM_AUTO_SOURCE] * len(auto_result)

    depth_map, depth_source = _depth(rgb, depth, all_masks, horizon)
    return PerceptionResult(depth_map, all_masks, sources, depth_source, auto_result)


def _depth(rgb: np.ndarray, depth: Any, masks: list[np.ndarray], horizon: float) -> tuple[np.ndarray, str]:
    shape = rgb.shape[:2]
    if isinstance(depth, DepthEstimator):
        return depth.estimate(rgb), depth.source
    if isinstance(depth, np.ndarray):
        return check_depth_map(depth, shape), USER_DEPTH_SOURCE
    if isinstance(depth, (int, float)) and not isinstance(depth, bool):
        if not 0.0 < float(depth) <= 1.0:
            raise ValueError(f"a constant depth must be in (0, 1] (smaller = nearer), got {depth}")
        return np.full(shape, float(depth), dtype=np.float32), CONSTANT_SOURCE
    if depth == GROUND_PLANE_SOURCE:
        return ground_plane_depth(shape, horizon), GROUND_PLANE_SOURCE
    if depth == CONSTANT_SOURCE:
        return constant_depth(masks, background=ground_plane_depth(shape, horizon)), CONSTANT_SOURCE
    raise ValueError(
        f"depth must be a DepthEstimator, 'ground-plane', 'constant', an (H, W) depth array or a number in (0, 1]; "
        f"got {depth!r}. To use DepthAnythingV2, pass depth=DepthEstimator.load('small') (or 'base', 'large')."
    )
